"""Every validation rule of the spec language gives one SpecError naming the file and key."""

import textwrap

import pytest

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.model.families import Role
from pyro_vae.spec.parse import parse_guide, parse_model
from pyro_vae.spec.resolve import read_guide, read_model

GOOD_MODEL = """
[latent.z]
family = "standard_normal"
dim = 4

[observed.x]
family = "bernoulli"
given = ["z"]
net = { kind = "mlp", hidden = [8], activation = "tanh" }
"""
GOOD_GUIDE = """
[latent.z]
family = "diagonal_normal"
given = ["x"]
net = { kind = "mlp", hidden = [8] }
"""


def model_error(text):
    with pytest.raises(pv.SpecError) as info:
        parse_model(textwrap.dedent(text), "m.toml")
    return info.value


def guide_error(text):
    with pytest.raises(pv.SpecError) as info:
        parse_guide(textwrap.dedent(text), "g.toml")
    return info.value


def test_good_specs_parse():
    model = parse_model(GOOD_MODEL, "m.toml")
    assert list(model.latents) == ["z"] and model.observed.given == ("z",)
    assert model.observed.net.options == {"hidden": [8], "activation": "tanh"}
    guide = parse_guide(GOOD_GUIDE, "g.toml")
    assert guide.latents["z"].net.options["activation"] == "relu"  # the default
    # The section a node is in is a field, not something read back from its key.
    assert model.latents["z"].role is Role.LATENT and model.observed.role is Role.OBSERVED
    assert guide.latents["z"].role is Role.LATENT


@pytest.mark.parametrize(
    "old, new, key, words",
    [
        ("dim = 4", "dimm = 4", "latent.z.dimm", "did you mean 'dim'"),
        ("dim = 4", "dim = -4", "latent.z.dim", "positive integer"),
        ("dim = 4", "dim = 4.5", "latent.z.dim", "positive integer"),
        ("dim = 4", "", "latent.z.dim", "required"),
        (
            '"standard_normal"',
            '"standard_norml"',
            "latent.z.family",
            "did you mean 'standard_normal'",
        ),
        ('given = ["z"]', 'given = ["w"]', "observed.x.given", "'w' is not a latent"),
        ('given = ["z"]', 'given = "z"', "observed.x.given", "expected a list"),
        ('kind = "mlp"', 'kind = "mpl"', "observed.x.net.kind", "did you mean 'mlp'"),
        ("hidden = [8]", "hidden = [0]", "observed.x.net.hidden", "positive integer"),
        ("hidden = [8]", "hiden = [8]", "observed.x.net.hiden", "did you mean 'hidden'"),
        ('"tanh"', '"tahn"', "observed.x.net.activation", "did you mean 'tanh'"),
        ('family = "bernoulli"', 'family = "standard_normal"', "observed.x.family", "observed"),
        ("[observed.x]", "[observed.y]", "observed", "named 'x'"),
    ],
)
def test_model_rules(old, new, key, words):
    assert old in GOOD_MODEL
    err = model_error(GOOD_MODEL.replace(old, new))
    assert err.path == "m.toml" and err.key == key
    assert words in str(err) and str(err).startswith(f"m.toml: {key}: ")
    assert "\n" not in str(err)


def test_toml_syntax_error_names_line():
    err = model_error("[latent.z]\nfamily = \n")
    assert "m.toml" in str(err) and "line 2" in str(err)


def test_cycle_is_named():
    err = model_error("""
        [latent.a]
        family = "normal"
        dim = 2
        given = ["b"]
        net = { kind = "linear" }
        [latent.b]
        family = "normal"
        dim = 2
        given = ["a"]
        net = { kind = "linear" }
        [observed.x]
        family = "bernoulli"
        given = ["a"]
        net = { kind = "linear" }
    """)
    assert "cycle" in str(err) and "a" in str(err) and "b" in str(err)
    assert err.key.endswith(".given")


def test_net_without_given_and_given_without_net():
    err = model_error(GOOD_MODEL.replace('given = ["z"]\n', ""))
    assert err.key == "observed.x.net"
    err = model_error(
        GOOD_MODEL.replace('net = { kind = "mlp", hidden = [8], activation = "tanh" }', "")
    )
    assert err.key == "observed.x.net" and "required" in str(err)


def test_family_options_in_context():
    err = model_error("""
        [latent.z]
        family = "standard_normal"
        dim = 2
        [latent.c]
        family = "categorical"
        categories = 3
        weights = [0.5, 0.5]
        [observed.x]
        family = "bernoulli"
        given = ["z", "c"]
        net = { kind = "mlp", hidden = [4] }
    """)
    assert err.key == "latent.c.weights" and "expected 3 weights" in str(err)
    err = model_error("""
        [latent.z]
        family = "normal"
        dim = 2
        scale = "net"
        [observed.x]
        family = "bernoulli"
        given = ["z"]
        net = { kind = "linear" }
    """)
    assert err.key == "latent.z.scale" and "needs parents" in str(err)
    err = model_error(GOOD_MODEL.replace('family = "bernoulli"', 'family = "normal"\nscale = -1'))
    assert err.key == "observed.x.scale"


def test_standard_normal_takes_no_parents():
    err = model_error("""
        [latent.a]
        family = "standard_normal"
        dim = 2
        [latent.b]
        family = "standard_normal"
        dim = 2
        given = ["a"]
        net = { kind = "linear" }
        [observed.x]
        family = "bernoulli"
        given = ["b"]
        net = { kind = "linear" }
    """)
    assert err.key == "latent.b.given"


def test_guide_rules():
    err = guide_error(GOOD_GUIDE.replace('"diagonal_normal"', '"diagonal_norml"'))
    assert err.key == "latent.z.family" and "did you mean 'diagonal_normal'" in str(err)
    err = guide_error(GOOD_GUIDE.replace('given = ["x"]', 'given = ["y"]'))
    assert err.key == "latent.z.given"
    err = guide_error(GOOD_GUIDE + "dim = 3\n")
    assert err.key == "latent.z.dim" and "unknown key" in str(err)


def test_guide_must_cover_the_model_latents():
    model = parse_model(GOOD_MODEL, "m.toml")
    extra = parse_guide(GOOD_GUIDE + GOOD_GUIDE.replace("latent.z", "latent.w"), "g.toml")
    with pytest.raises(pv.SpecError, match=r"g.toml: latent.w: model m.toml has no latent 'w'"):
        pv.LatentModel(model, extra, (5,))
    two = parse_model(
        GOOD_MODEL.replace(
            "[observed.x]", '[latent.w]\nfamily = "standard_normal"\ndim = 2\n[observed.x]'
        ),
        "m.toml",
    )
    with pytest.raises(pv.SpecError, match=r"g.toml: latent: misses latent 'w'"):
        pv.LatentModel(two, parse_guide(GOOD_GUIDE, "g.toml"), (5,))


def test_guide_family_must_match_latent_support():
    with pytest.raises(pv.SpecError, match="latent.c.family: 'diagonal_normal' approximates real"):
        pv.load(
            "mixture_1d",
            parse_guide(GOOD_GUIDE.replace("latent.z", "latent.c"), "g.toml"),
            data_shape=(1,),
        )


def test_table_net_needs_a_categorical_parent():
    model = parse_model(
        GOOD_MODEL.replace('kind = "mlp", hidden = [8], activation = "tanh"', 'kind = "table"'),
        "m.toml",
    )
    with pytest.raises(pv.SpecError, match="m.toml: observed.x.net: a 'table' net needs"):
        pv.LatentModel(model, parse_guide(GOOD_GUIDE, "g.toml"), (5,))


def test_names_resolve_to_bundled_specs(tmp_path):
    assert read_model("bernoulli_vae").path.endswith("models/bernoulli_vae.toml")
    assert read_guide("mean_field").path.endswith("guides/mean_field.toml")
    with pytest.raises(pv.SpecError, match="did you mean 'bernoulli_vae'"):
        read_model("bernouli_vae")
    with pytest.raises(pv.SpecError, match="no such file"):
        read_model(str(tmp_path / "missing.toml"))


def test_cli_check_bad_spec_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD_MODEL.replace("dim = 4", "dimm = 4"))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert f"{bad}: latent.z.dimm: unknown key; did you mean 'dim'?" in err


def test_cli_check_prints_the_dag(capsys):
    assert main(["check", "hierarchical_vae"]) == 0
    out = capsys.readouterr().out
    assert "z1" in out and "<- z2 via mlp[128] tanh" in out and out.strip().endswith("ok")
    assert "z2     latent    standard_normal(dim=" in out
    assert "x      observed  bernoulli(dim=data)" in out


def test_latents_cannot_depend_on_x():
    err = model_error(
        GOOD_MODEL.replace(
            "[observed.x]",
            '[latent.w]\nfamily = "normal"\ndim = 2\n'
            'given = ["x"]\nnet = { kind = "linear" }\n[observed.x]',
        )
    )
    assert err.key == "latent.w.given" and "cannot depend on the observed x" in str(err)


def test_weights_error_keeps_its_reason():
    err = model_error(
        GOOD_MODEL.replace(
            "[observed.x]",
            '[latent.c]\nfamily = "categorical"\n'
            "categories = 2\nweights = [0.5, 0.6]\n[observed.x]",
        )
    )
    assert err.key == "latent.c.weights" and "summing to 1" in str(err)


def test_enumerate_is_refused_for_latents_with_latent_children():
    model = parse_model(
        """
        [latent.c]
        family = "categorical"
        categories = 2
        [latent.z]
        family = "normal"
        dim = 2
        given = ["c"]
        net = { kind = "table" }
        [observed.x]
        family = "bernoulli"
        given = ["z"]
        net = { kind = "linear" }
    """.replace("        ", ""),
        "m.toml",
    )
    guide = parse_guide(
        '[latent.c]\nfamily = "enumerate"\n[latent.z]\nfamily = "diagonal_normal"\n'
        'given = ["x"]\nnet = { kind = "linear" }\n',
        "g.toml",
    )
    with pytest.raises(pv.SpecError, match="g.toml: latent.c.family: .*feeds \\['z'\\]"):
        pv.LatentModel(model, guide, (4,))


def test_cli_check_builds_the_nets_and_lists_objectives(tmp_path, capsys):
    bad = tmp_path / "m.toml"
    bad.write_text(
        GOOD_MODEL.replace('kind = "mlp", hidden = [8], activation = "tanh"', 'kind = "table"')
    )
    guide = tmp_path / "g.toml"
    guide.write_text(GOOD_GUIDE)
    assert main(["check", str(bad), str(guide)]) == 2
    assert "observed.x.net: a 'table' net needs exactly one categorical parent" in (
        capsys.readouterr().err
    )
    assert main(["check", "mixture_1d"]) == 0
    assert "objectives: trace, trace_enum, trace_graph\n" in capsys.readouterr().out


def test_default_guide_path_is_relative_to_the_model_file(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "m.toml").write_text('default_guide = "g.toml"\n' + GOOD_MODEL)
    (folder / "g.toml").write_text(GOOD_GUIDE)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "specs/m.toml"]) == 0
    assert pv.load("specs/m.toml", data_shape=(3,)).guide_spec.path.endswith("specs/g.toml")


def test_cli_check_without_guide_builds_the_model_nets(tmp_path, capsys):
    bad = tmp_path / "m.toml"
    bad.write_text(
        GOOD_MODEL.replace('kind = "mlp", hidden = [8], activation = "tanh"', 'kind = "table"')
    )
    assert main(["check", str(bad)]) == 2
    assert "a 'table' net needs exactly one categorical parent" in capsys.readouterr().err

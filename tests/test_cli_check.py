"""``pyro-vae check``: the DAG of a spec, its nets built and the objectives that suit it; a bad spec
refused in one line, without a traceback."""

from pyro_vae.cli import main
from tests.helpers import model_file
from tests.spec.test_spec import GOOD_GUIDE, GOOD_MODEL


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
    listed = "objectives: relaxed, rws, trace, trace_enum, trace_graph, tvo, vimco\n"
    assert listed in capsys.readouterr().out


def test_cli_check_without_guide_builds_the_model_nets(tmp_path, capsys):
    bad = tmp_path / "m.toml"
    bad.write_text(
        GOOD_MODEL.replace('kind = "mlp", hidden = [8], activation = "tanh"', 'kind = "table"')
    )
    assert main(["check", str(bad)]) == 2
    assert "a 'table' net needs exactly one categorical parent" in capsys.readouterr().err


def test_cli_reports_deep_nesting_as_one_line(tmp_path, capsys):
    path = model_file(tmp_path, "x = " + "[" * 100_000)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {path}: not valid TOML")

"""Every validation rule of the spec language gives one SpecError naming the file and key: the
rules of models and guides, TOML the parser cannot take, files that are not text or too large,
sizes that are not whole numbers in range, fixed parameters outside their constraint; names
resolve to bundled specs; and the spec reader, fuzzed, accepts its input or refuses it in one
line (tests/fuzzing.py)."""

from __future__ import annotations

import datetime
import gzip
import json
import math
import textwrap
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyro_vae as pv
from pyro_vae.bundled import bundled_dir, bundled_names
from pyro_vae.cli import main
from pyro_vae.model.families import FAMILIES, Role
from pyro_vae.model.guide_families import GUIDE_FAMILIES
from pyro_vae.model.loading import build_pair
from pyro_vae.model.nets import ACTIVATIONS, NETS
from pyro_vae.spec.parse import parse_guide, parse_model
from pyro_vae.spec.resolve import read_guide, read_model
from tests.fuzzing import accepted_or_clean, fuzz, small_limits
from tests.helpers import load_model, model_file, one_line_error

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
    # A parent that is no guide latent is a data node of the model: checked against it.
    model = parse_model(GOOD_MODEL, "m.toml")
    guide = parse_guide(GOOD_GUIDE.replace('given = ["x"]', 'given = ["y"]'), "g.toml")
    with pytest.raises(pv.SpecError, match=r"g.toml: latent.z.given: 'y' is neither a guide"):
        pv.LatentModel(model, guide, (5,))
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


def test_default_guide_path_is_relative_to_the_model_file(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "m.toml").write_text('default_guide = "g.toml"\n' + GOOD_MODEL)
    (folder / "g.toml").write_text(GOOD_GUIDE)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "specs/m.toml"]) == 0
    assert pv.load("specs/m.toml", data_shape=(3,)).guide_spec.path.endswith("specs/g.toml")


# -- TOML the parser cannot take, and files that are no spec ---------------------------------------


BERNOULLI_VAE = (bundled_dir("models") / "bernoulli_vae.toml").read_text()
GAUSSIAN_VAE = (bundled_dir("models") / "gaussian_vae.toml").read_text()


UNREADABLE_TOML = {
    "nested arrays": "x = " + "[" * 100_000,
    "nested inline tables": "x = " + "{a = " * 100_000,
    "a 100,000-part dotted key": ".".join(["a"] * 100_000) + " = 1",
    "an integer of 5,000 digits": "x = " + "9" * 5000,
    "NUL bytes": "x = 1\x00\x00",
    "bad date": "x = 1979-02-30",
    "too long": "# " + "a" * 1_000_001,
}


@pytest.mark.parametrize("text", UNREADABLE_TOML.values(), ids=UNREADABLE_TOML)
def test_unreadable_toml_is_a_spec_error_naming_the_file(tmp_path, text):
    path = model_file(tmp_path, text)
    one_line_error(pv.SpecError, load_model(path), str(path))
    error = one_line_error(pv.SpecError, lambda: parse_model(text, "m.toml"), "m.toml: ")
    assert error.key == ""


@pytest.mark.parametrize(
    "content, words",
    [
        (bytes(range(256)) * 4, "is not UTF-8 text"),
        ("description = 'café'".encode("latin-1"), "is not UTF-8 text"),
        (gzip.compress(BERNOULLI_VAE.encode()), "is not UTF-8 text"),
        (b"\xef\xbb\xbf" + BERNOULLI_VAE.encode(), "not valid TOML"),  # a byte-order mark
        ('x = "\ud800"'.encode("utf-8", "surrogatepass"), "is not UTF-8 text"),
    ],
    ids=["binary", "latin-1", "gzip", "bom", "surrogate"],
)
def test_binary_and_non_utf8_files_are_spec_errors(tmp_path, content, words):
    path = tmp_path / "m.toml"
    path.write_bytes(content)
    one_line_error(pv.SpecError, load_model(path), str(path), words)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "m.toml"
    with open(path, "wb") as file:
        file.truncate(5 * 10**9)  # sparse: 5 GB that take no disk
    one_line_error(pv.SpecError, load_model(path), str(path), "a spec may have at most")


def test_guides_get_the_same_checks(tmp_path):
    """The guide reader shares the model's: deep nesting, bad sizes, reserved names."""
    for text, words in [
        ("x = " + "[" * 100_000, "not valid TOML"),
        ('[latent.z]\nfamily = "low_rank_normal"\nrank = 1e9\n', "latent.z.rank: "),
        ('[latent.keys]\nfamily = "diagonal_normal"\n', "'keys' is reserved: the torch"),
        ('[latent."a.b"]\nfamily = "diagonal_normal"\n', "latent.'a.b': a node name"),
    ]:
        one_line_error(pv.SpecError, lambda text=text: parse_guide(text, "g.toml"), words)


# -- sizes that are not whole numbers in range -----------------------------------------------------


BAD_SIZES = [
    ("dim = 50", "dim = 1e20", "latent.z.dim"),
    ("dim = 50", "dim = 1e300", "latent.z.dim"),
    ("dim = 50", "dim = -3", "latent.z.dim"),
    ("dim = 50", "dim = 0", "latent.z.dim"),
    ("dim = 50", "dim = true", "latent.z.dim"),
    ("dim = 50", 'dim = "5"', "latent.z.dim"),
    ("dim = 50", "dim = 5.0", "latent.z.dim"),
    ("dim = 50", "dim = nan", "latent.z.dim"),
    ("dim = 50", "dim = inf", "latent.z.dim"),
    ("dim = 50", f"dim = {10**30}", "latent.z.dim"),
    ("dim = 50", "dim = 0x" + "f" * 5000, "latent.z.dim"),
    ("dim = 50", "dim = [50]", "latent.z.dim"),
    ("hidden = [200, 200]", "hidden = [1.5]", "observed.x.net.hidden"),
    ("hidden = [200, 200]", "hidden = [200, -1]", "observed.x.net.hidden"),
    ("hidden = [200, 200]", f"hidden = [{2**63}]", "observed.x.net.hidden"),
    ("hidden = [200, 200]", "hidden = [[200]]", "observed.x.net.hidden"),
]


@pytest.mark.parametrize("old, new, key", BAD_SIZES, ids=[new[:24] for _, new, _ in BAD_SIZES])
def test_bad_sizes_name_the_key_and_the_range(tmp_path, old, new, key):
    path = model_file(tmp_path, BERNOULLI_VAE.replace(old, new))
    words = [f"{path}: {key}: "]
    if "[[" not in new:
        words.append("must be a whole number between 1 and 1,000,000,000")
    error = one_line_error(pv.SpecError, load_model(path), *words)
    assert error.key == key
    assert len(str(error)) < 300  # a huge number is described, not printed


@pytest.mark.parametrize(
    "model, old, new, key",
    [
        ("mixture_1d", "categories = 3", "categories = 1e3", "latent.c.categories"),
        ("mixture_prior_vae", "components = 10", "components = 2.5", "latent.z.components"),
        ("flow_prior_vae", "flows = 2", "flows = -1", "latent.z.flows"),
        ("conv_vae", "kernel = 3", "kernel = 3.0", "observed.x.net.kernel"),
        ("conv_vae", "stride = 2", f"stride = {10**12}", "observed.x.net.stride"),
        ("conv_vae", "channels = [64, 32]", "channels = [64, true]", "observed.x.net.channels"),
    ],
)
def test_every_size_key_takes_whole_numbers_only(tmp_path, model, old, new, key):
    text = (bundled_dir("models") / f"{model}.toml").read_text()
    assert old in text
    error = one_line_error(
        pv.SpecError, lambda: parse_model(text.replace(old, new), "m.toml"), "whole number"
    )
    assert error.key == key


# -- fixed distribution parameters outside their constraint ----------------------------------------


@pytest.mark.parametrize(
    "scale", ["1e-300", "0", "-0.5", "inf", "-inf", "nan", "5e-324", "1e-7", "1e30", str(10**400)]
)
def test_a_fixed_scale_outside_its_constraint_is_named_with_the_reason(tmp_path, scale):
    path = model_file(tmp_path, GAUSSIAN_VAE.replace('scale = "learned"', f"scale = {scale}"))
    error = one_line_error(
        pv.SpecError,
        load_model(path),
        f"{path}: observed.x.scale: ",
        "must be a finite number from 1e-06 to 1e+18",
        "float32",
    )
    assert error.key == "observed.x.scale"


@pytest.mark.parametrize(
    "weights, words",
    [
        ("[0.5, 0.5, nan]", "item 2: a fixed weight must be a finite number"),
        ("[1.5, -0.25, -0.25]", "item 0: a fixed weight must be a finite number from 1e-30 to 1"),
        ("[1e-300, 0.5, 0.5]", "rounds to 0 in float32"),
        ("[0.0, 0.5, 0.5]", "item 0: a fixed weight"),
        ("[0.2, 0.2, 0.2]", "expected probabilities summing to 1, got sum 0.6"),
        ("[inf, 0.5, 0.5]", "item 0"),
        ('[0.5, "a", 0.5]', "item 1: expected a number"),
    ],
)
def test_fixed_weights_outside_their_constraint_are_named(weights, words):
    text = (bundled_dir("models") / "mixture_1d.toml").read_text()
    text = text.replace('weights = "learned"', f"weights = {weights}")
    error = one_line_error(pv.SpecError, lambda: parse_model(text, "m.toml"), words)
    assert error.key == "latent.c.weights"


# -- fuzzed: the spec reader accepts what it is given or refuses it in one line --------------------


@fuzz(300)
@given(st.text(max_size=400))
def test_spec_reader_on_arbitrary_text(text):
    accepted_or_clean(lambda: parse_model(text, "m.toml"))
    accepted_or_clean(lambda: parse_guide(text, "g.toml"))


NAMES = [
    *FAMILIES.names(),
    *GUIDE_FAMILIES.names(),
    *NETS.names(),
    *ACTIVATIONS,
    "x",
    "z",
    "z1",
    "learned",
    "net",
    "uniform",
]
FRAGMENTS = [
    "[latent.z]",
    "[latent.c]",
    "[observed.x]",
    "[latent.z.net]",
    "[[latent]]",
    "family = ",
    "dim = ",
    "given = ",
    "net = ",
    "kind = ",
    "hidden = ",
    "scale = ",
    "weights = ",
    "categories = ",
    "channels = ",
    "description = ",
    "default_guide = ",
    *(f'"{n}"' for n in NAMES),
    '["z"]',
    '["x"]',
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    ".",
    '"',
    "'''",
    '"""',
    "#",
    "\n",
    " ",
    "0",
    "-1",
    "1e400",
    "nan",
    "inf",
    "true",
    "1979-05-27",
    "0x" + "f" * 30,
    "9" * 30,
]


@fuzz(300)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60))
def test_spec_reader_on_toml_like_text(fragments):
    text = "".join(fragments)
    accepted_or_clean(lambda: parse_model(text, "m.toml"))
    accepted_or_clean(lambda: parse_guide(text, "g.toml"))


SCALARS = st.one_of(
    st.integers(),
    st.integers(-3, 300),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(NAMES),
    st.booleans(),
    st.dates(),
    st.times(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
KEYS = st.one_of(
    st.sampled_from(["family", "dim", "given", "net", "kind", "hidden", "scale", "z", "x"]),
    st.text(max_size=10),
)


def toml_text(value) -> str:
    """``value`` written as TOML, every table inline (``latent = { z = { dim = 3 } }``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if (math.isinf(value))
            else repr(value)
        )
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    return "{ " + ", ".join(f"{toml_string(k)} = {toml_text(v)}" for k, v in value.items()) + " }"


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as is
    (JSON would write characters beyond U+FFFF as surrogate pairs, which TOML refuses)."""
    escaped = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else "\\" + c if c in '"\\' else c
        for c in text
    )
    return f'"{escaped}"'


def document(value: dict) -> str:
    return "\n".join(f"{toml_string(k)} = {toml_text(v)}" for k, v in value.items())


#: How often each change is drawn: mostly a value replaced by one of its own type ("tweak"),
#: so that many documents keep their shape and reach the checks of values, of sizes and the
#: model builder; the others replace a value by anything, or drop, add or rename a key.
ACTIONS = ["tweak"] * 5 + ["replace"] * 3 + ["drop", "add", "rename"]

#: A value of the same type as the one replaced: sizes around the useful ones and far beyond.
LIKE = {
    bool: st.booleans(),
    int: st.one_of(st.integers(-2, 300), st.integers(), st.sampled_from([2**31, 10**7, 10**5])),
    float: st.floats(),
    str: st.one_of(st.sampled_from(NAMES), st.text(max_size=6)),
    list: st.lists(st.one_of(st.integers(-1, 400), st.sampled_from(NAMES)), max_size=4),
}


def positions(table: dict) -> list[tuple[dict, str]]:
    """Every (table, key) of a document, nested tables included."""
    found = [(table, key) for key in table]
    for value in table.values():
        if isinstance(value, dict):
            found += positions(value)
    return found


def mutated(data, doc: dict, mutations: int) -> dict:
    """``doc`` with ``mutations`` random changes, each at a random key of it."""
    doc = json.loads(json.dumps(doc))  # a deep copy (specs hold only JSON values)
    for _ in range(mutations):
        places = positions(doc)
        action = data.draw(st.sampled_from(ACTIONS))
        if action == "add" or not places:
            tables = [doc, *(t[k] for t, k in places if isinstance(t[k], dict))]
            data.draw(st.sampled_from(tables))[data.draw(KEYS)] = data.draw(VALUES)
            continue
        table, key = data.draw(st.sampled_from(places))
        if action == "drop":
            del table[key]
        elif action == "replace" or type(table[key]) not in LIKE:
            table[key] = data.draw(VALUES)
        elif action == "tweak":
            table[key] = data.draw(LIKE[type(table[key])])
        else:
            table[data.draw(KEYS)] = table.pop(key)
    return doc


def bundled_doc(kind: str, name: str) -> dict:
    return tomllib.loads((bundled_dir(kind) / f"{name}.toml").read_text())


MODELS = bundled_names("models")
GUIDES = bundled_names("guides")


def build(model, guide, shape) -> None:
    build_pair(model, guide, shape[1:] if model.sequential else shape)


@fuzz(300)
@given(st.data(), st.sampled_from(MODELS), st.sampled_from([1, 1, 2, 3]))
def test_mutated_model_specs_parse_and_build_or_fail_cleanly(data, name, mutations):
    text = document(mutated(data, bundled_doc("models", name), mutations))
    with small_limits():
        accepted_or_clean(lambda: build(parse_model(text, "m.toml"), _guide_of(name), (1, 8, 8)))


def _guide_of(model_name: str):
    spec = read_model(model_name)
    return read_guide(spec.default_guide)


@fuzz(200)
@given(st.data(), st.sampled_from(GUIDES), st.sampled_from([1, 1, 2, 3]))
def test_mutated_guide_specs_parse_and_build_or_fail_cleanly(data, name, mutations):
    text = document(mutated(data, bundled_doc("guides", name), mutations))
    model = {
        "hierarchical_vae": "hierarchical_vae",
        "mixture_1d": "mixture_1d",
        "dmm": "dmm",
        "lgssm": "lgssm",
    }.get(name.removesuffix("_enumerate"), "bernoulli_vae")
    model = "conv_vae" if name == "conv" else model
    with small_limits():
        accepted_or_clean(lambda: build(read_model(model), parse_guide(text, "g.toml"), (1, 8, 8)))

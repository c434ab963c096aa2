"""Property-based fuzzing of every reader of user input: whatever it is given, it either
accepts it or raises a :class:`~pyro_vae.errors.PyroVaeError` with a one-line message; it never
raises anything else (a ``TypeError``, a ``RecursionError``, an allocator's ``MemoryError``).

Examples per test (``max_examples``; the whole file runs in about 15 s on 2 cores):

- spec reader on arbitrary text: 300; on TOML-ish text assembled from spec fragments: 300;
- bundled model specs mutated (keys dropped, renamed or added, values replaced by random
  integers, floats, strings, booleans, dates, lists and nested tables), parsed and built into a
  :class:`~pyro_vae.model.latent_model.LatentModel`: 300; bundled guide specs mutated: 200;
- objective settings on arbitrary text: 500; on ``name:key=value,...`` assembled from parts: 300;
- data loader on arbitrary option dicts for every registered set: 300; on random bytes written
  as an ``.npz`` / ``.npy`` file: 200; on valid files damaged (bytes flipped, cut, inserted): 300.

2,700 examples in all. While fuzzing, the model size limit (``PYRO_VAE_MAX_BYTES``) and the
synthetic sets' bound on counts are lowered, so that an accepted example stays cheap to build.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from pyro_vae.bundled import bundled_dir, bundled_names
from pyro_vae.data import DATASETS, load_dataset, synthetic
from pyro_vae.errors import PyroVaeError
from pyro_vae.model import sizes
from pyro_vae.model.families import FAMILIES
from pyro_vae.model.guide_families import GUIDE_FAMILIES
from pyro_vae.model.latent_model import LatentModel
from pyro_vae.model.nets import ACTIVATIONS, NETS
from pyro_vae.objectives.registry import OBJECTIVES, ObjectiveChoice
from pyro_vae.spec.parse import parse_guide, parse_model
from pyro_vae.spec.resolve import read_guide, read_model

# Hypothesis keeps a cache of constants in ./.hypothesis; not in the working tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "pyro_vae-hypothesis")


def fuzz(examples: int) -> settings:
    """``examples`` examples, no deadline (a first build imports and warms up torch), and no
    example database: nothing is written into the working tree."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def accepted_or_clean(call):
    """Run ``call``; a :class:`PyroVaeError` must be one line. Returns whether it accepted."""
    try:
        call()
    except PyroVaeError as e:
        assert "\n" not in str(e) and "\r" not in str(e), str(e)
        assert len(str(e)) < 2000, str(e)[:300]
        return False
    return True


@contextlib.contextmanager
def small_limits():
    """A model limit of 64 MiB and synthetic sets of at most 2,000 rows while fuzzing."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(sizes.MAX_BYTES_ENV, str(64 * 2**20))
        patch.setattr(synthetic, "MAX_COUNT", 2000)
        yield


# -- (a) the spec reader ---------------------------------------------------------------------


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
    LatentModel(model, guide, shape)


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
    model = {"hierarchical_vae": "hierarchical_vae", "mixture_1d": "mixture_1d"}.get(
        name.removesuffix("_enumerate"), "bernoulli_vae"
    )
    model = "conv_vae" if name == "conv" else model
    with small_limits():
        accepted_or_clean(lambda: build(read_model(model), parse_guide(text, "g.toml"), (1, 8, 8)))


# -- (b) objective settings ------------------------------------------------------------------


@fuzz(500)
@given(st.text(max_size=60))
def test_objective_settings_on_arbitrary_text(text):
    accepted_or_clean(lambda: ObjectiveChoice.parse(text))


SETTING_VALUES = st.one_of(
    st.integers().map(str),
    st.floats().map(repr),
    st.text(max_size=8),
    st.sampled_from(["", "nan", "inf", "-inf", "1_0", "0x10", "1e400", "٥", " 3 "]),
)


@fuzz(300)
@given(
    st.sampled_from([*OBJECTIVES.names(), "", "iwea"]),
    st.lists(
        st.tuples(st.sampled_from(["k", "alpha", "", "beta", " k"]), SETTING_VALUES), max_size=4
    ),
    st.sampled_from([":", "", "::"]),
    st.sampled_from([",", ",,", ", "]),
)
def test_objective_settings_assembled_from_parts(name, pairs, colon, comma):
    text = name + colon + comma.join(f"{k}={v}" for k, v in pairs)
    if accepted_or_clean(lambda: ObjectiveChoice.parse(text)):
        choice = ObjectiveChoice.parse(text)
        assert 1 <= choice.num_particles <= 100_000
        assert all(math.isfinite(v) for v in choice.options.values())


# -- (c) the data loader ---------------------------------------------------------------------


DATA_OPTION_NAMES = sorted(
    {"n_train", "n_test", "dim", "latent_dim", "sigma", "include_valid", "seed", "test_fraction"}
    | {"split_seed", "sha256", "binarization", "download", "root", "n_trian"}
)
OPTION_VALUES = st.one_of(
    st.integers(),
    st.integers(-2, 3000),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.sampled_from(["static", "dynamic", "none", "0" * 64]),
)


@fuzz(300)
@given(
    st.sampled_from([*DATASETS.names(), "mnsit", "mine.npz", "mine.npy", "mine.txt"]),
    st.dictionaries(st.sampled_from(DATA_OPTION_NAMES), OPTION_VALUES, max_size=4),
)
def test_data_loader_on_arbitrary_options(name, options):
    with tempfile.TemporaryDirectory() as folder, small_limits():
        root = Path(folder)
        np.savez(root / "mine.npz", train=np.random.rand(20, 3), test=np.random.rand(5, 3))
        np.save(root / "mine.npy", np.random.rand(30, 3))
        target = str(root / name) if name.startswith("mine") else name
        options.setdefault("root", str(root))  # never the user's cache; an empty root: no sets
        options.setdefault("download", False)  # never the network
        accepted_or_clean(lambda: load_dataset(target, **options))


@fuzz(200)
@given(st.binary(max_size=2000), st.sampled_from([".npz", ".npy"]))
def test_data_loader_on_random_bytes(content, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        accepted_or_clean(lambda: load_dataset(str(path)))


def _file_bytes(suffix: str) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    if suffix == ".npz":
        np.savez_compressed(buffer, train=rng.random((20, 3)), test=rng.random((5, 3)))
    else:
        np.save(buffer, rng.random((30, 2, 2)).astype(np.float32))
    return buffer.getvalue()


VALID_FILES = {suffix: _file_bytes(suffix) for suffix in (".npz", ".npy")}


@fuzz(300)
@given(
    st.sampled_from([".npz", ".npy"]),
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "insert"]),
            st.integers(0, 10**6),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_data_loader_on_damaged_files(suffix, damage):
    content = bytearray(VALID_FILES[suffix])
    for action, where, data in damage:
        at = where % max(len(content), 1)
        if action == "flip" and content:
            content[at] ^= data[0] or 1
        elif action == "cut":
            del content[at:]
        else:
            content[at:at] = data
    assume(bytes(content) != VALID_FILES[suffix])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(bytes(content))
        accepted_or_clean(lambda: load_dataset(str(path)))

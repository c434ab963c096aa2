"""Data sets by name: the registry, options checked by name and in one line (also when fuzzed), and
the data root."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyro_vae as pv
from pyro_vae.data import DATASETS, data_root, load_dataset
from pyro_vae.errors import DataError
from tests.fuzzing import accepted_or_clean, fuzz, small_limits
from tests.helpers import one_line_error


def test_registered_names():
    assert DATASETS.names() == [
        "binarized-mnist",
        "digits",
        "lgssm",
        "linear-gaussian",
        "mixture-1d",
        "mnist",
        "mnist-quadrants",
        "mnist-rows",
    ]


def test_unknown_name_suggests_closest():
    with pytest.raises(DataError, match="unknown data set 'mnits'; did you mean 'mnist'"):
        load_dataset("mnits")


def test_unknown_option_is_named():
    with pytest.raises(DataError, match="no option 'n_trian'; did you mean 'n_train'"):
        load_dataset("mixture-1d", n_trian=10)
    with pytest.raises(DataError, match=r"'digits' has no option 'n_train' \(it takes none\)"):
        load_dataset("digits", n_train=10)


def test_bad_option_value():
    with pytest.raises(DataError, match="'n_train' must be a positive integer, got 0"):
        load_dataset("mixture-1d", n_train=0)
    with pytest.raises(DataError, match="'dim' must be a positive integer, got 2.5"):
        load_dataset("linear-gaussian", dim=2.5)
    with pytest.raises(DataError, match="'sigma' must be positive, got -1"):
        load_dataset("linear-gaussian", sigma=-1)
    with pytest.raises(DataError, match="'include_valid' must be true or false"):
        load_dataset("binarized-mnist", include_valid="yes")


def test_data_root_precedence(monkeypatch, tmp_path):
    assert data_root() == tmp_path / "home" / ".cache" / "pyro_vae" / "data"
    monkeypatch.setenv("PYRO_VAE_DATA", str(tmp_path / "from-env"))
    assert data_root() == tmp_path / "from-env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"


BAD_DATA_OPTIONS = [
    ("mixture-1d", {"n_train": -1}, "option 'n_train' must be a positive integer, got -1"),
    (
        "mixture-1d",
        {"n_train": 1e11},
        "option 'n_train' must be a positive integer, got 100000000000.0",
    ),
    ("mixture-1d", {"n_train": 10**11}, "(a whole number from 1 to 10,000,000)"),
    ("mixture-1d", {"n_train": "500"}, "option 'n_train' must be a positive integer, got '500'"),
    ("mixture-1d", {"n_train": True}, "option 'n_train' must be a positive integer, got True"),
    ("mixture-1d", {"n_train": None}, "option 'n_train' must be a positive integer, got None"),
    ("mixture-1d", {"n_trian": 10}, "no option 'n_trian'; did you mean 'n_train'"),
    ("linear-gaussian", {"dim": 10**7, "n_train": 10**7}, "ask for"),
    ("linear-gaussian", {"sigma": float("inf")}, "option 'sigma' must be finite"),
    ("linear-gaussian", {"sigma": float("nan")}, "option 'sigma' must be positive, got nan"),
    ("linear-gaussian", {"sigma": "0.5"}, "option 'sigma' must be positive, got '0.5'"),
    ("digits", {"seed": -1}, "seed must be a whole number from 0 to 4,294,967,295"),
    ("digits", {"seed": 2**70}, "seed must be a whole number"),
    ("digits", {"seed": "1"}, "seed must be a whole number"),
    ("digits", {"binarization": ["static"]}, "binarization: expected one of"),
    ("digits", {"download": "yes"}, "option 'download' must be true or false"),
    ("digits", {"root": 5}, "data root: expected a directory"),
    (["digits"], {}, "data: expected a data set name or file"),
    ("", {}, "data: expected a data set name or file"),
    ("digits\x00", {}, "must be printable text"),
    ("mine\n.npz", {}, "must be printable text"),
    ("a" * 5000 + ".npz", {}, "cannot be opened"),
    ("binarized-mnist", {"include_valid": 1}, "'include_valid' must be true or false"),
    ("mnist-rows", {"include_valid": 1}, "'include_valid' must be true or false"),
    ("lgssm", {"min_steps": 30}, "option 'min_steps' must be a whole number from 1 to steps (20)"),
    ("lgssm", {"steps": 2.5}, "option 'steps' must be a positive integer, got 2.5"),
]


@pytest.mark.parametrize(
    "name, options, words", BAD_DATA_OPTIONS, ids=[str(o)[:30] for _, o, _ in BAD_DATA_OPTIONS]
)
def test_bad_data_options_name_the_option(name, options, words):
    one_line_error(pv.DataError, lambda: load_dataset(name, **options), words)


DATA_OPTION_NAMES = sorted(
    {"n_train", "n_test", "dim", "latent_dim", "sigma", "include_valid", "seed", "test_fraction"}
    | {"split_seed", "sha256", "binarization", "download", "root", "n_trian", "steps"}
    | {"min_steps"}
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

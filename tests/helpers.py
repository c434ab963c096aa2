"""Helpers the tests of several folders share (fixtures are in conftest.py): the folders the tests
read, the run most run-directory tests start from, the check of a one-line error, the check of a
result's four views, and data to feed the data layer."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import pyro_vae as pv

# -- folders ---------------------------------------------------------------------------------

#: The tests' folder (specs/ and golden/ are in it) and the repository's root.
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SPECS = TESTS / "specs"
#: The reference copies of the real data sets sit beside the repository, in ../shared/data.
SHARED_DATA = REPO.parent / "shared" / "data"

# -- run directories -------------------------------------------------------------------------

TRAIN = ["train", "--model", "bernoulli_vae", "--guide", "mean_field", "--data", "digits"]


def train_cli(out: Path, *extra: str) -> list[str]:
    return [*TRAIN, "--epochs", "2", "--out", str(out), "--no-progress", *extra]


def metric_epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- bad input: one line naming the key, option or file ------------------------------------------


def one_line_error(error_type, call, *words):
    """Run ``call``, expect ``error_type``; its message is one line holding every word."""
    with pytest.raises(error_type) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    for word in words:
        assert word in message, (word, message)
    return caught.value


def model_file(tmp_path, text, name="m.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load_model(path, guide="mean_field", data_shape=(64,)):
    return lambda: pv.load(path, guide, data_shape=data_shape)


# -- results ---------------------------------------------------------------------------------


def check_views(result, name: str) -> dict:
    """The four views of ``result`` hold no tensor, repr is one line, to_dict is strict JSON;
    returns to_dict() after a round trip through JSON."""
    text, line, markdown = str(result), repr(result), result._repr_markdown_()
    for view in (text, line, markdown):
        assert "tensor(" not in view
    assert line.startswith(f"{name}(") and "\n" not in line and len(line) < 300
    assert markdown.startswith("**") and "\n|---|" in markdown
    d = result.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    return d


# -- data ------------------------------------------------------------------------------------


def grey(n, *shape, seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


HAVE_MNIST = (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists()
HAVE_BINARIZED_MNIST = (SHARED_DATA / "binarized-mnist" / "binarized_mnist.npz").exists()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"no MNIST copy in {SHARED_DATA}")
needs_binarized_mnist = pytest.mark.skipif(
    not HAVE_BINARIZED_MNIST, reason=f"no binarized MNIST copy in {SHARED_DATA}"
)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def sha256_of_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()

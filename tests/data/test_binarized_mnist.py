"""``binarized-mnist``: loaded from the environment's root or downloaded from .amat files; arrays
checked by their hashes, a damaged file reported and left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import pyro_vae as pv
from pyro_vae.data import binarized_mnist as binarized_mnist_module
from pyro_vae.data import load_dataset
from pyro_vae.errors import DataError
from tests.data.test_arrays import _flipped, _npz_bytes
from tests.helpers import SHARED_DATA, needs_binarized_mnist, one_line_error, sha256_of_array


@needs_binarized_mnist
def test_binarized_mnist_loads_from_environment_root(monkeypatch):
    monkeypatch.setenv("PYRO_VAE_DATA", str(SHARED_DATA))
    data = load_dataset("binarized-mnist")
    assert data.train.shape == (50000, 784) and data.test.shape == (10000, 784)
    assert data.binarization == "static" and data.image_shape == (1, 28, 28)
    assert data.is_binary
    # Number of ones per split, as listed in the data set's README.
    assert int(data.train.sum()) == 5_118_041 and int(data.test.sum()) == 1_038_896
    for impossible in ("dynamic", "none"):
        with pytest.raises(DataError, match="no grayscale intensities"):
            load_dataset("binarized-mnist", binarization=impossible)


@needs_binarized_mnist
def test_corrupted_binarized_mnist_array_is_reported_and_left_alone(tmp_path):
    path = tmp_path / "binarized-mnist" / "binarized_mnist.npz"
    path.parent.mkdir()
    with np.load(SHARED_DATA / "binarized-mnist" / path.name) as archive:
        arrays = {split: archive[split] for split in archive.files}
    arrays["test"][0, 0] ^= 1
    np.savez(path, **arrays)
    before = path.read_bytes()
    with pytest.raises(DataError, match=r"\(array 'test'\) has sha256 .*, expected ca0294c3"):
        load_dataset("binarized-mnist", root=tmp_path)
    assert path.read_bytes() == before


def write_amat(path: Path, array: np.ndarray) -> None:
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in array))


def test_binarized_mnist_download_from_amat(monkeypatch, tmp_path, serve):
    rng = np.random.default_rng(0)
    arrays = {
        split: rng.integers(0, 2, size=(n, 784), dtype=np.uint8)
        for split, n in (("train", 4), ("valid", 2), ("test", 3))
    }
    served = tmp_path / "served"
    served.mkdir()
    for split, array in arrays.items():
        write_amat(served / f"binarized_mnist_{split}.amat", array)
    hashes = {split: sha256_of_array(array) for split, array in arrays.items()}
    monkeypatch.setattr(binarized_mnist_module, "BINARIZED_MNIST_SHA256", hashes)
    monkeypatch.setattr(binarized_mnist_module, "BINARIZED_MNIST_MIRRORS", [serve(served)])

    data = load_dataset("binarized-mnist", root=tmp_path / "data", download=True)
    assert torch.equal(data.train, torch.from_numpy(arrays["train"]).float())
    assert torch.equal(data.test, torch.from_numpy(arrays["test"]).float())
    assert torch.equal(data.valid, torch.from_numpy(arrays["valid"]).float())
    with_valid = load_dataset("binarized-mnist", root=tmp_path / "data", include_valid=True)
    assert with_valid.train.shape == (6, 784) and with_valid.valid is None
    directory = tmp_path / "data" / "binarized-mnist"
    assert [p.name for p in directory.iterdir()] == ["binarized_mnist.npz"]

    # A served file that parses but holds other bits fails its array hash; nothing is written.
    flipped = arrays["valid"].copy()
    flipped[0, 0] ^= 1
    write_amat(served / "binarized_mnist_valid.amat", flipped)
    with pytest.raises(DataError, match=r"\(array 'valid'\) has sha256"):
        load_dataset("binarized-mnist", root=tmp_path / "other", download=True)
    assert list((tmp_path / "other" / "binarized-mnist").iterdir()) == []


def test_a_damaged_binarized_mnist_file_is_a_data_error(tmp_path):
    folder = tmp_path / "binarized-mnist"
    folder.mkdir()
    arrays = {s: np.zeros((2, 784), np.uint8) for s in ("train", "valid", "test")}
    (folder / "binarized_mnist.npz").write_bytes(_flipped(_npz_bytes(**arrays), 100))
    one_line_error(
        pv.DataError,
        lambda: load_dataset("binarized-mnist", root=tmp_path),
        "binarized_mnist.npz",
    )

"""Local data files: a missing one named (and downloaded only when asked), values checked finite,
downloads checked before they are kept, mirrors tried in turn."""

from __future__ import annotations

import gzip
import hashlib
import shutil

import numpy as np
import pytest
import torch

from pyro_vae.data import binarized_mnist as binarized_mnist_module
from pyro_vae.data import load_dataset
from pyro_vae.data import mnist as mnist_module
from pyro_vae.data.files import check_finite, fetch_verified
from pyro_vae.errors import DataError
from tests.helpers import SHARED_DATA, flip_byte, needs_mnist, sha256_of_array


def test_missing_file_under_explicit_root_is_named(tmp_path):
    with pytest.raises(DataError, match="is missing; pass download=True") as error:
        load_dataset("mnist", root=tmp_path)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in str(error.value)
    assert not (tmp_path / "mnist").exists()


def test_missing_file_under_environment_root_is_not_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("PYRO_VAE_DATA", str(tmp_path))
    with pytest.raises(DataError, match="binarized_mnist.npz is missing"):
        load_dataset("binarized-mnist")


def test_non_finite_values_are_reported(monkeypatch, tmp_path):
    with pytest.raises(
        DataError, match="somewhere.bin: 1 NaN value at row 1, 1 infinite value at row 2"
    ):
        check_finite(torch.tensor([0.0, float("nan"), float("inf")]), "somewhere.bin")
    with pytest.raises(DataError, match="x: 2 NaN values, the first at row 1$"):
        check_finite(torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [0.0, float("nan")]]), "x")
    check_finite(np.arange(3, dtype=np.uint8), "integers can hold no NaN")

    arrays = {split: np.zeros((2, 784), dtype=np.float32) for split in ("train", "valid", "test")}
    arrays["train"][1, 5] = np.nan
    path = tmp_path / "binarized-mnist" / "binarized_mnist.npz"
    path.parent.mkdir()
    np.savez(path, **arrays)
    hashes = {split: sha256_of_array(array) for split, array in arrays.items()}
    monkeypatch.setattr(binarized_mnist_module, "BINARIZED_MNIST_SHA256", hashes)
    with pytest.raises(DataError, match=r"binarized_mnist.npz \(array .train.\): 1 NaN value"):
        load_dataset("binarized-mnist", root=tmp_path)


@needs_mnist
def test_corrupted_download_leaves_no_file(monkeypatch, tmp_path, serve):
    served = tmp_path / "served"
    served.mkdir()
    name = "train-images-idx3-ubyte.gz"
    shutil.copyfile(SHARED_DATA / "mnist" / name, served / name)
    flip_byte(served / name, 100)
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", [serve(served)])
    with pytest.raises(DataError, match=f"could not download .*{name}.*has sha256"):
        load_dataset("mnist", root=tmp_path / "data", download=True)
    assert list((tmp_path / "data" / "mnist").iterdir()) == []


def test_fetch_falls_back_to_next_mirror(tmp_path, serve):
    good, bad, empty, destination = (tmp_path / name for name in ("good", "bad", "empty", "dest"))
    for directory in (good, bad, empty, destination):
        directory.mkdir()
    payload = gzip.compress(b"payload")
    (good / "file.gz").write_bytes(payload)
    (bad / "file.gz").write_bytes(payload[:-1])
    sha256 = hashlib.sha256(payload).hexdigest()
    fetch_verified([serve(empty), serve(bad), serve(good)], destination / "file.gz", sha256)
    assert (destination / "file.gz").read_bytes() == payload
    assert [p.name for p in destination.iterdir()] == ["file.gz"]

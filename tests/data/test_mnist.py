"""``mnist``: the IDX files loaded from a root or downloaded into the cache; a damaged or malformed
file reported and left alone."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

import pyro_vae as pv
from pyro_vae.data import load_dataset
from pyro_vae.data import mnist as mnist_module
from pyro_vae.errors import DataError
from tests.helpers import SHARED_DATA, flip_byte, needs_mnist, one_line_error


@needs_mnist
def test_mnist_loads_from_explicit_root():
    data = load_dataset("mnist", root=SHARED_DATA)
    assert data.train.shape == (60000, 784) and data.test.shape == (10000, 784)
    assert data.train.dtype == torch.float32 and data.image_shape == (1, 28, 28)
    assert float(data.train.min()) == 0.0 and float(data.train.max()) == 1.0
    assert data.binarization == "none" and str(SHARED_DATA) in data.source
    # The first training image is a 5 whose pixels sum to 27525 / 255.
    assert abs(float(data.train[0].sum()) * 255 - 27525) < 0.1
    assert data.train_labels[0].item() == 5 and data.test_labels[0].item() == 7
    assert data.test_labels.bincount().tolist()[:2] == [980, 1135]  # MNIST's published counts


@needs_mnist
def test_corrupted_mnist_file_is_reported_and_left_alone(tmp_path):
    copy = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    copy.parent.mkdir()
    shutil.copyfile(SHARED_DATA / "mnist" / copy.name, copy)
    flip_byte(copy, 5000)
    corrupted = copy.read_bytes()
    with pytest.raises(DataError, match="has sha256 .*, expected 440fcabf.*delete it") as error:
        load_dataset("mnist", root=tmp_path, download=True)
    assert str(copy) in str(error.value)
    assert copy.read_bytes() == corrupted


def test_malformed_idx_is_reported():
    path = Path("bad-idx.gz")
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (2, 28, 28))
    good = header + bytes(2 * 28 * 28)
    assert mnist_module.parse_idx(good, path, 2051).shape == (2, 28, 28)
    with pytest.raises(DataError, match="bad-idx.gz: IDX magic number is 2051, expected 2049"):
        mnist_module.parse_idx(good, path, 2049)
    with pytest.raises(DataError, match="bad-idx.gz: IDX file is"):
        mnist_module.parse_idx(good[:-1], path, 2051)
    with pytest.raises(DataError, match="bad-idx.gz: IDX header is truncated"):
        mnist_module.parse_idx(header[:10], path, 2051)


@needs_mnist
def test_mnist_downloads_into_default_cache(monkeypatch, tmp_path, serve):
    served = tmp_path / "served"
    shutil.copytree(SHARED_DATA / "mnist", served)
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", [serve(served)])
    data = load_dataset("mnist")  # no root given: downloads into ~/.cache/pyro_vae/data
    assert data.train.shape == (60000, 784)
    cached = tmp_path / "home" / ".cache" / "pyro_vae" / "data" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(mnist_module.MNIST_SHA256)
    for name in mnist_module.MNIST_SHA256:
        assert (cached / name).read_bytes() == (served / name).read_bytes()


def test_a_damaged_mnist_file_is_reported_by_its_checksum(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00" * 100)[:-4])
    one_line_error(
        pv.DataError,
        lambda: load_dataset("mnist", root=tmp_path),
        "train-images-idx3-ubyte.gz has sha256",
    )

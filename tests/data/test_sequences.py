"""``mnist-rows`` and image sets read as sequences of their rows: the rows in order, lengths all
the image height, labels and binarization kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pyro_vae as pv
from pyro_vae.data import binarized_mnist as binarized_mnist_module
from pyro_vae.data import load_dataset
from pyro_vae.data.sequences import image_rows
from tests.helpers import SHARED_DATA, needs_binarized_mnist, one_line_error, sha256_of_array


@needs_binarized_mnist
def test_mnist_rows_are_the_binarized_digits_row_by_row(monkeypatch):
    monkeypatch.setenv("PYRO_VAE_DATA", str(SHARED_DATA))
    rows = load_dataset("mnist-rows")
    assert rows.train.shape == (50000, 28, 28) and rows.test.shape == (10000, 28, 28)
    assert rows.is_sequence and rows.step_shape == (28,) and rows.image_shape is None
    assert rows.binarization == "static" and rows.is_binary and rows.name == "mnist-rows"
    train_lengths, test_lengths = rows.columns["lengths"]
    assert train_lengths.dtype == torch.int64 and (train_lengths == 28).all()
    assert test_lengths.shape == (10000,) and (test_lengths == 28).all()
    # Same split and binarization as binarized-mnist: only the shape differs.
    assert int(rows.test.sum()) == 1_038_896
    with_valid = load_dataset("mnist-rows", include_valid=True)
    assert with_valid.train.shape == (60000, 28, 28)
    assert with_valid.columns["lengths"][0].shape == (60000,)


def test_mnist_rows_keep_each_image_s_rows_in_order(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        split: rng.integers(0, 2, size=(n, 784), dtype=np.uint8)
        for split, n in (("train", 4), ("valid", 2), ("test", 3))
    }
    folder = tmp_path / "binarized-mnist"
    folder.mkdir()
    np.savez(folder / "binarized_mnist.npz", **arrays)
    hashes = {split: sha256_of_array(array) for split, array in arrays.items()}
    monkeypatch.setattr(binarized_mnist_module, "BINARIZED_MNIST_SHA256", hashes)
    rows = load_dataset("mnist-rows", root=tmp_path)
    # Step i of sequence n is row i of image n: pixels 28 i .. 28 i + 27.
    expected = torch.from_numpy(arrays["test"].astype(np.float32))[2, 28 * 5 : 28 * 6]
    assert torch.equal(rows.test[2, 5], expected)
    assert rows.train.shape == (4, 28, 28) and rows.train_labels is None
    assert load_dataset("mnist-rows", root=tmp_path, include_valid=True).train.shape[0] == 6
    one_line_error(
        pv.DataError,
        lambda: load_dataset("mnist-rows", root=tmp_path, include_valid="yes"),
        "'include_valid' must be true or false",
    )
    with pytest.raises(pv.DataError, match="no option 'given'"):
        load_dataset("mnist-rows", root=tmp_path, given=1)


def test_mnist_rows_without_the_file_names_it(tmp_path):
    one_line_error(
        pv.DataError,
        lambda: load_dataset("mnist-rows", root=tmp_path, download=False),
        "binarized_mnist.npz",
    )


def test_image_rows_keep_labels_and_dynamic_intensities():
    digits = load_dataset("digits", binarization="dynamic", seed=2)
    rows = image_rows(digits, "digit-rows")
    assert rows.train.shape == (len(digits.train), 8, 8) and rows.step_shape == (8,)
    assert torch.equal(rows.train_labels, digits.train_labels)
    assert torch.equal(rows.train.reshape(len(rows.train), -1), digits.train)
    assert rows.train_intensities.shape == rows.train.shape
    assert (rows.columns["lengths"][1] == 8).all() and rows.names[-1] == "lengths"
    batch, labels = next(rows.train_batches(16, torch.Generator().manual_seed(0), ("x", "labels")))
    assert batch.shape == (16, 8, 8) and labels.shape == (16,)
    assert not digits.is_sequence and digits.step_shape is None

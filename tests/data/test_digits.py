"""``digits``: shapes, range, a split fixed across seeds, and labels that follow the split."""

from __future__ import annotations

import torch

import pyro_vae as pv
from pyro_vae.data import load_dataset


def test_digits_shapes_range_and_split_fixed_across_seeds(digits):
    assert digits.train.shape == (1500, 64) and digits.test.shape == (297, 64)
    assert digits.train.dtype == digits.test.dtype == torch.float32
    assert digits.event_shape == torch.Size([64])
    assert digits.image_shape == (1, 8, 8) and digits.binarization == "none"
    assert float(digits.train.min()) == 0.0 and float(digits.train.max()) == 1.0
    assert not digits.is_binary
    other_seed = load_dataset("digits", seed=7)
    assert torch.equal(other_seed.train, digits.train)
    assert torch.equal(other_seed.test, digits.test)


def test_labels_are_kept_and_follow_the_split():
    from sklearn.datasets import load_digits

    digits = pv.load_dataset("digits")
    assert digits.train_labels.shape == (1500,) and digits.test_labels.shape == (297,)
    raw = load_digits()
    images = torch.as_tensor(raw.data, dtype=torch.float32) / 16
    for split, labels in ((digits.train, digits.train_labels), (digits.test, digits.test_labels)):
        for i in (0, 7, len(split) - 1):
            (row,) = (images == split[i]).all(1).nonzero()[:1, 0].tolist()
            assert raw.target[row] == labels[i].item()
    binarized = pv.load_dataset("digits", binarization="static")
    assert torch.equal(binarized.test_labels, digits.test_labels)

"""Binarization: static (fixed per seed), dynamic (resampled each epoch, repeatable from a saved
state), and refused for data that are not intensities."""

from __future__ import annotations

import pytest
import torch

from pyro_vae.data import load_dataset
from pyro_vae.errors import DataError


def test_unknown_binarization_suggests_closest():
    with pytest.raises(DataError, match="unknown binarization 'statc'; did you mean 'static'"):
        load_dataset("digits", binarization="statc")


def test_static_binarization_is_binary_and_fixed_per_seed(digits):
    first = load_dataset("digits", binarization="static", seed=1)
    again = load_dataset("digits", binarization="static", seed=1)
    other = load_dataset("digits", binarization="static", seed=2)
    assert first.is_binary and first.binarization == "static"
    assert first.train_intensities is None
    assert torch.equal(first.train, again.train) and torch.equal(first.test, again.test)
    assert not torch.equal(first.train, other.train)
    assert not torch.equal(first.test, other.test)
    # A Bernoulli sample of the intensities: its mean is close to theirs.
    assert abs(float(first.train.mean()) - float(digits.train.mean())) < 0.01


def test_dynamic_binarization_resamples_each_epoch_but_repeats_from_saved_state(digits):
    dynamic = load_dataset("digits", binarization="dynamic", seed=3)
    static = load_dataset("digits", binarization="static", seed=3)
    assert dynamic.is_binary and torch.equal(dynamic.train_intensities, digits.train)
    assert torch.equal(dynamic.test, static.test)  # scores stay comparable across modes

    generator = torch.Generator().manual_seed(11)
    saved_state = generator.get_state()
    first_epoch = list(dynamic.train_batches(64, generator))
    second_epoch = list(dynamic.train_batches(64, generator))
    generator.set_state(saved_state)
    replayed_epoch = list(dynamic.train_batches(64, generator))

    assert [len(batch) for batch in first_epoch] == [64] * 23 + [28]
    assert all(bool(((batch == 0) | (batch == 1)).all()) for batch in first_epoch)
    assert not all(torch.equal(a, b) for a, b in zip(first_epoch, second_epoch, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first_epoch, replayed_epoch, strict=True))


def test_binarizing_unbounded_data_is_refused():
    with pytest.raises(DataError, match=r"needs intensities in \[0, 1\]"):
        load_dataset("mixture-1d", binarization="static")

"""Batches of a data set: training batches visit every row once, test batches in order, and a
seeded random subset of the test rows; the same for sequence sets, dynamic binarization too."""

from __future__ import annotations

import functools

import pytest
import torch

from pyro_vae.data import Dataset
from pyro_vae.data.binarize import binarize
from pyro_vae.data.dataset import step_mask


def test_train_batches_visit_every_row_once(digits):
    generator = torch.Generator().manual_seed(0)
    batches = list(digits.train_batches(500, generator))
    assert [len(batch) for batch in batches] == [500, 500, 500]
    epoch = torch.cat(batches)
    assert not torch.equal(epoch, digits.train)  # shuffled
    sort = functools.partial(sorted, key=lambda row: tuple(row.tolist()))
    assert all(torch.equal(a, b) for a, b in zip(sort(epoch), sort(digits.train), strict=True))


def test_test_batches_in_order(digits):
    batches = list(digits.test_batches(100))
    assert [len(batch) for batch in batches] == [100, 100, 97]
    assert torch.equal(torch.cat(batches), digits.test)
    with pytest.raises(ValueError, match="batch_size"):
        next(digits.test_batches(0))


def test_test_indices_are_a_seeded_random_subset(digits):
    n = len(digits.test)
    assert torch.equal(digits.test_indices(None), torch.arange(n))
    assert torch.equal(digits.test_indices(n + 5), torch.arange(n))
    rows = digits.test_indices(50, seed=1)
    assert len(rows) == 50 and len(set(rows.tolist())) == 50
    assert torch.equal(rows, rows.sort().values) and torch.equal(rows, digits.test_indices(50, 1))
    assert not torch.equal(rows, digits.test_indices(50, seed=2))
    # Spread over the split, not its prefix (which would end at row 49).
    assert rows.max() > n // 2
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="max_data must be a positive integer"):
            digits.test_indices(bad)


def _sequences() -> Dataset:
    """A hand-made sequence set, (N, T, D) grey values zero past each length."""
    g = torch.Generator().manual_seed(0)
    lengths = (torch.arange(10) % 4 + 1, torch.tensor([4, 1, 2]))
    train, test = torch.rand(10, 4, 3, generator=g), torch.rand(3, 4, 3, generator=g) * 0.5
    for x, length in zip((train, test), lengths, strict=True):
        x[~step_mask(length, 4)] = 0.0
    return Dataset("seq", train, test, None, "none", columns={"lengths": lengths})


def test_a_sequence_set_batches_whole_sequences_with_their_lengths():
    data = _sequences()
    assert data.is_sequence and data.step_shape == (3,) and data.event_shape == (4, 3)
    assert data.names == ["x", "lengths"] and data.array("x", "test").shape == (3, 4, 3)
    low, high = data.value_range
    assert low == 0.0 and 0.9 < high < 1.0 and not data.is_binary
    batches = list(data.train_batches(4, torch.Generator().manual_seed(1), ("x", "lengths")))
    assert [x.shape for x, _ in batches] == [(4, 4, 3), (4, 4, 3), (2, 4, 3)]
    for x, lengths in batches:  # each sequence still beside its own length
        assert (x.abs().sum(-1) > 0).sum(-1).tolist() == lengths.tolist()
    assert sorted(torch.cat([lengths for _, lengths in batches]).tolist()) == sorted(
        data.columns["lengths"][0].tolist()
    )
    x, lengths = next(data.test_batches(2, ("x", "lengths")))
    assert torch.equal(x, data.test[:2]) and lengths.tolist() == [4, 1]
    assert torch.equal(torch.cat(list(data.test_batches(2))), data.test)
    assert torch.equal(data.test_indices(2, seed=0), data.test_indices(2, seed=0))
    assert len(data.test_indices(2)) == 2 and len(data.test_indices()) == 3


def test_dynamic_binarization_of_sequences_keeps_the_padding_zero():
    data = binarize(_sequences(), "dynamic", seed=3)
    assert data.train_intensities.shape == (10, 4, 3) and data.is_binary
    assert data.value_range == (0.0, 1.0)
    assert data.train[~step_mask(data.columns["lengths"][0], 4)].eq(0).all()
    epochs = []
    for seed in range(2):
        generator = torch.Generator().manual_seed(seed)
        batches = list(data.train_batches(3, generator, ("x", "lengths")))
        for x, lengths in batches:  # fresh draws, but never inside the padding
            assert x.shape[1:] == (4, 3) and x[~step_mask(lengths, 4)].eq(0).all()
        epoch = torch.cat([x for x, _ in batches])
        assert len(epoch) == 10 and set(epoch.unique().tolist()) == {0.0, 1.0}
        epochs.append(epoch)
    assert not torch.equal(*epochs)

"""Batches of a data set: training batches visit every row once, test batches in order, and a
seeded random subset of the test rows."""

from __future__ import annotations

import functools

import pytest
import torch


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

"""Semi-supervised splits (labelled=N) and the quadrant task's layout."""

import pytest
import torch

from pyro_vae.data import load_dataset
from pyro_vae.data.labels import MISSING, balanced_rows
from pyro_vae.data.quadrants import quadrant_mask
from pyro_vae.errors import DataError


def test_labelled_keeps_n_class_balanced_labels_chosen_by_the_seed():
    full = load_dataset("digits")
    kept = load_dataset("digits", labelled=53, seed=4)
    labels = kept.train_labels
    known = labels != MISSING
    assert int(known.sum()) == 53 and kept.options["labelled"] == 53
    counts = torch.bincount(labels[known], minlength=10)
    assert int(counts.min()) == 5 and int(counts.max()) == 6  # 53 = 10 · 5 + 3
    assert torch.equal(labels[known], full.train_labels[known])  # the true labels, where kept
    assert torch.equal(kept.test_labels, full.test_labels)  # the test labels all kept
    assert torch.equal(load_dataset("digits", labelled=53, seed=4).train_labels, labels)
    assert not torch.equal(load_dataset("digits", labelled=53, seed=5).train_labels, labels)
    onehot = kept.array("labels_onehot", "train")
    assert torch.equal(onehot.sum(-1), known.float())  # a hidden label is a row of zeros


def test_balanced_rows_refuses_more_than_a_class_has():
    labels = torch.tensor([0, 0, 0, 1])
    assert balanced_rows(labels, 2, seed=0).tolist() in ([0, 3], [1, 3], [2, 3])
    with pytest.raises(DataError, match="class 1 has only 1"):
        balanced_rows(labels, 4, seed=0)


@pytest.mark.parametrize("given, rows", [(1, [(14, 0)]), (2, [(0, 0), (14, 0)]),
                                         (3, [(0, 0), (14, 0), (0, 14)])])  # fmt: skip
def test_the_quadrants_given_are_the_tutorials(given, rows):
    mask = quadrant_mask(given)
    assert int(mask.sum()) == 196 * given
    for top, left in rows:
        assert bool(mask[top : top + 14, left : left + 14].all())
    assert not bool(mask[14:, 14:].any())  # bottom-right is always to predict

"""The validation split: held-out rows, the data set's own split, and refusals."""

import pytest
import torch

import pyro_vae as pv
from pyro_vae.data import load_dataset
from pyro_vae.data.validation import AUTO_FRACTION, check_validation, hold_out, with_validation
from tests.helpers import SHARED_DATA, needs_binarized_mnist


def test_held_out_rows_leave_train_and_come_back_the_same_for_the_same_seed():
    digits = load_dataset("digits", labelled=100, seed=0)
    held = hold_out(digits, 200, seed=3)
    assert len(held.valid) == 200 and len(held.train) == len(digits.train) - 200
    # Every train row is in exactly one of the two splits, with its own label.
    together = torch.cat([held.train, held.valid])
    labels = torch.cat([held.train_labels, held.valid_labels])

    def rows(x, y):
        return {(tuple(r.tolist()), int(label)) for r, label in zip(x, y, strict=True)}

    assert rows(together, labels) == rows(digits.train, digits.train_labels)
    assert torch.equal(hold_out(digits, 200, seed=3).valid, held.valid)
    assert not torch.equal(hold_out(digits, 200, seed=4).valid, held.valid)
    assert torch.equal(held.test, digits.test)  # the test set is untouched
    assert torch.equal(held.array("labels", "valid"), held.valid_labels)


def test_columns_and_dynamic_intensities_follow_their_rows():
    rows = load_dataset("lgssm", n_train=40, n_test=5, steps=6, min_steps=2, seed=0)
    held = hold_out(rows, 10, seed=0)
    assert held.array("lengths", "valid").shape == (10,)
    assert len(held.array("lengths", "train")) == 30
    grey = load_dataset("digits", binarization="dynamic", seed=0)
    held = hold_out(grey, 100, seed=0)
    assert len(held.train_intensities) == len(held.train)
    assert held.valid.unique().tolist() == [0.0, 1.0]  # one fixed binary sample


def test_auto_takes_a_tenth_of_a_set_without_its_own_and_records_the_rows():
    digits = load_dataset("digits", seed=0)
    held, settled = with_validation(digits, "auto", seed=0)
    assert settled == round(AUTO_FRACTION * len(digits.train)) == len(held.valid)
    held, settled = with_validation(digits, 0.25, seed=0)
    assert settled == len(held.valid) == round(0.25 * len(digits.train))


@needs_binarized_mnist
def test_binarized_mnist_brings_its_own_ten_thousand(monkeypatch):
    monkeypatch.setenv("PYRO_VAE_DATA", str(SHARED_DATA))
    data = load_dataset("binarized-mnist", seed=0)
    assert data.valid is not None and data.valid.shape == (10_000, 784)
    same, settled = with_validation(data, "auto", seed=0)
    assert settled == "own" and same.valid is data.valid and len(same.train) == 50_000
    merged = load_dataset("binarized-mnist", include_valid=True, seed=0)
    assert merged.valid is None and len(merged.train) == 60_000


@pytest.mark.parametrize("value", [0, -1, 1.0, 1.5, "some", True, None, float("nan")])
def test_bad_settings_are_refused(value):
    with pytest.raises(pv.PyroVaeError, match="validation must be"):
        check_validation(value)


def test_a_set_without_its_own_split_and_too_many_rows_are_refused():
    digits = load_dataset("digits", seed=0)
    with pytest.raises(pv.DataError, match="no validation split of its own"):
        with_validation(digits, "own", seed=0)
    with pytest.raises(pv.DataError, match="hold out from 1 to"):
        with_validation(digits, len(digits.train), seed=0)
    with pytest.raises(pv.DataError, match="no validation split"):
        digits.array("x", "valid")

"""The validation split: datapoints kept out of training, to choose the checkpoint by and to stop
early on, so that the test set is scored once, by a model it did not help choose.

A run asks for one with ``validation`` (``--validation``):

- ``"own"``: the data set's own split (``binarized-mnist``'s 10,000 validation images);
- a whole number ``N``: ``N`` train rows held out, chosen at random with the run's seed;
- a fraction in (0, 1): that share of the train rows, held out in the same way;
- ``"auto"``: the set's own split where it has one, else a tenth of its train rows.

What was settled is recorded with the run (``"own"`` or the number of rows), so a resumed or
evaluated run holds out exactly the same rows: the choice is a function of the seed and the
number alone (:func:`hold_out`).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..errors import DataError, shown
from .dataset import Dataset

#: The share of the train rows ``"auto"`` holds out from a set without a split of its own.
AUTO_FRACTION = 0.1


def hold_out(dataset: Dataset, rows: int, seed: int) -> Dataset:
    """``dataset`` with ``rows`` of its train rows moved to a validation split: a uniform random
    choice made with ``seed`` (each split keeps its rows' order), with their labels, columns
    and, under dynamic binarization, their one fixed binary sample (the validation rows are
    never drawn afresh)."""
    n = len(dataset.train)
    if not 1 <= rows < n:
        raise DataError(
            f"--validation {rows}: data set {dataset.name!r} has {n} train rows; hold out "
            f"from 1 to {n - 1} of them"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held, kept = order[:rows].sort().values, order[rows:].sort().values

    def part(array, index):
        return None if array is None else array[index]

    return dataclasses.replace(
        dataset,
        train=dataset.train[kept],
        valid=dataset.train[held],
        train_intensities=part(dataset.train_intensities, kept),
        train_labels=part(dataset.train_labels, kept),
        valid_labels=part(dataset.train_labels, held),
        columns={name: (train[kept], test) for name, (train, test) in dataset.columns.items()},
        valid_columns={name: train[held] for name, (train, _) in dataset.columns.items()},
    )


def with_validation(dataset: Dataset, validation, seed: int) -> tuple[Dataset, int | str]:
    """``dataset`` with the validation split ``validation`` asks for (see the module
    docstring), and what was settled: ``"own"`` or the number of held-out rows."""
    if validation == "auto":
        validation = "own" if dataset.valid is not None else AUTO_FRACTION
    if validation == "own":
        if dataset.valid is None:
            raise DataError(
                f"--validation own: data set {dataset.name!r} has no validation split of its "
                f"own; give a number of train rows (or a fraction) to hold out instead"
            )
        return dataset, "own"
    rows = validation
    if isinstance(validation, float):
        rows = max(1, math.floor(validation * len(dataset.train) + 0.5))
    return hold_out(dataset, rows, seed), rows


def check_validation(value) -> None:
    """Refuse a ``validation`` setting that is none of the forms the module docstring lists."""
    if value in ("own", "auto"):
        return
    if not isinstance(value, bool) and isinstance(value, int) and value >= 1:
        return
    if isinstance(value, float) and 0 < value < 1:
        return
    raise DataError(
        f"validation must be 'own', 'auto', a number of train rows (>= 1) or a fraction in "
        f"(0, 1), got {shown(value)}"
    )

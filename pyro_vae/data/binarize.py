"""Turning grayscale intensities into the binary data a Bernoulli likelihood needs."""

from __future__ import annotations

import dataclasses

import torch

from ..errors import DataError, did_you_mean
from .dataset import BINARIZATIONS, Dataset


def check_binarization(binarization: str) -> None:
    """Raise :class:`DataError` with a suggestion if ``binarization`` is not a known mode."""
    if binarization not in BINARIZATIONS:
        raise DataError(
            f"unknown binarization {binarization!r}"
            + did_you_mean(str(binarization), BINARIZATIONS)
        )


def binarize(natural: Dataset, binarization: str, seed: int) -> Dataset:
    """Return ``natural`` (as its loader produced it) in the requested binarization.

    ``"static"`` replaces train and test by one Bernoulli(intensity) sample each; ``"dynamic"``
    does the same but keeps the train intensities so each batch can be drawn afresh. The sample
    comes from a :class:`torch.Generator` seeded with ``seed``; the test set is drawn first, so a
    seed gives the same test set under static and dynamic binarization and scores stay
    comparable.

    :raises DataError: the set is already binary and has no intensities to resample, or its
        values are not probabilities.
    """
    check_binarization(binarization)
    if binarization == natural.binarization:
        return natural
    if natural.binarization != "none":
        raise DataError(
            f"data set {natural.name!r} is stored already binarized ({natural.binarization}) "
            f"and has no grayscale intensities, so binarization {binarization!r} is not "
            f"possible; use binarization='{natural.binarization}'"
        )
    low = min(float(natural.train.min()), float(natural.test.min()))
    high = max(float(natural.train.max()), float(natural.test.max()))
    if low < 0 or high > 1:
        raise DataError(
            f"data set {natural.name!r} has values in [{low:g}, {high:g}], but binarization "
            f"{binarization!r} needs intensities in [0, 1]; use binarization='none'"
        )
    generator = torch.Generator().manual_seed(seed)
    test = torch.bernoulli(natural.test, generator=generator)
    train = torch.bernoulli(natural.train, generator=generator)
    valid = None if natural.valid is None else torch.bernoulli(natural.valid, generator=generator)
    return dataclasses.replace(
        natural,
        train=train,
        test=test,
        valid=valid,
        binarization=binarization,
        train_intensities=natural.train if binarization == "dynamic" else None,
    )

"""Image sets read as sequences: ``mnist-rows``, each binarized-MNIST digit as 28 steps of one
28-pixel row, top to bottom — the standard test of sequence models on images (a row-by-row
RNN, a state-space VAE).

It is built from ``binarized-mnist`` (same files, same fixed binarization, same split and
``include_valid``), so its log-likelihoods compare with that set's: a sequence's density is
the density of its image.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .binarized_mnist import load_binarized_mnist
from .dataset import LENGTHS, Dataset
from .files import DataLocation
from .registry import DATASETS


def image_rows(images: Dataset, name: str) -> Dataset:
    """``images`` (a set of one-channel images, flat) as a sequence set named ``name``: each
    image a sequence of its rows, ``(N, H, W)``, every length ``H``. Labels are kept."""
    channels, height, width = images.image_shape
    if channels != 1:  # a step of a colour image would mix channels; no set needs it yet
        raise ValueError(f"data set {images.name!r}: rows of {channels}-channel images")

    def rows(flat: torch.Tensor | None) -> torch.Tensor | None:
        return None if flat is None else flat.reshape(len(flat), height, width)

    def full(count: int) -> torch.Tensor:
        return torch.full((count,), height, dtype=torch.int64)

    return replace(
        images,
        name=name,
        train=rows(images.train),
        test=rows(images.test),
        train_intensities=rows(images.train_intensities),
        image_shape=None,
        columns={**images.columns, LENGTHS: (full(len(images.train)), full(len(images.test)))},
    )


@DATASETS.register("mnist-rows")
def load_mnist_rows(location: DataLocation, *, seed: int, include_valid: bool = False) -> Dataset:
    """Binarized MNIST as sequences ``(N, 28, 28)``: 28 rows of 28 pixels, all of length 28.

    :param include_valid: append the 10,000 validation images to the train ones, as for
        ``binarized-mnist``.
    :param seed: unused; the binarization is fixed.
    """
    return image_rows(
        load_binarized_mnist(location, seed=seed, include_valid=include_valid), "mnist-rows"
    )

"""``digits``: scikit-learn's 1,797 8x8 handwritten digits, a small MNIST for quick runs."""

from __future__ import annotations

import torch

from .dataset import Dataset
from .files import DataLocation, check_finite
from .registry import DATASETS

#: Held-out images; the rest (1,500) are for training.
DIGITS_N_TEST = 297


@DATASETS.register("digits")
def load_digits_set(location: DataLocation, *, seed: int) -> Dataset:
    """Grayscale digits scaled from 0..16 to [0, 1], 64 dims.

    The data ships inside scikit-learn, so ``location`` is not used. The split comes from a
    generator seeded 0, not ``seed``, so that runs with different seeds are scored on the same
    test images.
    """
    from sklearn.datasets import load_digits  # sklearn is slow to import; only this set needs it

    digits = load_digits()
    images = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    check_finite(images, "sklearn.datasets.load_digits()")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    n_train = len(images) - DIGITS_N_TEST
    return Dataset(
        name="digits",
        train=images[order[:n_train]],
        test=images[order[n_train:]],
        image_shape=(1, 8, 8),
        binarization="none",
        source="sklearn",
        train_labels=labels[order[:n_train]],
        test_labels=labels[order[n_train:]],
    )

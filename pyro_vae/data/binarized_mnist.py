"""``binarized-mnist``: the fixed binarization of Larochelle & Murray (2011).

It is the standard density-estimation benchmark (NADE, IWAE and most VAE papers): 50,000 train,
10,000 valid and 10,000 test images that were binarized once, so the log-likelihoods reported on
it are comparable across papers. It has no grayscale intensities, so it can only be used as is.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .arrays import read_arrays, read_member
from .dataset import Dataset
from .files import (
    DataLocation,
    check_finite,
    check_sha256,
    download_checked,
    part_path,
    sha256_of_array,
)
from .registry import DATASETS

BINARIZED_MNIST_FILE = "binarized_mnist.npz"

#: Base URLs of the original ``binarized_mnist_{train,valid,test}.amat`` text files.
BINARIZED_MNIST_MIRRORS = [
    "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
]

#: SHA-256 of each split's uint8 array (raw bytes, C order). Hashing arrays rather than the file
#: accepts any re-compressed ``.npz`` and lets the ``.amat`` download be checked after parsing.
BINARIZED_MNIST_SHA256 = {
    "train": "43490d4d6ac9002727af4426d8748609fdb7e4094fa65ad8d681ea60082a7a5a",
    "valid": "069b4f0beb389b776478c3e872b4df71c95ac4be64d7cbe6d32e24ebac8e6d5e",
    "test": "ca0294c3b8d984c7a1dc891015a8eea6f37bae59a34e35ea0fc8c47110a8dd86",
}

MNIST_PIXELS = 28 * 28


def check_split(array: np.ndarray, path: Path, split: str, *, downloaded: bool = False) -> None:
    """Raise :class:`DataError` unless ``array`` is the expected split: hash, shape, values.

    Only the hash matters for the real data; the other checks name the problem precisely when
    the expected hashes are replaced (tests, or a user's own variant of the file).
    """
    what = f"array {split!r}"
    check_sha256(
        path,
        sha256_of_array(array),
        BINARIZED_MNIST_SHA256[split],
        what=what,
        downloaded=downloaded,
    )
    if array.ndim != 2 or array.shape[1] != MNIST_PIXELS:
        raise DataError(f"{path} ({what}): shape {array.shape}, expected (N, {MNIST_PIXELS})")
    check_finite(array, f"{path} ({what})")
    if not ((array == 0) | (array == 1)).all():
        raise DataError(f"{path} ({what}): has values other than 0 and 1")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The checked train, valid and test arrays of ``path``.

    :raises DataError: the file is unreadable, lacks a split, or a split fails :func:`check_split`.
    """
    with read_arrays(path, ".npz") as archive:
        missing = [split for split in BINARIZED_MNIST_SHA256 if split not in archive.files]
        if missing:
            raise DataError(f"{path}: has no array(s) {missing}; found {archive.files}")
        arrays = {split: read_member(archive, path, split) for split in BINARIZED_MNIST_SHA256}
    for split, array in arrays.items():
        check_split(array, path, split)
    return arrays


def read_amat(path: Path) -> np.ndarray:
    """Parse a Larochelle ``.amat`` file (one image per line, 784 space-separated 0/1) as uint8."""
    try:
        values = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as error:
        raise DataError(f"{path}: not a whitespace-separated table of numbers ({error})") from None
    if not ((values == 0) | (values == 1)).all():
        raise DataError(f"{path}: has values other than 0 and 1")
    return values.astype(np.uint8)


def fetch_binarized_mnist(path: Path) -> None:
    """Download the three ``.amat`` files, check them, and write them as one ``.npz`` at ``path``.

    No checksum of the text files is published, so each is parsed and its array checked against
    :data:`BINARIZED_MNIST_SHA256`. The ``.npz`` is written under a ``.part`` name and moved into
    place only when complete.
    """
    arrays = {}
    for split in BINARIZED_MNIST_SHA256:
        file_name = f"binarized_mnist_{split}.amat"
        part = part_path(path.parent / file_name)

        def read_and_check(downloaded: Path, split: str = split) -> np.ndarray:
            array = read_amat(downloaded)
            check_split(array, downloaded, split, downloaded=True)
            return array

        arrays[split] = download_checked(BINARIZED_MNIST_MIRRORS, file_name, part, read_and_check)
        part.unlink()
    npz_part = part_path(path)
    try:
        # A file object, because given a name np.savez_compressed appends ".npz" to it.
        with open(npz_part, "wb") as file:
            np.savez_compressed(file, **arrays)
        os.replace(npz_part, path)
    finally:
        npz_part.unlink(missing_ok=True)


@DATASETS.register("binarized-mnist")
def load_binarized_mnist(
    location: DataLocation, *, seed: int, include_valid: bool = False
) -> Dataset:
    """Binarized MNIST from ``<root>/binarized-mnist/binarized_mnist.npz``, 784 dims.

    :param include_valid: append the 10,000 validation images to the 50,000 train images, as
        papers that report test log-likelihood after training on 60,000 images do; otherwise
        they are the set's own validation split (``--validation own``).
    :param seed: unused; the binarization is fixed.
    """
    if not isinstance(include_valid, bool):
        raise DataError(
            f"data set 'binarized-mnist': option 'include_valid' must be true or false, "
            f"got {include_valid!r}"
        )
    path = location.require(
        location.root / "binarized-mnist" / BINARIZED_MNIST_FILE, fetch_binarized_mnist
    )
    arrays = read_npz(path)
    train, valid = arrays["train"], arrays["valid"]
    if include_valid:
        train, valid = np.concatenate([train, valid]), None
    return Dataset(
        name="binarized-mnist",
        train=torch.from_numpy(train.astype(np.float32)),
        test=torch.from_numpy(arrays["test"].astype(np.float32)),
        valid=None if valid is None else torch.from_numpy(valid.astype(np.float32)),
        image_shape=(1, 28, 28),
        binarization="static",
        source=str(path),
    )

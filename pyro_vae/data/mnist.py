"""``mnist``: the original MNIST IDX files, grayscale, 60,000 train and 10,000 test images."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset
from .files import DataLocation, check_finite, check_sha256, fetch_verified, sha256_hex
from .registry import DATASETS

#: Base URLs tried in order for missing files; the S3 copy is the one torchvision relies on.
MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

# Copied verbatim from the reference copy's SHA256SUMS (``sha256sum -c`` format).
_MNIST_SHA256SUMS = """
440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  train-images-idx3-ubyte.gz
3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  train-labels-idx1-ubyte.gz
8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte.gz
f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte.gz
"""

#: SHA-256 of each original gzip file, by file name.
MNIST_SHA256 = {
    name: digest for digest, name in map(str.split, _MNIST_SHA256SUMS.strip().splitlines())
}

#: IDX magic numbers: unsigned bytes with 3 dimensions (images) or 1 (labels).
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

MNIST_IMAGE_SHAPE = (1, 28, 28)


def parse_idx(data: bytes, path: Path, magic: int) -> np.ndarray:
    """Decode an uncompressed IDX file of unsigned bytes into an array of its dimensions.

    The magic number's low byte is the number of dimensions, each a big-endian int32 after it.

    :param path: the file the bytes came from, for error messages.
    :raises DataError: wrong magic number, truncated header, or a size that disagrees with the
        dimensions.
    """
    if len(data) < 4:
        raise DataError(f"{path}: too short ({len(data)} bytes) to be an IDX file")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: IDX magic number is {found}, expected {magic}")
    n_dims = magic & 0xFF
    header_size = 4 + 4 * n_dims
    if len(data) < header_size:
        raise DataError(f"{path}: IDX header is truncated ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=n_dims, offset=4))
    expected_size = header_size + int(np.prod(dims))
    if len(data) != expected_size:
        raise DataError(
            f"{path}: IDX file is {len(data)} bytes, but dimensions {dims} need {expected_size}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _read_checked(location: DataLocation, file_name: str) -> tuple[Path, bytes]:
    """The decompressed bytes of one MNIST file, downloading it first if allowed and missing."""
    expected = MNIST_SHA256[file_name]
    path = location.require(
        location.root / "mnist" / file_name,
        lambda missing: fetch_verified(MNIST_MIRRORS, missing, expected),
    )
    compressed = path.read_bytes()
    check_sha256(path, sha256_hex(compressed), expected)
    try:
        return path, gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: not a valid gzip file ({error})") from None


def _load_images(
    location: DataLocation, images_file: str, labels_file: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 784)`` float32 intensities in [0, 1] and the ``(N,)`` labels from one pair of files."""
    images_path, images_data = _read_checked(location, images_file)
    images = parse_idx(images_data, images_path, IDX_IMAGES_MAGIC)
    if images.shape[1:] != MNIST_IMAGE_SHAPE[1:]:
        raise DataError(f"{images_path}: images are {images.shape[1:]}, expected 28x28")
    # A labels file whose count disagrees means the pair was mixed up (e.g. train images next
    # to test labels).
    labels_path, labels_data = _read_checked(location, labels_file)
    labels = parse_idx(labels_data, labels_path, IDX_LABELS_MAGIC)
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
    # astype copies into a writable array, which torch.from_numpy needs.
    pixels = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32)).div_(255.0)
    check_finite(pixels, images_path)
    return pixels, torch.from_numpy(labels.astype(np.int64))


@DATASETS.register("mnist")
def load_mnist(location: DataLocation, *, seed: int) -> Dataset:
    """MNIST as grayscale intensities in [0, 1], 784 dims, in the files' original order.

    The files live in ``<root>/mnist/`` under their original names; each is checked against
    :data:`MNIST_SHA256` before use. ``seed`` is unused: the split is MNIST's own.
    """
    directory = location.root / "mnist"
    train, train_labels = _load_images(
        location, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
    )
    test, test_labels = _load_images(
        location, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
    )
    return Dataset(
        name="mnist",
        train=train,
        test=test,
        image_shape=MNIST_IMAGE_SHAPE,
        binarization="none",
        source=str(directory),
        train_labels=train_labels,
        test_labels=test_labels,
    )

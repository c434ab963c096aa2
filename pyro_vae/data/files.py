"""Local data files: where they live, checking them, and fetching missing ones.

Every real data set is a few files under ``<root>/<set name>/``. A file that is present but does
not match its recorded SHA-256 is reported and left alone — it may be the user's only copy.
Downloads are written under a ``.part`` name and moved into place with :func:`os.replace` only
after they have been checked, so an interrupted or corrupted download never leaves a file that a
later run would trust.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from ..errors import DataError

T = TypeVar("T")

#: The largest seed a loader takes (binarization, synthetic sets, the split of an ``.npy``):
#: 32 bits, as for training runs, whose seed NumPy's generators also take.
MAX_SEED = 2**32 - 1

#: Seconds to wait on a silent mirror before trying the next one.
DOWNLOAD_TIMEOUT_S = 60.0

# Some mirrors refuse urllib's default agent string.
_HTTP_HEADERS = {"User-Agent": "pyro_vae data downloader"}


@dataclass(frozen=True)
class DataLocation:
    """Where a loader finds its files and whether it may download missing ones.

    :param root: the data root; each set keeps its files in ``root / <set name>``.
    :param download: fetch missing files from the set's mirrors instead of failing.
    """

    root: Path
    download: bool

    def require(self, path: Path, fetch: Callable[[Path], None]) -> Path:
        """Return ``path``, calling ``fetch(path)`` first if it is missing and downloads are on.

        :raises DataError: the file is missing and downloads are off; the message says how to
            fix it.
        """
        if path.exists():
            return path
        if not self.download:
            raise DataError(
                f"{path} is missing; pass download=True (--download on the command line) to fetch "
                f"it, or point root= / the PYRO_VAE_DATA environment variable at a directory that "
                f"holds {path.parent.name}/"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fetch(path)
        return path


def sha256_hex(data: bytes | memoryview) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_of_file(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks so large files need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_array(array: np.ndarray) -> str:
    """Hex SHA-256 of an array's raw bytes in C order.

    Hashing the arrays rather than an ``.npz`` file makes the check independent of how the file
    was compressed or which numpy wrote it.
    """
    return sha256_hex(np.ascontiguousarray(array).tobytes())


def check_sha256(
    path: Path, actual: str, expected: str, *, what: str = "", downloaded: bool = False
) -> None:
    """Raise :class:`DataError` if ``actual != expected``; the file itself is never touched.

    :param what: optional part of the file the hash covers, e.g. ``"array 'train'"``.
    :param downloaded: the file is a fresh download, so "delete it" would be no advice.
    """
    if actual != expected:
        subject = f"{path} ({what})" if what else str(path)
        advice = "" if downloaded else "; delete it to download again"
        raise DataError(f"{subject} has sha256 {actual}, expected {expected}{advice}")


def check_finite(values: torch.Tensor | np.ndarray, source: str | Path) -> None:
    """Raise :class:`DataError` naming ``source`` if ``values`` holds a NaN or an infinity, with
    how many and the first row (datapoint) that has one: ``mine.npz: train: 1 NaN value at row 3``.

    A single NaN pixel silently turns every ELBO into NaN many steps later, so it is caught here.
    Arrays are checked with NumPy, which (unlike torch) takes any byte order: a big-endian file
    is as valid as a native one.
    """
    array = values.numpy(force=True) if torch.is_tensor(values) else np.asarray(values)
    if array.dtype.kind not in "fc" or bool(np.isfinite(array).all()):
        return
    rows = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(-1, 1)
    parts = []
    for what, bad in (("NaN", np.isnan(rows)), ("infinite", np.isinf(rows))):
        count = int(bad.sum())
        if count:
            first = int(np.flatnonzero(bad.any(1))[0])
            where = f"at row {first}" if count == 1 else f"values, the first at row {first}"
            parts.append(
                f"{count} {what} value {where}" if count == 1 else f"{count} {what} {where}"
            )
    raise DataError(f"{source}: " + ", ".join(parts))


def download_to(url: str, destination: Path) -> None:
    """Stream ``url`` into ``destination`` (overwritten).

    :raises OSError: (including :class:`urllib.error.URLError`) or
        :class:`http.client.HTTPException` when the transfer fails.
    """
    request = urllib.request.Request(url, headers=_HTTP_HEADERS)
    with (
        urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response,
        open(destination, "wb") as file,
    ):
        shutil.copyfileobj(response, file, length=1 << 20)


def part_path(path: Path) -> Path:
    """The temporary name a file is written under until it has been checked."""
    return path.with_name(path.name + ".part")


def download_checked(
    mirrors: Sequence[str], file_name: str, part: Path, check: Callable[[Path], T]
) -> T:
    """Download ``file_name`` from the first mirror whose copy passes ``check``; return its result.

    Each mirror is a base URL ending in ``/``. The bytes land in ``part`` (a ``.part`` name next
    to the final file) and stay there for the caller to move into place; a mirror that fails or
    serves bytes that ``check`` rejects (by raising :class:`DataError`) is skipped. Nothing is
    left at ``part`` when every mirror fails.

    :raises DataError: no mirror served an acceptable file; the message lists each failure.
    """
    failures = []
    for mirror in mirrors:
        url = mirror + file_name
        try:
            download_to(url, part)
            return check(part)
        except (OSError, http.client.HTTPException, DataError) as error:
            failures.append(f"{url}: {error}")
    part.unlink(missing_ok=True)
    raise DataError(f"could not download {part.parent / file_name}: " + "; ".join(failures))


def fetch_verified(mirrors: Sequence[str], destination: Path, sha256: str) -> None:
    """Download ``destination`` from ``mirrors`` and move it into place once its SHA-256 matches.

    The bytes are checked while still under the ``.part`` name and only then moved into place.

    :raises DataError: no mirror served a file with the expected checksum.
    """
    part = part_path(destination)

    def check(downloaded: Path) -> None:
        check_sha256(downloaded, sha256_of_file(downloaded), sha256, downloaded=True)

    download_checked(mirrors, destination.name, part, check)
    os.replace(part, destination)

"""Your own data as NumPy files: ``--data mine.npz`` or ``--data mine.npy``.

``.npz``
    arrays ``train`` and ``test`` (and optionally ``valid``, ``train_labels``, ``test_labels``,
    ``valid_labels``), each of shape ``(N, D)``, ``(N, H, W)`` or ``(N, C, H, W)``; and any other
    named arrays as ``train_NAME`` and ``test_NAME`` (and ``valid_NAME``), one row per datapoint
    of the split, kept with their shape and type (``pv.train(pair, "mine.npz", args=("x",
    "NAME"))`` passes them to a pair).
``.npy``
    one array of datapoints, split into train and test rows with a fixed seed (``split_seed``,
    default 0, not the training seed) and ``test_fraction`` (default 0.1).

Images are flattened to rows and keep their shape as ``image_shape`` (``(1, H, W)`` for
``(N, H, W)`` arrays). An ``.npz`` with arrays ``train_lengths`` and ``test_lengths`` (and
``valid_lengths`` with ``include_valid``) holds sequences instead: its splits are ``(N, T, D)``
arrays (``T`` steps of ``D`` values), kept 3-D, and the lengths, one integer in ``[1, T]`` per
sequence, become the ``lengths`` column of a sequence set (:class:`~.dataset.Dataset`); the
steps past a sequence's length are set to 0.

Every array is checked on load: numeric, finite, the same shape of datapoint in every split,
one label per row; whether the values suit the likelihood (binary, in [0, 1], or any real) is
checked when a model meets the data. The file's SHA-256 is recorded with a run, as is the
split, so evaluating or resuming it later on a changed file is refused. Pickled object arrays
are never loaded.
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, shown
from ..registry import Registry
from .dataset import LENGTHS, Dataset, step_mask
from .files import MAX_SEED, check_finite, sha256_of_file

_SHA256 = re.compile(r"[0-9a-f]{64}")

#: File suffix → loader ``loader(path, *, seed, **options)``; options are keyword-only.
FILE_FORMATS: Registry = Registry("data file format")

SHAPES = "(N, D), (N, H, W) or (N, C, H, W)"


def _values(array: np.ndarray, source: str, ndims: tuple[int, ...], shapes: str) -> np.ndarray:
    """``array`` as float32, checked: numbers, ``ndims`` dimensions, datapoints, finite."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{source}: values of type {array.dtype} are not numbers")
    if array.ndim not in ndims:
        raise DataError(f"{source}: shape {array.shape}; expected {shapes}")
    if len(array) == 0 or array[0].size == 0:
        raise DataError(f"{source}: shape {array.shape} holds no datapoints")
    check_finite(array, source)
    with np.errstate(over="ignore"):  # reported just below, by row
        values = np.asarray(array, dtype=np.float32).copy()
    check_finite(values, f"{source} (as 32-bit floats)")  # 1e300 in a float64 file overflows
    return values


def _rows(array: np.ndarray, source: str) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """Flat float32 rows of ``array`` and its image shape (None for vectors), checked."""
    values = _values(array, source, (2, 3, 4), SHAPES)
    image = (
        None if array.ndim == 2 else (1, *array.shape[1:]) if array.ndim == 3 else array.shape[1:]
    )
    rows = torch.from_numpy(values.reshape(len(values), -1))
    return rows, tuple(int(n) for n in image) if image else None


def _sequences(array: np.ndarray, lengths: np.ndarray | None, source: str) -> torch.Tensor:
    """The float32 sequences ``(N, T, D)`` of ``array``, zero past each of ``lengths`` (checked:
    one integer in ``[1, T]`` per sequence)."""
    values = torch.from_numpy(_values(array, source, (3,), "(N, T, D) sequences"))
    if lengths is None:
        return values
    count, steps = values.shape[:2]
    where = f"{source}_{LENGTHS}"
    _one_integer_per_row(lengths, count, where, "iu", ("length", "sequence"))
    bad = np.flatnonzero((lengths < 1) | (lengths > steps))
    if len(bad):
        raise DataError(
            f"{where}: length {lengths[bad[0]]} at row {bad[0]}; each must be from 1 to "
            f"{steps}, the steps of a sequence"
        )
    lengths = torch.from_numpy(lengths.astype(np.int64))
    values[~step_mask(lengths, steps)] = 0.0  # the contract of sequence sets: padding is 0
    return values


def _labels(array: np.ndarray | None, rows: int, source: str) -> torch.Tensor | None:
    if array is None:
        return None
    _one_integer_per_row(array, rows, source, "biu", ("label", "datapoint"))
    return torch.from_numpy(array.astype(np.int64))


def _one_integer_per_row(array: np.ndarray, rows: int, where: str, kinds: str, nouns) -> None:
    """``array`` is one integer (of the dtype ``kinds``) per row, ``rows`` of them; ``nouns``:
    what each value and each row is, for the message."""
    value, row = nouns
    if array.dtype.kind not in kinds or array.ndim != 1:
        raise DataError(
            f"{where}: expected one integer {value} per {row}, got {array.dtype} of shape "
            f"{array.shape}"
        )
    if len(array) != rows:
        raise DataError(f"{where}: {len(array)} {value}s for {rows} {row}s")


def _checksum(path: Path, sha256: str | None) -> str:
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise DataError(
            f"{path}: option 'sha256' must be 64 hexadecimal digits, got {shown(sha256)}"
        )
    digest = sha256_of_file(path)
    if sha256 is not None and digest != sha256:
        raise DataError(
            f"{path}: has sha256 {digest}, but the run was trained on a file with sha256 "
            f"{sha256}; the data changed since"
        )
    return digest


#: How many times larger than its compressed bytes a member of an ``.npz`` may claim to be.
#: DEFLATE cannot compress more than about 1032:1, so an array header that claims more data
#: than that describes a damaged (or hostile) file, which NumPy would first allocate in full.
MAX_DEFLATE_RATIO = 1032


def _array_header(stream, size: int, source: str) -> None:
    """Check the header of one ``.npy`` array in ``stream`` (``size`` bytes long) before NumPy
    reads it: a known format, no pickled objects, and no more data declared than there is.

    NumPy allocates the whole array its header declares before it reads a byte of data, so a
    200-byte file claiming shape (10¹², 4) would fail in the allocator (or be granted memory it
    never fills), and its header parser raises a different exception for each kind of damage.
    """
    try:
        version = np.lib.format.read_magic(stream)
        # Version 3.0 differs from 2.0 only in encoding field names as UTF-8.
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else None
        read = read or np.lib.format.read_array_header_2_0
        shape, _, dtype = read(stream)
    except Exception as e:  # noqa: BLE001  (any failure to parse the header is a damaged file)
        raise DataError(f"{source}: is damaged or not a NumPy array file ({_reason(e)})") from None
    if dtype.hasobject:
        raise DataError(
            f"{source}: holds pickled Python objects (dtype {dtype}), which are never loaded: "
            f"it cannot be read without pickle"
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared > size - stream.tell():
        raise DataError(
            f"{source}: is truncated or damaged: its header declares {declared:,} bytes of "
            f"{dtype} values {tuple(shape)}, but only {max(size - stream.tell(), 0):,} follow"
        )


def _reason(error: Exception) -> str:
    """An exception from NumPy or zipfile, shortened to one line for a message."""
    text = " ".join(str(error).split())
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check_headers(path: Path, kind: str) -> None:
    """Check every array header of the ``.npy`` or ``.npz`` at ``path`` (see
    :func:`_array_header`) before NumPy is given the file."""
    if kind == ".npy":
        with open(path, "rb") as stream:
            _array_header(stream, path.stat().st_size, str(path))
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                limit = member.file_size
                if member.compress_type != zipfile.ZIP_STORED:
                    limit = min(limit, MAX_DEFLATE_RATIO * member.compress_size + 1024)
                with archive.open(member) as stream:
                    _array_header(stream, limit, f"{path}: {member.filename}")
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001  (a damaged archive fails in many different ways)
        raise DataError(f"{path}: cannot be read as an {kind} file ({_reason(e)})") from None


def read_arrays(path: Path, kind: str):
    """``np.load`` of ``path`` once its headers are checked; pickle is never allowed.

    :raises DataError: the file is damaged, truncated, not of its kind, or holds objects.
    """
    _check_headers(path, kind)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001  (what damage NumPy meets past the headers)
        raise DataError(f"{path}: cannot be read as an {kind} file ({_reason(e)})") from None


def read_member(archive, path: Path, key: str) -> np.ndarray:
    """Array ``key`` of an open ``.npz`` ``archive`` read from ``path``.

    :raises DataError: the member is damaged (a bad CRC, a broken deflate stream, truncated).
    """
    try:
        return archive[key]
    except Exception as e:  # noqa: BLE001  (zipfile and zlib each raise their own)
        raise DataError(f"{path}: {key}: cannot be read ({_reason(e)})") from None


@FILE_FORMATS.register(".npz")
def load_npz(path: Path, *, seed: int, include_valid: bool = False, sha256: str | None = None):
    """Train and test from an ``.npz``; ``include_valid`` appends ``valid`` to ``train``."""
    digest = _checksum(path, sha256)
    with read_arrays(path, ".npz") as archive:
        arrays = {key: read_member(archive, path, key) for key in archive.files}
    missing = [k for k in ("train", "test") if k not in arrays]
    if missing:
        raise DataError(f"{path}: has no array {missing[0]!r}; found {sorted(arrays)}")
    unknown = sorted(k for k in arrays if _SPLIT_KEY.fullmatch(k) is None)
    if unknown:
        raise DataError(
            f"{path}: unknown array {unknown[0]!r}; expected train, test, valid, and "
            f"train_NAME / test_NAME / valid_NAME for other arrays (NAME: labels, say)"
        )
    if not isinstance(include_valid, bool):
        raise DataError(f"{path}: option 'include_valid' must be true or false")
    if include_valid and "valid" not in arrays:
        raise DataError(f"{path}: include_valid is set, but there is no array 'valid'")
    splits = _splits(path, arrays, include_valid)
    train, image, train_labels = splits["train"]
    test, _, test_labels = splits["test"]
    if include_valid:
        valid, _, valid_labels = splits["valid"]
        if (train_labels is None) != (valid_labels is None):
            raise DataError(
                f"{path}: include_valid needs labels for both train and valid, or neither"
            )
        train = torch.cat([train, valid])
        if train_labels is not None:
            train_labels = torch.cat([train_labels, valid_labels])
    return Dataset(
        name=str(path),
        train=train,
        test=test,
        image_shape=image,
        binarization="none",
        source=str(path),
        train_labels=train_labels,
        test_labels=test_labels,
        options={"sha256": digest},
        columns=_columns(
            path, arrays, {s: len(r) for s, (r, _, _) in splits.items()}, include_valid
        ),
    )


def _splits(path: Path, arrays: dict, include_valid: bool) -> dict:
    """``split → (values, image shape, labels)`` of each split in the file, checked, with one
    shape of datapoint in all. A file with ``lengths`` arrays holds sequences (N, T, D), which
    stay 3-D, rather than images, which are flattened."""
    sequences = any(f"{split}_{LENGTHS}" in arrays for split in ("train", "test", "valid"))
    splits = {}
    for split in ("train", "test", "valid"):
        if split not in arrays:
            continue
        source, lengths = f"{path.name}: {split}", arrays.get(f"{split}_{LENGTHS}")
        if sequences and lengths is None and (split != "valid" or include_valid):
            raise DataError(f"{path}: has {LENGTHS!r} arrays but no '{split}_{LENGTHS}'")
        if sequences:  # a valid split that is not used may have no lengths to cut it by
            values, image = _sequences(arrays[split], lengths, source), None
        else:
            values, image = _rows(arrays[split], source)
        labels = _labels(arrays.get(f"{split}_labels"), len(values), f"{source}_labels")
        splits[split] = (values, image, labels)
    shapes = {s: (v.shape[1:], image) for s, (v, image, _) in splits.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{s} {tuple(arrays[s].shape[1:])}" for s in shapes)
        raise DataError(f"{path}: the splits hold datapoints of different shapes: {described}")
    return splits


#: The keys of an ``.npz``: the splits, and ``SPLIT_NAME`` for a named array of a split.
_SPLIT_KEY = re.compile(r"(train|test|valid)(_[A-Za-z][A-Za-z0-9_]*)?")


def _columns(path: Path, arrays: dict, rows: dict, include_valid: bool) -> dict:
    """The named arrays other than labels: ``NAME → (train, test)`` tensors, each with one row
    per datapoint of its split (valid's appended to train's under ``include_valid``)."""
    names = sorted({k.split("_", 1)[1] for k in arrays if "_" in k} - {"labels"})
    columns = {}
    for name in names:
        parts = {}
        for split in ("train", "test", "valid"):
            key = f"{split}_{name}"
            if split in rows and key in arrays:
                parts[split] = _column(arrays[key], rows[split], f"{path.name}: {key}")
            elif split in ("train", "test") or (split == "valid" and include_valid):
                raise DataError(f"{path}: has {name!r} arrays but no {key!r}")
        train = torch.cat([parts["train"], parts["valid"]]) if include_valid else parts["train"]
        columns[name] = (train, parts["test"])
    return columns


def _column(array: np.ndarray, rows: int, source: str) -> torch.Tensor:
    """A named array, checked: numbers, finite, one row per datapoint; floats as float32."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{source}: values of type {array.dtype} are not numbers")
    if array.ndim == 0 or len(array) != rows:
        raise DataError(f"{source}: {len(array) if array.ndim else 0} rows for {rows} datapoints")
    check_finite(array, source)
    kind = np.float32 if array.dtype.kind == "f" else np.int64
    return torch.from_numpy(np.asarray(array, dtype=kind).copy())


@FILE_FORMATS.register(".npy")
def load_npy(
    path: Path,
    *,
    seed: int,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    sha256: str | None = None,
):
    """One array, split into train and test rows by a permutation seeded with ``split_seed``."""
    digest = _checksum(path, sha256)
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, int | float)
        or not (0 < test_fraction < 1)
    ):
        raise DataError(
            f"{path}: option 'test_fraction' must be a number in (0, 1), got {shown(test_fraction)}"
        )
    if (
        isinstance(split_seed, bool)
        or not isinstance(split_seed, int)
        or not 0 <= split_seed <= MAX_SEED
    ):
        raise DataError(
            f"{path}: option 'split_seed' must be an integer >= 0 and <= {MAX_SEED:,}, "
            f"got {shown(split_seed)}"
        )
    rows, image = _rows(read_arrays(path, ".npy"), path.name)
    n_test = round(len(rows) * test_fraction)
    if not 0 < n_test < len(rows):
        raise DataError(
            f"{path}: {len(rows)} datapoints cannot be split into train and test with "
            f"test_fraction {test_fraction}"
        )
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(split_seed))
    return Dataset(
        name=str(path),
        train=rows[order[n_test:]],
        test=rows[order[:n_test]],
        image_shape=image,
        binarization="none",
        source=str(path),
        options={"sha256": digest, "test_fraction": test_fraction, "split_seed": split_seed},
    )

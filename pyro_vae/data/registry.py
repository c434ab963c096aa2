"""Finding data sets by name: the registry, the data root and :func:`load_dataset`.

A loader is registered as ``DATASETS.register(name)(loader)`` where ``loader(location, *, seed,
**options)`` returns the set in its natural form (grayscale or already binary); its keyword-only
parameters other than ``seed`` are the options users may pass, so an unknown option is caught
here, by name, before any file is read.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError, did_you_mean, shown
from ..registry import Registry
from .arrays import FILE_FORMATS
from .binarize import binarize, check_binarization
from .dataset import BINARIZATIONS, Dataset
from .files import MAX_SEED, DataLocation
from .labels import keep_labels

#: Environment variable naming the data root, e.g. a shared read-only copy of the data sets.
DATA_ROOT_ENV = "PYRO_VAE_DATA"

Loader = Callable[..., Dataset]

DATASETS: Registry[Loader] = Registry("data set")


def default_data_root() -> Path:
    """Per-user cache that downloads go to when no root is given."""
    return Path.home() / ".cache" / "pyro_vae" / "data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The directory holding one sub-directory per data set.

    ``root`` if given, else the ``PYRO_VAE_DATA`` environment variable if set and non-empty, else
    :func:`default_data_root`.
    """
    if root is not None:
        return Path(root).expanduser()
    from_env = os.environ.get(DATA_ROOT_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return default_data_root()


def _root_is_explicit(root: str | os.PathLike | None) -> bool:
    return root is not None or bool(os.environ.get(DATA_ROOT_ENV))


def option_names(loader: Loader) -> list[str]:
    """The options a loader accepts: its keyword-only parameters except ``seed``."""
    parameters = inspect.signature(loader).parameters.values()
    return [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "seed"]


def _check_options(name: str, loader: Loader, options: dict) -> None:
    valid_options = option_names(loader)
    for option in options:
        if option not in valid_options:
            suggestion = did_you_mean(option, valid_options) or " (it takes none)"
            raise DataError(f"data set {name!r} has no option {option!r}{suggestion}")


def _check_arguments(name, root, binarization, download, seed) -> None:
    """The arguments every set takes, checked by type and range before anything is read (they
    may come from a hand-edited ``config.json``)."""
    if not isinstance(name, str | os.PathLike) or not str(name):
        raise DataError(f"data: expected a data set name or file, got {shown(name)}")
    if not str(name).isprintable():  # a NUL, or a newline that would split the message
        raise DataError(f"data {shown(str(name))}: a name or path must be printable text")
    if root is not None and not isinstance(root, str | os.PathLike):
        raise DataError(f"data root: expected a directory, got {shown(root)}")
    if download is not None and not isinstance(download, bool):
        raise DataError(f"data option 'download' must be true or false, got {shown(download)}")
    if binarization is not None and not isinstance(binarization, str):
        raise DataError(f"binarization: expected one of {', '.join(BINARIZATIONS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise DataError(
            f"data seed must be a whole number from 0 to {MAX_SEED:,}, got {shown(seed)}"
        )


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    binarization: str | None = None,
    download: bool | None = None,
    seed: int = 0,
    **options,
) -> Dataset:
    """Load a registered data set, or your own arrays from a file.

    :param name: a name in :data:`DATASETS`, e.g. ``"mnist"``, or the path of an ``.npz`` or
        ``.npy`` file (see :mod:`pyro_vae.data.arrays`).
    :param root: data root (see :func:`data_root`).
    :param binarization: ``"none"``, ``"static"`` or ``"dynamic"``; ``None`` keeps the set's
        natural form (grayscale, or binary for ``binarized-mnist``).
    :param download: fetch missing files. ``None`` downloads only into the default cache, so
        that a mistyped explicit root fails loudly instead of quietly filling a new directory.
    :param seed: seeds binarization and synthetic generation; never the split of real sets.
    :param options: set-specific options, e.g. ``n_train`` for synthetic sets; for any set
        with labels, ``labelled=N`` keeps the labels of N class-balanced train rows (chosen with
        ``seed``) and hides the others' (:mod:`pyro_vae.data.labels`).
    :raises DataError: unknown name, option or binarization; missing or corrupted files.
    """
    _check_arguments(name, root, binarization, download, seed)
    labelled = options.pop("labelled", None)  # any labelled set: see data/labels.py
    if binarization is not None:
        check_binarization(binarization)
    natural = _load_natural(name, root, download, seed, options)
    if binarization is not None:
        natural = binarize(natural, binarization, seed)
    return natural if labelled is None else keep_labels(natural, labelled, seed)


def _load_natural(name, root, download, seed, options) -> Dataset:
    """The set of ``name`` (a registered set or a file) in its natural form."""
    suffix = Path(name).suffix
    if suffix in FILE_FORMATS:
        try:
            path = Path(name).expanduser().resolve()
            is_file = path.is_file()
        except (OSError, RuntimeError) as e:  # a name too long, a symlink loop
            raise DataError(f"{shown(str(name))}: cannot be opened ({e})") from None
        loader = FILE_FORMATS.get(suffix)
        _check_options(str(path), loader, options)
        if not is_file:
            raise DataError(f"{path}: no such file")
        where = path
    elif name in DATASETS:
        loader = DATASETS.get(name)
        _check_options(name, loader, options)
        if download is None:
            download = not _root_is_explicit(root)
        where = DataLocation(root=data_root(root), download=bool(download))
    else:
        message = DATASETS.unknown_message(shown(str(name))[1:-1])
        if suffix:
            message += f" (files: {', '.join(FILE_FORMATS.names())})"
        raise DataError(message)
    return loader(where, seed=seed, **options)

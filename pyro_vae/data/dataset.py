"""The in-memory data set every model trains on: flat float32 rows (or sequences of them) plus
what is known about them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ..errors import DataError

#: The ways pixel intensities in [0, 1] can be turned into what a model sees.
BINARIZATIONS = ("none", "static", "dynamic")

#: The splits a data set may have; "valid" only where :attr:`Dataset.valid` is set.
SPLITS = ("train", "test", "valid")

#: The column every sequence set has: each sequence's number of steps, int64 in ``[1, T]``.
LENGTHS = "lengths"


@dataclass
class Dataset:
    """A train/test pair of flat float32 matrices, one row per example.

    Images are flattened row-major (channel, row, column), so ``image_shape`` is needed to draw
    them again and for nets that see images (``conv``); every other net sees the flat rows.

    A *sequence set* (:attr:`is_sequence`) holds ``(N, T, D)`` arrays instead: ``T`` steps of
    ``D`` values each. Sequences may be shorter than ``T``: the column ``lengths``
    (:data:`LENGTHS`) gives each one's number of steps, int64 in ``[1, T]``, and the steps past
    it are 0. Every sequence set has that column, even when all lengths are ``T``.

    :param name: the registered name, e.g. ``"mnist"``.
    :param train: ``(N_train, D)`` rows (``(N_train, T, D)`` sequences) the model is fit to.
        Under ``"static"`` binarization they are one fixed Bernoulli sample; under ``"dynamic"``
        they are one such sample too (so shape and binariness checks see what the model sees),
        but :meth:`train_batches` draws fresh ones.
    :param test: ``(N_test, D)`` (or ``(N_test, T, D)``) held-out rows; always fixed so that
        scores are comparable.
    :param image_shape: ``(channels, height, width)`` of image sets, ``None`` for vectors.
    :param binarization: ``"none"``, ``"static"`` or ``"dynamic"``.
    :param truth: the true generating parameters of synthetic sets, keyed by name.
    :param source: where the data came from (file paths, ``"sklearn"``, ``"synthetic"``), for
        messages and reports.
    :param train_intensities: grayscale ``[0, 1]`` train values that dynamic binarization samples
        from; ``None`` unless ``binarization == "dynamic"``.
    :param train_labels: integer class of each train row where the set has labels, else None.
    :param test_labels: the same for the test rows.
    :param options: options the loader settled on that a run must repeat to see the same data
        (a file's checksum, how an unsplit array was split); recorded with the run.
    :param columns: other named arrays, ``NAME → (train, test)``, one row per datapoint.
    :param valid: ``(N_valid, D)`` validation rows, fixed (binarized where the train rows are),
        or None: the set has no validation split. A loader gives the set's own
        (``binarized-mnist``'s 10,000); :func:`~pyro_vae.data.validation.hold_out` carves one
        out of the train rows.
    :param valid_labels: the labels of the validation rows, where the set has labels.
    :param valid_columns: each column's validation rows, ``NAME → rows``.
    :param parts: for sets cut out of images, the flat pixel indices of each array in an image
        of shape ``parts_image``.

    The arrays a pair can be given by name (:meth:`array`, ``pv.train(..., args=...)``): ``x``
    (the rows), ``labels`` and ``labels_onehot`` where the set has labels, and the ``columns``.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    image_shape: tuple[int, int, int] | None
    binarization: str
    truth: dict = field(default_factory=dict)
    source: str = ""
    train_intensities: torch.Tensor | None = None
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    options: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)
    #: Where each array's values sit in one image of shape ``parts_image`` (flat indices), for
    #: sets cut out of images (``mnist-quadrants``): completions are drawn whole again.
    parts: dict = field(default_factory=dict)
    parts_image: tuple[int, int, int] | None = None
    valid: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None
    valid_columns: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The names of the arrays a pair can be given (:meth:`array`)."""
        labelled = list(LABEL_ARRAYS) if self.train_labels is not None else []
        return ["x", *labelled, *self.columns]

    def array(self, name: str, split: str) -> torch.Tensor:
        """The array ``name`` of ``split`` ("train", "test" or "valid"), one row per datapoint."""
        if name not in self.names:
            raise DataError(f"data set {self.name!r} has no array {name!r}; it has {self.names}")
        if split == "valid" and self.valid is None:
            raise DataError(f"data set {self.name!r} has no validation split")
        which = SPLITS.index(split)
        if name == "x":
            return (self.train, self.test, self.valid)[which]
        if name in LABEL_ARRAYS and self.train_labels is not None:
            labels = (self.train_labels, self.test_labels, self.valid_labels)[which]
            return LABEL_ARRAYS[name](self, labels)
        return (*self.columns[name], self.valid_columns.get(name))[which]

    def arrays(self, split: str, names: tuple[str, ...] | None = None):
        """``split`` as a pair is called with it: x's rows (``names`` None), else a tuple of the
        named arrays (:meth:`array`), in order."""
        if names is None:
            return self.array("x", split)
        return tuple(self.array(n, split) for n in names)

    @property
    def event_shape(self) -> torch.Size:
        """Shape of one example: ``(D,)``, or ``(T, D)`` for a sequence set."""
        return self.train.shape[1:]

    @property
    def is_sequence(self) -> bool:
        """Whether the examples are sequences, ``(N, T, D)``, with a ``lengths`` column."""
        return self.train.dim() == 3

    @property
    def step_shape(self) -> torch.Size | None:
        """Shape of one step of a sequence, ``(D,)``; ``None`` for a set of flat rows, which
        has no steps (as :attr:`image_shape` is ``None`` for a set that is not images)."""
        return self.train.shape[2:] if self.is_sequence else None

    @property
    def value_range(self) -> tuple[float, float]:
        """The smallest and largest value in the train and test rows."""
        low = min(float(self.train.min()), float(self.test.min()))
        high = max(float(self.train.max()), float(self.test.max()))
        return low, high

    @property
    def is_binary(self) -> bool:
        """Whether every train and test value is 0 or 1, as a Bernoulli likelihood needs."""
        return all(bool(((rows == 0) | (rows == 1)).all()) for rows in (self.train, self.test))

    def train_batches(
        self,
        batch_size: int,
        generator: torch.Generator,
        names: tuple[str, ...] | None = None,
        apart: tuple[str, ...] = (),
    ) -> Iterator:
        """Yield one epoch of shuffled train batches; the last one may be smaller. With
        ``names``, each batch is a tuple of those arrays' rows (``x`` binarized as the rows are).
        ``apart``: arrays of labels whose rows with a label and rows without one (negative) go
        in separate batches (a partially observed node is observed or sampled in one call),
        the batches of all groups then shuffled together.

        All randomness (the order and, under dynamic binarization, the Bernoulli draws) comes
        from ``generator``, so restoring its state before the epoch repeats it exactly — which is
        what lets a resumed run continue bit-for-bit.
        """
        _check_batch_size(batch_size)
        order = torch.randperm(len(self.train), generator=generator)
        dynamic = self.binarization == "dynamic"
        if dynamic and self.train_intensities is None:
            raise ValueError(f"data set {self.name!r} is dynamic but has no train_intensities")
        arrays = self.arrays("train", names) if names is not None else ()
        for rows in self._batch_rows(order, batch_size, generator, apart):
            if dynamic:
                x = torch.bernoulli(self.train_intensities[rows], generator=generator)
            else:
                x = self.train[rows]
            if names is None:
                yield x
            else:
                yield tuple(x if n == "x" else a[rows] for n, a in zip(names, arrays, strict=True))

    def _batch_rows(self, order, batch_size, generator, apart) -> list[torch.Tensor]:
        """The rows of each batch: ``order`` cut in batches, within each group of ``apart``."""
        groups = [order]
        for name in apart:
            labelled = self.array(name, "train") >= 0
            groups = [g[keep] for g in groups for keep in (labelled[g], ~labelled[g])]
            groups = [g for g in groups if len(g)]
        batches = [g[s : s + batch_size] for g in groups for s in range(0, len(g), batch_size)]
        if len(groups) > 1:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return batches

    def test_indices(self, max_data: int | None = None, seed: int = 0) -> torch.Tensor:
        """Indices of the test rows an evaluation on at most ``max_data`` of them uses.

        All rows when ``max_data`` is ``None`` or not smaller than the test set; otherwise a
        uniform random subset drawn with ``seed``, in increasing order. Not the first rows: test
        splits are often ordered (the binarized-MNIST test split is sorted by digit, its first
        thousand rows nearly all zeros), and a prefix would score one class.
        """
        n = len(self.test)
        if max_data is not None and (not isinstance(max_data, int) or max_data < 1):
            raise ValueError(f"max_data must be a positive integer, got {max_data!r}")
        if max_data is None or max_data >= n:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(seed)
        return torch.randperm(n, generator=generator)[:max_data].sort().values

    def test_batches(self, batch_size: int, names: tuple[str, ...] | None = None) -> Iterator:
        """Yield the test rows in order, ``batch_size`` at a time; the last batch may be smaller.
        With ``names``, each batch is a tuple of those arrays' rows."""
        _check_batch_size(batch_size)
        whole = self.arrays("test", names)
        for start in range(0, len(self.test), batch_size):
            rows = slice(start, start + batch_size)
            yield whole[rows] if names is None else tuple(a[rows] for a in whole)


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(N, steps)`` boolean mask of the steps within each sequence's length: row ``n`` is True
    at steps ``0 .. lengths[n] - 1`` and False on the padding after."""
    return torch.arange(steps, device=lengths.device) < lengths.unsqueeze(-1)


def _onehot(data: Dataset, labels: torch.Tensor) -> torch.Tensor:
    """``labels`` one-hot, with as many classes as the set's train and test labels name; a
    hidden label (negative, :mod:`pyro_vae.data.labels`) is a row of zeros."""
    classes = int(max(data.train_labels.max(), data.test_labels.max())) + 1
    return torch.nn.functional.one_hot(labels.clamp(min=0), classes).float() * (
        labels >= 0
    ).unsqueeze(-1)


#: The arrays a labelled set offers beside its columns, derived from a split's labels:
#: name → ``derive(data set, labels)``. Only these names mean labels; a column may be called
#: ``labels_fine``.
LABEL_ARRAYS = {"labels": lambda data, labels: labels, "labels_onehot": _onehot}


def _check_batch_size(batch_size: int) -> None:
    # range() with step 0 raises an unhelpful error, and a negative step yields nothing at all.
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

"""Semi-supervised splits: a data set's train labels kept on a few rows, hidden on the rest.

``load_dataset("mnist", labelled=100)`` keeps the labels of 100 train rows, as evenly over the
classes as their counts allow (10 per digit), chosen with the load's ``seed``; the other rows keep
their images and get the label :data:`MISSING`. Test labels are all kept: they score the
classifier. A model with a partially observed label node (``observed = "partial"``) sees the
label where it is kept and sums it out (or samples it from its guide) elsewhere.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import DataError

#: The label of a row whose label is hidden.
MISSING = -1


def balanced_rows(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Indices of ``count`` rows of ``labels``, class-balanced: ``count // C`` of each of the C
    classes, the remainder one more each for classes drawn at random; each class's rows drawn
    uniformly with ``seed``. Sorted."""
    generator = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    share, extra = divmod(count, len(classes))
    bonus = set(torch.randperm(len(classes), generator=generator)[:extra].tolist())
    chosen = []
    for i, c in enumerate(classes.tolist()):
        rows = (labels == c).nonzero()[:, 0]
        want = share + (i in bonus)
        if want > len(rows):
            raise DataError(f"labelled={count}: class {c} has only {len(rows)} train rows")
        chosen.append(rows[torch.randperm(len(rows), generator=generator)[:want]])
    return torch.cat(chosen).sort().values


def keep_labels(dataset, labelled: int, seed: int):
    """``dataset`` with the train labels of ``labelled`` class-balanced rows kept, the others
    set to :data:`MISSING`; ``labelled`` is recorded in its options."""
    if dataset.train_labels is None:
        raise DataError(f"data set {dataset.name!r}: labelled={labelled}, but it has no labels")
    n = len(dataset.train_labels)
    if isinstance(labelled, bool) or not isinstance(labelled, int) or not 1 <= labelled <= n:
        raise DataError(
            f"data set {dataset.name!r}: labelled must be a whole number from 1 to {n} (its "
            f"train rows), got {labelled!r}"
        )
    kept = balanced_rows(dataset.train_labels, labelled, seed)
    labels = torch.full_like(dataset.train_labels, MISSING)
    labels[kept] = dataset.train_labels[kept]
    options = {**dataset.options, "labelled": labelled}
    return replace(dataset, train_labels=labels, options=options)

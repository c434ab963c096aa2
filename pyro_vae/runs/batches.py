"""A batch as a pair is called with it: the rows of x (``model(x)``), or, for a pair that takes
more (``pv.train(..., args=("x", "labels"))``), a tuple of the named arrays' rows, passed in that
order (``model(x, labels)``)."""

from __future__ import annotations

#: The arguments of a spec-built pair, and every pair's default.
JUST_X = ("x",)


def names_of(args: tuple[str, ...]) -> tuple[str, ...] | None:
    """What to ask the data set's batches for: None for x alone (its rows, not a tuple)."""
    return None if tuple(args) == JUST_X else tuple(args)


def as_args(batch) -> tuple:
    """The positional arguments of a call of the pair on ``batch``."""
    return batch if isinstance(batch, tuple) else (batch,)


def rows(batch) -> int:
    return len(as_args(batch)[0])


def moved(batch, device, non_blocking: bool = False):
    """``batch`` on ``device``."""
    if isinstance(batch, tuple):
        return tuple(t.to(device, non_blocking=non_blocking) for t in batch)
    return batch.to(device, non_blocking=non_blocking)


def head(batch, n: int):
    """The first ``n`` rows of ``batch``."""
    return tuple(t[:n] for t in batch) if isinstance(batch, tuple) else batch[:n]

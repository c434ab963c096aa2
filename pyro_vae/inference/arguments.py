"""The arguments of a pair that carry the data dimension, and how to take rows of them.

A pair is called with every argument it was given: ``model(x)``, ``model(x, y)``,
``model(mini_batch, mini_batch_reversed, mini_batch_mask, lengths, annealing_factor=1.0)``. To
run one datapoint alone (:mod:`~pyro_vae.inference.streams`) or K copies of each datapoint
(:mod:`~pyro_vae.inference.particles`, for a model that cannot take a particle dimension), the
estimators take rows of the arguments that have one row per datapoint — tensors whose first
dimension is N, ``PackedSequence`` of N sequences, tuples, lists and dicts of them — and pass the
others whole. How a type is sliced is an entry of :data:`SLICERS`; :func:`register_slicer` adds
one for a type of your own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..errors import ModelGuideError


@dataclass(frozen=True)
class Slicer:
    """How one type of argument is cut along the data dimension.

    :param rows: the number of datapoints a value holds (None: it carries no data dimension).
    :param take: the value made of the rows ``index`` (a long tensor) of it, in that order.
    """

    rows: Callable[[object], int | None]
    take: Callable[[object, torch.Tensor], object]


#: Argument type → its :class:`Slicer`; a value takes that of the nearest type in its MRO.
SLICERS: dict[type, Slicer] = {}


def register_slicer(kind: type, rows: Callable, take: Callable) -> None:
    """Teach the estimators to slice arguments of type ``kind``: ``rows(value)`` gives how many
    datapoints it holds (None where it holds none), ``take(value, index)`` the rows ``index``."""
    SLICERS[kind] = Slicer(rows, take)


def _tensor_rows(value: torch.Tensor) -> int | None:
    return value.shape[0] if value.dim() else None


def _packed_rows(value: PackedSequence) -> int:
    return int(value.batch_sizes[0])


def _take_packed(value: PackedSequence, index: torch.Tensor) -> PackedSequence:
    padded, lengths = pad_packed_sequence(value, batch_first=True)
    index = index.to(padded.device)
    return pack_padded_sequence(
        padded[index], lengths[index.cpu()], batch_first=True, enforce_sorted=False
    )


def _sequence_rows(value) -> int | None:
    found = {rows_of(v) for v in value} - {None}
    return found.pop() if len(found) == 1 else None


register_slicer(torch.Tensor, _tensor_rows, lambda v, i: v.index_select(0, i.to(v.device)))
register_slicer(PackedSequence, _packed_rows, _take_packed)
register_slicer(tuple, _sequence_rows, lambda v, i: _rebuilt(v, [take(e, i) for e in v]))
register_slicer(list, _sequence_rows, lambda v, i: [take(e, i) for e in v])
register_slicer(
    dict, lambda v: _sequence_rows(v.values()), lambda v, i: {k: take(e, i) for k, e in v.items()}
)


def _rebuilt(value: tuple, items: list):
    """A tuple (or named tuple) of the same type with ``items``."""
    return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)


def _slicer(value) -> Slicer | None:
    """The slicer of the most specific registered type ``value`` is an instance of (a
    ``PackedSequence`` is a tuple, and is sliced as a PackedSequence)."""
    return next((SLICERS[k] for k in type(value).__mro__ if k in SLICERS), None)


def rows_of(value) -> int | None:
    """How many datapoints ``value`` holds along its first dimension (None: not known)."""
    slicer = _slicer(value)
    return None if slicer is None else slicer.rows(value)


def take(value, index: torch.Tensor):
    """The rows ``index`` of ``value`` (itself where it has no slicer)."""
    slicer = _slicer(value)
    return value if slicer is None else slicer.take(value, index)


def take_rows(args: tuple, kwargs: dict, num_data: int, index: torch.Tensor):
    """``args`` and ``kwargs`` with the rows ``index`` of every argument holding ``num_data``
    datapoints; the others as they are."""

    def cut(value):
        return take(value, index) if rows_of(value) == num_data else value

    return tuple(cut(a) for a in args), {k: cut(v) for k, v in kwargs.items()}


def unsliced(named: list[tuple[str, object]]) -> list[str]:
    """The names of arguments no slicer knows (other than numbers, strings, None): where a pair
    still sees every datapoint after slicing, one of them carries them."""
    plain = (int, float, bool, str, type(None))
    return [
        f"{name} ({type(v).__name__})"
        for name, v in named
        if not isinstance(v, plain) and _slicer(v) is None
    ]


def cannot_slice(layout_num_data: int, names: list[str]) -> ModelGuideError:
    """The error for a pair whose data plate keeps its size after its arguments were sliced."""
    culprit = f"; arguments it could not slice: {', '.join(names)}" if names else ""
    return ModelGuideError(
        f"the pair still sees {layout_num_data} datapoints after every argument with one row "
        f"per datapoint was cut to one row{culprit}. Register how to slice such an argument "
        f"with pyro_vae.register_slicer(type, rows=..., take=...)"
    )

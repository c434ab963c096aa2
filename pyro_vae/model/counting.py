"""What a family's or a net's count is written in: sizes that know the spec key that set them,
and a tally of tensors blamed on those keys.

Each family, guide family and net counts the values its builder will allocate beside that
builder (``Family.count``, ``GuideFamily.count``, ``NetKind.count``), so that a new one is one
file; :mod:`~pyro_vae.model.sizes` walks a model/guide pair, asks each entry for its count and
refuses a pair too large. This module imports no family or net, so that all of them can import
it.

A tensor is a product of sizes; it is blamed on its largest factor, and a factor that no key
sets (the data's size, a constant) on the node's net.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    """A width or a count, and the spec key that set it (``key`` empty: none did, e.g. the
    data's size or a constant)."""

    value: int
    path: str = ""
    key: str = ""


def sum_of(sizes: list[Size]) -> Size:
    """The sum of ``sizes``, set by the key of the largest of them."""
    largest = max(sizes, key=lambda s: s.value, default=Size(0))
    return Size(sum(s.value for s in sizes), largest.path, largest.key)


def times(*sizes: Size) -> Size:
    """The product of ``sizes``, set by the key of the largest of them."""
    largest = max(sizes, key=lambda s: s.value)
    return Size(math.prod(s.value for s in sizes), largest.path, largest.key)


@dataclass(frozen=True)
class SpecEntry:
    """The options of one spec entry (a node, or its net) with the file and key they are set
    at, so that a size read from them names the key a message must blame."""

    options: dict
    path: str
    key: str

    def size(self, name: str, value: int | None = None) -> Size:
        """``options[name]`` (or ``value``, one item of a list option) as a :class:`Size` set
        by ``key.name``."""
        return Size(self.options[name] if value is None else value, self.path, f"{self.key}.{name}")

    def sizes(self, name: str) -> list[Size]:
        """Each item of the list option ``name`` (none when it is unset)."""
        return [self.size(name, v) for v in self.options.get(name) or []]


class Tally:
    """Values counted by the spec key they are blamed on.

    :param where: the node (its file and net key) that a tensor none of whose factors has a
        key is blamed on; set per node while counting.
    """

    def __init__(self):
        self.counts: Counter[tuple[str, str]] = Counter()
        self.where = Size(0)

    def add(self, *factors: Size) -> None:
        """One tensor of ``prod(factors)`` values, blamed on its largest factor."""
        largest = max(factors, key=lambda s: s.value)
        blamed = largest if largest.key else self.where
        self.counts[(blamed.path, blamed.key)] += math.prod(f.value for f in factors)

    def linear(self, n_in: Size, n_out: Size) -> None:
        """An ``nn.Linear``: its weight and its bias."""
        self.add(n_in, n_out)
        self.add(n_out)


@dataclass(frozen=True)
class NetShape:
    """What a net is built from: its inputs' widths (with the image shape of the data input) and
    its output's width (with the image shape when it is the observed image x)."""

    inputs: list[Size]
    output: Size
    input_image: tuple[int, int, int] | None = None  # the (C, H, W) of an image input
    output_image: tuple[int, int, int] | None = None
    categorical_inputs: int = 0
    image_inputs: int = 0
    vector_inputs: tuple[Size, ...] = ()  # the inputs other than images


@dataclass(frozen=True)
class FamilyShape:
    """A node's family: the raw outputs its net must give (``head``) and its own tensors."""

    head: Size
    own: list[tuple[Size, ...]]


def head_or_own(head: Size, conditional: bool) -> FamilyShape:
    """A family whose raw values come from the net, or, in a node without parents, are its own
    tensor (logits, a mean, a guide's parameters)."""
    return FamilyShape(head, [] if conditional else [(head,)])

"""A tiny name → object registry, so adding a family, net, objective or data set is one function."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; lookups of unknown names fail with the closest valid name.

    >>> NETS = Registry("net")
    >>> @NETS.register("mlp")
    ... def mlp(...): ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the entry, or raise ``KeyError`` with a one-line suggestion."""
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}" + did_you_mean(str(name), self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names()) or 'no entries'})"

    def __str__(self) -> str:
        """One line per entry: its name and, where it has one, its description."""
        width = max((len(name) for name in self._items), default=0)
        count = len(self._items)
        lines = [f"{self.kind} registry, {count} {'entry' if count == 1 else 'entries'}:"]
        for name in self.names():
            lines.append(f"  {name:<{width}}  {_describe(self._items[name])}".rstrip())
        return "\n".join(lines)


def _describe(entry) -> str:
    """The first line of an entry's ``description`` or ``help`` text, else of its own
    docstring (not one an instance takes from its class); empty if none."""
    for attribute in ("description", "help"):
        text = getattr(entry, attribute, None)
        if isinstance(text, str) and text.strip():
            return _first_line(text)
    doc = getattr(entry, "__doc__", None)
    inherited = not isinstance(entry, type) and doc == getattr(type(entry), "__doc__", None)
    return "" if inherited or not isinstance(doc, str) else _first_line(doc)


def _first_line(text: str) -> str:
    """The first line of ``text``, without reStructuredText's double backticks."""
    lines = text.strip().splitlines()
    return lines[0].strip().replace("``", "") if lines else ""

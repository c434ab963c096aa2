"""How a result type is shown: a :class:`View`, registered by the result class's name.

A view reads a result's fields and derived properties and says nothing about how they were
computed; the result class holds no formatting code. Every view gives the same four things, from
which :class:`~pyro_vae.results.result.Result` makes ``str`` (a text table), ``repr`` (one line),
``_repr_markdown_`` (Jupyter) and ``to_dict`` (strict JSON: numbers, strings, lists; None for
NaN), so a new result type is shown everywhere by registering one view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..registry import Registry
from .tables import Table


def _nothing(result, **options) -> dict:
    return {}


@dataclass(frozen=True)
class View:
    """The views of one result type.

    :param table: the result as a titled :class:`~pyro_vae.results.tables.Table` (``str`` and
        Markdown come from it).
    :param line: the few numbers its one-line ``repr`` shows.
    :param summary: its scalar numbers (``result.summary()``).
    :param details: what ``to_dict`` adds to the summary: per-datapoint values, curves,
        settings; it takes the keyword options ``to_dict`` is given.
    """

    table: Callable[[Any], Table]
    line: Callable[[Any], dict]
    summary: Callable[[Any], dict]
    details: Callable[..., dict] = _nothing


VIEWS: Registry[View] = Registry("result view")


def register_view(result_type: str, **fields) -> View:
    """Register the view of the result class named ``result_type``."""
    return VIEWS.register(result_type)(View(**fields))

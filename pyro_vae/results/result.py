"""The :class:`Result` mixin: every result class prints, renders and serializes through the view
registered for it (:mod:`pyro_vae.results.view`).

A result is a frozen dataclass (``@dataclass(frozen=True, repr=False, eq=False)``: no generated
``repr`` printing every tensor, no ``==`` on tensors) of per-datapoint tensors and settings with
derived properties; this mixin adds ``str``, ``repr``, ``_repr_markdown_``, ``table``,
``summary`` and ``to_dict``, all read from its view.
"""

from __future__ import annotations

import warnings

# The views register themselves when imported: every result type's view is known once this
# module is.
from . import (  # noqa: F401
    comparisons,
    estimates,
    evaluation,
    explanations,
    sequences,
    training,
)
from .tables import Table, jsonable, repr_line
from .view import VIEWS, View


class Result:
    """``str``, ``repr``, Jupyter Markdown, ``summary`` and ``to_dict`` from the result's view."""

    def _view(self) -> View:
        return VIEWS.get(type(self).__name__)

    def table(self) -> Table:
        return self._view().table(self)

    def summary(self) -> dict:
        """The scalar numbers of the result (means, counts, settings)."""
        return self._view().summary(self)

    def to_dict(self, **options) -> dict:
        """Plain Python (numbers, strings, lists; None for NaN) for ``json.dumps``: the summary
        and the details (per-datapoint values, curves)."""
        view = self._view()
        return jsonable({**view.summary(self), **view.details(self, **options)})

    def __str__(self) -> str:
        return self.table().text()

    def __repr__(self) -> str:
        return repr_line(type(self).__name__, self._view().line(self))

    def _repr_markdown_(self) -> str:
        return self.table().markdown()


class SummaryKeys:
    """``result["key"]`` for the results that were returned as a dict of their summary before
    they were typed (``evaluate_run``, ``compare_run``, ``compare_training``): code written
    against the dict keeps running, with a ``DeprecationWarning`` that names the typed way."""

    def _keys(self) -> dict:
        out = getattr(self, "out", None)
        return {**self.summary(), **({"out": str(out)} if out is not None else {})}

    def __getitem__(self, key: str):
        warnings.warn(
            f"{type(self).__name__} is a typed result: read its fields, or "
            f".summary()[{key!r}]; subscripting it is kept for code written against the dict",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._keys()[key]

    def __contains__(self, key: str) -> bool:
        return key in self._keys()

    def keys(self):
        return self._keys().keys()

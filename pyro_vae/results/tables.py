"""Numbers as text for reports, the command line and results: one spelling of a missing value.

:class:`Table` is a titled table of formatted cells, written as aligned plain text
(:func:`text_table`) or Markdown (:func:`markdown_table`); :func:`jsonable` makes values strict
JSON; :func:`repr_line` is the one-line ``repr`` of a result
(:class:`~pyro_vae.results.result.Result` builds all four views from these).
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MISSING = "–"


def is_missing(value) -> bool:
    """None or NaN: a number that is undefined or was not computed."""
    return value is None or (isinstance(value, numbers.Real) and math.isnan(value))


def fmt(value, spec: str = ".2f") -> str:
    """``value`` formatted with ``spec``; ``–`` for None or NaN (undefined or not computed),
    right-aligned to the width ``spec`` asks for."""
    if is_missing(value):
        width = re.match(r"\d*", spec).group()
        return format(MISSING, f">{width}") if width else MISSING
    return format(value, spec)


def fmt_pm(value, stderr, spec: str = ".3f") -> str:
    """``value ± stderr``, each ``–`` where missing (both: a single ``–``)."""
    if is_missing(value):
        return MISSING
    return f"{fmt(value, spec)} ± {fmt(stderr, spec)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    """Lines of a Markdown table; cells are written as given (format them with :func:`fmt`),
    but for a bare ``|``, which would end the cell (``q(z|x)``), and an empty header cell,
    which Markdown cannot hold."""

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(h or " " for h in header), "|" + "---|" * len(header), *map(line, rows)]


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: combining marks (the hat of p̂) take none."""
    return sum(not unicodedata.combining(ch) for ch in text)


def text_table(
    header: Sequence[str], rows: Sequence[Sequence], indent: str = "", align: str | None = None
) -> list[str]:
    """Lines of a plain-text table, columns padded to their widest cell and aligned by
    ``align``, one letter per column, ``l`` or ``r`` (default: labels in the first column to
    the left, numbers in the others to the right); a rule of dashes under the header, left out
    when every header cell is empty."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(display_width(r[i]) for r in [list(header), *cells]) for i in range(len(header))]
    align = align or "l" + "r" * (len(header) - 1)

    def line(row):
        padded = []
        for cell, width, side in zip(row, widths, align, strict=True):
            pad = " " * (width - display_width(cell))
            padded.append(cell + pad if side == "l" else pad + cell)
        return (indent + "  ".join(padded)).rstrip()

    top = [line(list(header)), indent + "  ".join("-" * w for w in widths)] if any(header) else []
    return top + [line(row) for row in cells]


@dataclass
class Table:
    """A result as a table: ``title`` above, ``notes`` below, cells already formatted;
    ``align`` as for :func:`text_table`."""

    title: str
    header: Sequence[str]
    rows: list[Sequence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    align: str | None = None

    def text(self) -> str:
        lines = [self.title, *text_table(self.header, self.rows, "  ", self.align)]
        return "\n".join(lines + [f"  {note}" for note in self.notes])

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", *markdown_table(self.header, self.rows)]
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def jsonable(value):
    """``value`` as plain Python that ``json.dumps(..., allow_nan=False)`` accepts: tensors and
    arrays as (nested) lists, NaN and ±inf as None, mapping keys as strings, other objects
    (paths, say) by ``str``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # a tensor or an array, on any device
        detached = value.detach().cpu() if hasattr(value, "detach") else value
        return jsonable(detached.tolist())
    return str(value)


def repr_line(name: str, fields: Mapping) -> str:
    """``Name(key=value, …)`` on one line, floats to 6 significant digits."""

    def short(v):
        return format(v, ".6g") if isinstance(v, float) else repr(v)

    return f"{name}(" + ", ".join(f"{k}={short(v)}" for k, v in fields.items()) + ")"

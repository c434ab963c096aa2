"""Numbers as text for reports and the command line: one spelling of a missing value."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

MISSING = "–"


def fmt(value, spec: str = ".2f") -> str:
    """``value`` formatted with ``spec``; ``–`` for None or NaN (undefined or not computed),
    right-aligned to the width ``spec`` asks for."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = re.match(r"\d*", spec).group()
        return format(MISSING, f">{width}") if width else MISSING
    return format(value, spec)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    """Lines of a Markdown table; cells are written as given (format them with :func:`fmt`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]

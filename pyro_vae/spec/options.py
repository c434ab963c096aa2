"""Checks for the values of spec keys.

Each check takes the raw TOML value and returns the normalized value, or raises ``ValueError``
with the expectation ("expected a positive integer, got -3"); the parser adds file and key.
:class:`Constraint` is what a fixed numeric parameter of a distribution must satisfy; families
declare one per such parameter, and the parser applies it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import did_you_mean, shown

Check = Callable[[Any], Any]
REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One key a family or net accepts: its check, its default (or ``REQUIRED``) and a doc line."""

    check: Check
    default: Any = REQUIRED
    doc: str = ""


#: The largest size (``dim``, hidden widths, channels, kernel, stride, counts) a spec may give.
#: Any layer with a width above it holds more than 10⁹ weights (4 GB of float32) per unit on
#: its other side, beyond the default parameter limit of :mod:`pyro_vae.model.sizes`, which
#: checks the exact count of the whole model once the spec is resolved; this bound only keeps
#: absurd numbers (10³⁰, which torch cannot even take as a size) out of that arithmetic.
MAX_SIZE = 10**9


def _whole_number(value: Any, low: int, expected: str) -> int:
    """``value`` if it is an integer in ``[low, MAX_SIZE]`` (``true`` and ``5.0`` are not)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_SIZE:
        raise ValueError(
            f"{expected}, got {shown(value)}; must be a whole number between {low:,} and "
            f"{MAX_SIZE:,}"
        )
    return value


def positive_int(value: Any) -> int:
    return _whole_number(value, 1, "expected a positive integer")


def int_at_least(low: int) -> Check:
    def check(value: Any) -> int:
        return _whole_number(value, low, f"expected an integer >= {low}")

    return check


def number(value: Any) -> float:
    """Any TOML number, NaN and infinities included, as a float: the range of a distribution
    parameter is its family's :class:`Constraint`, checked once the options are read."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {shown(value)}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond the largest float
        return math.inf if value > 0 else -math.inf


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {shown(value)}")
    return value


def one_of(choices: Sequence[str]) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            word = value if isinstance(value, str) else shown(value)
            raise ValueError(f"unknown value {shown(value)}" + did_you_mean(word, choices))
        return value

    return check


def list_of(item: Check, *, allow_empty: bool = True) -> Check:
    def check(value: Any) -> list:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {shown(value)}")
        if not value and not allow_empty:
            raise ValueError("expected a non-empty list")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except ValueError as e:
                raise ValueError(f"item {i}: {e}") from None
        return out

    return check


@dataclass(frozen=True)
class Constraint:
    """The values a fixed numeric parameter of a distribution may take: finite numbers in
    ``[low, high]``, each item of a list; ``simplex``: the list must also sum to 1 (within
    10⁻⁶). ``why`` is the reason for the bounds, said in the message.

    :meth:`check` takes what the option's check returned and leaves anything that is not a
    number or a list of numbers (a mode such as ``"learned"``) to that check.
    """

    what: str
    low: float
    high: float
    why: str = ""
    simplex: bool = False

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` saying which value breaks the constraint and why."""
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        items = [value] if is_number else value if isinstance(value, list) else None
        if items is None or not all(isinstance(v, int | float) for v in items):
            return
        for i, v in enumerate(items):
            if not (math.isfinite(v) and self.low <= v <= self.high):
                where = f"item {i}: " if not is_number else ""
                because = f": {self.why}" if self.why else ""
                raise ValueError(
                    f"{where}{self.what} must be a finite number from {self.low:g} to "
                    f"{self.high:g}, got {shown(v)}{because}"
                )
        if self.simplex and abs(math.fsum(items) - 1.0) > 1e-6:
            raise ValueError(f"expected probabilities summing to 1, got sum {math.fsum(items):.6g}")


def either(*checks: Check, expected: str) -> Check:
    """Accept the first check that passes; the message says what was ``expected``."""

    def check(value: Any) -> Any:
        for c in checks:
            try:
                return c(value)
            except ValueError:
                continue
        raise ValueError(f"expected {expected}, got {shown(value)}")

    return check


def validate_options(
    table: dict, options: dict[str, Option], fail: Callable[[str, str], Exception]
) -> dict:
    """Check ``table`` against ``options``; ``fail(key, message)`` builds the error to raise.

    Unknown keys are rejected with the closest valid key; missing required keys are named.
    """
    out = {}
    for key, value in table.items():
        if key not in options:
            raise fail(key, "unknown key" + did_you_mean(key, options))
        try:
            out[key] = options[key].check(value)
        except ValueError as e:
            raise fail(key, str(e)) from None
    for key, opt in options.items():
        if key not in out:
            if opt.default is REQUIRED:
                raise fail(key, f"required key is missing ({opt.doc})" if opt.doc else "required")
            out[key] = opt.default
    return out

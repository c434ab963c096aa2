"""Checks for the values of spec keys.

Each check takes the raw TOML value and returns the normalized value, or raises ``ValueError``
with the expectation ("expected a positive integer, got -3"); the parser adds file and key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import did_you_mean

Check = Callable[[Any], Any]
REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One key a family or net accepts: its check, its default (or ``REQUIRED``) and a doc line."""

    check: Check
    default: Any = REQUIRED
    doc: str = ""


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else f"'{value}'"


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive integer, got {_show(value)}")
    return value


def int_at_least(low: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"expected an integer >= {low}, got {_show(value)}")
        return value

    return check


def positive_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a positive number, got {_show(value)}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"expected a positive finite number, got {_show(value)}")
    return float(value)


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_show(value)}")
    return value


def one_of(choices: Sequence[str]) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"unknown value {_show(value)}" + did_you_mean(str(value), choices))
        return value

    return check


def list_of(item: Check, *, allow_empty: bool = True) -> Check:
    def check(value: Any) -> list:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {_show(value)}")
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


def probability_vector(value: Any) -> list[float]:
    probs = list_of(positive_float, allow_empty=False)(value)
    if abs(sum(probs) - 1.0) > 1e-6:
        raise ValueError(f"expected probabilities summing to 1, got sum {sum(probs):.6g}")
    return probs


def either(*checks: Check, expected: str) -> Check:
    """Accept the first check that passes; the message says what was ``expected``."""

    def check(value: Any) -> Any:
        for c in checks:
            try:
                return c(value)
            except ValueError:
                continue
        raise ValueError(f"expected {expected}, got {_show(value)}")

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

"""User-facing errors.

Every mistake a user can make with a file (a spec, a data set, a checkpoint, a run directory)
raises a subclass of :class:`PyroVaeError`. Its message is one line that names the file and the
key or line at fault; the CLI prints it and exits with :attr:`PyroVaeError.exit_code`, never with a
traceback.
"""

from __future__ import annotations

import difflib
import math
import reprlib
from collections.abc import Iterable
from typing import Any


class PyroVaeError(Exception):
    """Base class of errors caused by user input; the CLI exits with ``exit_code``."""

    exit_code = 2


class SpecError(PyroVaeError):
    """A model or guide spec is malformed.

    :param path: the spec file (or ``"<string>"``).
    :param key: dotted key path inside the file, e.g. ``latent.z.net.hidden``; empty for the file.
    :param message: what was expected.
    """

    def __init__(self, path, key: str, message: str):
        self.path, self.key, self.message = str(path), key, message
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {message}")


class DataError(PyroVaeError):
    """A data set is missing, corrupted, or does not fit the model."""


class CheckpointError(PyroVaeError):
    """A run directory or checkpoint cannot be read."""


class ModelGuideError(PyroVaeError):
    """A model/guide pair that does not follow the conventions importance sampling needs."""


class TrainingDiverged(PyroVaeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or a list of the valid ones."""
    choices = sorted(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    if not choices:
        return ""
    return "; valid: " + ", ".join(repr(c) for c in choices)


class _ShortRepr(reprlib.Repr):
    """``repr`` cut to a few dozen characters and three levels of nesting: a message quotes a
    value, never a megabyte of it; integers too long for ``repr`` (above 4,300 digits) are
    described by their length."""

    def __init__(self):
        super().__init__()  # Python 3.11's takes no limits; they are attributes
        self.maxlevel, self.maxlist, self.maxdict = 3, 8, 8
        self.maxstring, self.maxlong, self.maxother = 60, 40, 60

    def repr_int(self, value, level):
        if value.bit_length() > 1000:
            return f"<an integer of about {int(value.bit_length() * math.log10(2)):,} digits>"
        return super().repr_int(value, level)


_SHORT_REPR = _ShortRepr()


def shown(value: Any) -> str:
    """``value`` as a message quotes it: a short ``repr`` on one line (strings are escaped, so a
    newline in a value cannot split the message)."""
    return _SHORT_REPR.repr(value)

"""Whether categorical values arrive as vectors: one-hot codes, or points of the simplex drawn
from a relaxation (:mod:`pyro_vae.objectives.relaxed`), instead of integer codes. The nets of a
spec-built model read their categorical inputs as such vectors while it is on."""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

_VECTORS = ContextVar("categories_as_vectors", default=False)


def categories_as_vectors() -> bool:
    """Whether categorical values are vectors in this call."""
    return _VECTORS.get()


@contextlib.contextmanager
def vector_categories():
    """Within it, categorical values are vectors over the categories."""
    token = _VECTORS.set(True)
    try:
        yield
    finally:
        _VECTORS.reset(token)

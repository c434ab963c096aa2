"""Whether ``torch.compile`` is tracing: where a spec-built model computes the same value
differently for TorchInductor (:mod:`pyro_vae.inference.compiled`), without the branches
that eager code takes to be fast and that a traced graph cannot hold."""

from __future__ import annotations

import torch


def compiling() -> bool:
    """Whether torch.compile is tracing this call (torch < 2.3 cannot say: never)."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())

"""The arithmetic precision estimators compute in: float32, or bfloat16 matrix products.

``precision="bf16"`` runs the pair under ``torch.autocast``: matrix products and convolutions
take bfloat16 inputs (the CPU's AMX units or a GPU's tensor cores run them several times faster
than float32), everything else stays in float32. A spec-built model's families receive their
nets' outputs cast back to float32, so each density is still summed in float32; what changes is
the nets' arithmetic, whose rounding error (about 3 significant digits per product) moves each
log weight a little. Estimates are summed in float64 either way. The size of the change is
measured, not assumed: ``benchmarks/log_likelihood_roof.py`` reports the mean |Δ log p̂| per
datapoint against float32 on the same samples.
"""

from __future__ import annotations

import contextlib

import torch

#: precision name → the dtype autocast computes matrix products in (None: no autocast).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return precision


def computing_in(precision: str, device: torch.device | str | None = None):
    """A context in which the pair computes at ``precision`` on ``device``."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device or "cpu").type, dtype=dtype)


def data_device(args: tuple, kwargs: dict) -> torch.device:
    """The device of the first tensor among the arguments (the CPU if there is none)."""
    for value in (*args, *kwargs.values()):
        if torch.is_tensor(value):
            return value.device
    return torch.device("cpu")

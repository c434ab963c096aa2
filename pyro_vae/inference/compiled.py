"""Fused elementwise work: a spec-built pair's importance weights through ``torch.compile``.

In one pass of importance sampling a CPU spends as long on the elementwise work as on the
decoder's matrix products: eager PyTorch reads and writes a pass's activations once per
operation (the bias, the activation, the exponential and the logarithm of every pixel's log
density, and under ``precision="bf16"`` the casts), where the arithmetic needs one read.
TorchInductor fuses each stretch between two products into one vectorized loop, the
Bernoulli log density :math:`\\sum_d x_d \\ell_d - \\operatorname{softplus}(\\ell_d)` with the
cast of the logits and the sum included, so a pass costs little more than its products
(docs/scaling.md has the measurements).

Compiling costs seconds (a few with the inductor's on-disk cache warm, up to about ten
cold), once per model and pass shape in a process, so ``compile=None`` turns it on only for
estimates large enough to pay for it: :data:`COMPILE_ROWS` importance-weighted rows or more.
The compiled function is compiled for static shapes: every pass of an estimate has the same
number of samples (:meth:`~pyro_vae.LatentModel.pass_samples`: K spread evenly over passes of
at most :attr:`~pyro_vae.LatentModel.SCORE_ROWS` rows), a shorter last pass padded.

The compiled weights are checked before use, as the eager ones are, against the traced
weights from the same draws, at the shape they were compiled for; where compilation fails or
the check does not pass, the estimate goes on with the eager modules (or the traces) and says
so in a warning.
"""

from __future__ import annotations

from functools import cache

import torch

#: With ``compile=None``, an estimate is compiled when it weighs at least this many rows
#: (samples × datapoints): about twice the rows whose time saved pays for a cold compilation
#: on a CPU (a pass of the 784-200-200-50 VAE saves ~3.5 µs per row).
COMPILE_ROWS = 5_000_000


def check_compile(compile) -> bool | None:
    """``compile`` as given: True, False or None (decide by :func:`compile_pays`)."""
    if compile is not None and not isinstance(compile, bool):
        raise ValueError(f"compile must be True, False or None (auto), got {compile!r}")
    return compile


def compile_pays(num_samples: int, num_data: int) -> bool:
    """Whether an estimate of ``num_data`` datapoints at K = ``num_samples`` is large enough
    for compilation to pay for itself."""
    return num_samples * num_data >= COMPILE_ROWS


def compiled_pass(owner):
    """``owner.pass_log_weights`` compiled for static shapes, called as the bound method is;
    compiled on its first call with a new model or pass shape."""
    compiled = _compiled_function(type(owner))

    def score(x, values, from_guide):
        return compiled(owner, x, values, from_guide)

    return score


@cache
def _compiled_function(owner_type):
    # The unbound function, compiled once per class: the model is an argument, so nothing
    # here keeps a model alive.
    return torch.compile(owner_type.pass_log_weights, dynamic=False)

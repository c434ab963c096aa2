"""Small statistics shared by the estimators and their reports: standard errors and k̂ counts."""

from __future__ import annotations

import math

import torch

#: Pareto k̂ above which an importance-sampling estimate is unreliable (Vehtari et al. 2024).
KHAT_UNRELIABLE = 0.7


def _float64(values) -> torch.Tensor:
    return torch.as_tensor(values).detach().to(torch.float64).reshape(-1)


def mean_stderr(stderrs) -> float:
    """Standard error of the mean of independent estimates with standard errors ``stderrs``:
    :math:`\\sqrt{\\sum_n s_n^2} / N` (NaN where a standard error is undefined)."""
    s = _float64(stderrs)
    return (s.pow(2).sum().sqrt() / s.numel()).item()


def sample_stderr(values) -> float | None:
    """Standard error of the mean of a sample, std(ddof=1) / √N; None for fewer than 2 values."""
    v = _float64(values)
    return (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else None


def khat_counts(khat) -> dict:
    """Median k̂ and how many datapoints have k̂ > 0.7 or an undefined k̂.

    k̂ is undefined (not finite) when the weights take too few distinct values to fit a tail, as
    with a discrete latent: those are counted apart rather than as unreliable.
    """
    k = _float64(khat)
    finite = k[torch.isfinite(k)]
    return {
        "khat_median": finite.quantile(0.5).item() if finite.numel() else None,
        "khat_above_0.7": int((finite > KHAT_UNRELIABLE).sum()),
        "khat_undefined": int(k.numel() - finite.numel()),
    }


def count_non_finite(values) -> int:
    """How many of ``values`` are NaN or infinite."""
    return int((~torch.isfinite(_float64(values))).sum())


def masked_mean(values, keep) -> float | None:
    """The mean of ``values`` where ``keep`` is true; None where nothing is kept."""
    v = _float64(values)[_float64(keep).bool()]
    return v.mean().item() if v.numel() else None

"""Summaries of per-datapoint estimates, shared by every result: the standard error of a mean, the
mean of the usable datapoints with its two standard errors (:class:`Stats`), and the counts of
Pareto k̂ (:class:`KhatCounts`).

Every summary here takes the datapoints to average as a mask (``keep``): a result's own mask of
usable datapoints (finite, precision kept), or an evaluation's mask over several results, applied
the same way to each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

#: Pareto k̂ above which an importance-sampling estimate is unreliable (Vehtari et al. 2024).
KHAT_UNRELIABLE = 0.7


def _float64(values) -> torch.Tensor:
    return torch.as_tensor(values).detach().cpu().to(torch.float64).reshape(-1)


def as_numpy(values) -> np.ndarray:
    """``values`` as a flat NumPy array: a tensor in float64 (a bool tensor stays bool), an
    array or a list as it is."""
    if torch.is_tensor(values):
        values = values.detach().cpu()
        values = values.double() if values.dtype != torch.bool else values
        return values.numpy().reshape(-1)
    return np.asarray(values).reshape(-1)


def mean_stderr(stderrs) -> float:
    """Standard error of the mean of independent estimates with standard errors ``stderrs``:
    :math:`\\sqrt{\\sum_n s_n^2} / N` (NaN where a standard error is undefined)."""
    s = _float64(stderrs)
    return (s.pow(2).sum().sqrt() / s.numel()).item()


def sample_stderr(values) -> float | None:
    """Standard error of the mean of a sample, std(ddof=1) / √N; None for fewer than 2 values."""
    v = _float64(values)
    return (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else None


def difference_stderr(a, b) -> torch.Tensor:
    """Per datapoint, the standard error of the difference (or sum) of two independent estimates
    with standard errors ``a`` and ``b``: √(a² + b²), in float64."""
    return torch.from_numpy(np.hypot(as_numpy(a), as_numpy(b)))


def count_non_finite(values) -> int:
    """How many of ``values`` are NaN or infinite."""
    return int((~torch.isfinite(_float64(values))).sum())


def finite_median(values) -> float | None:
    """The median of the finite ``values``; None where there is none."""
    v = as_numpy(values)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else None


def everywhere(values) -> np.ndarray:
    """A mask keeping every datapoint of ``values``."""
    return np.ones(len(as_numpy(values)), dtype=bool)


@dataclass(frozen=True)
class Stats:
    """The mean of per-datapoint estimates over the datapoints kept, its Monte Carlo standard
    error (from each estimate's own) and its standard error over datapoints (their spread);
    None for each where nothing is kept."""

    mean: float | None = None
    mc_stderr: float | None = None
    datapoint_stderr: float | None = None

    @classmethod
    def of(cls, values, mc_errors, keep=None) -> Stats:
        values, mc_errors = as_numpy(values), as_numpy(mc_errors)
        keep = everywhere(values) if keep is None else as_numpy(keep).astype(bool)
        values, mc_errors = values[keep], mc_errors[keep]
        if not len(values):
            return cls()
        return cls(float(values.mean()), mean_stderr(mc_errors), sample_stderr(values))


@dataclass(frozen=True)
class Difference:
    """The mean of per-datapoint differences and its standard error over datapoints."""

    mean: float | None = None
    stderr: float | None = None

    @classmethod
    def of(cls, values) -> Difference:
        values = as_numpy(values)
        return cls(float(values.mean()) if len(values) else None, sample_stderr(values))


@dataclass(frozen=True)
class KhatCounts:
    """Median k̂ and how many datapoints have k̂ > 0.7 (``above``) or an undefined k̂.

    k̂ is undefined (not finite) when the weights take too few distinct values to fit a tail, as
    with a discrete latent: those are counted apart rather than as unreliable. All None where k̂
    could not be had (a result assembled without its largest weights).
    """

    median: float | None = None
    above: int | None = None
    undefined: int | None = None

    @classmethod
    def of(cls, khat) -> KhatCounts:
        if khat is None:
            return cls()
        k = _float64(khat)
        finite = k[torch.isfinite(k)]
        return cls(
            finite.quantile(0.5).item() if finite.numel() else None,
            int((finite > KHAT_UNRELIABLE).sum()),
            int(k.numel() - finite.numel()),
        )

    def to_dict(self) -> dict:
        """The keys reports and JSON files have always used."""
        return {
            "khat_median": self.median,
            "khat_above_0.7": self.above,
            "khat_undefined": self.undefined,
        }

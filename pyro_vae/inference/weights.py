"""Per-datapoint importance weights, summarized: log p̂(x), its standard error, the effective
sample size and the Pareto k̂ (:class:`LogLikelihood`), accumulated chunk by chunk in float64.

Shared by every estimator that ends in importance weights: importance sampling
(:mod:`~pyro_vae.inference.log_likelihood`) and annealed importance sampling
(:mod:`~pyro_vae.inference.ais`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..tables import Table, TabularResult, fmt, fmt_pm, jsonable
from .stats import khat_counts, mean_stderr

ROWS_PER_CHUNK = 16384  # samples × datapoints per pass: bounds memory whatever K is


def khat_summary(result: LogLikelihood) -> dict:
    """:func:`~pyro_vae.inference.stats.khat_counts` of ``result``'s k̂; None for each count
    where k̂ cannot be had (a result assembled without its largest weights)."""
    if result._khat is None and result.largest_log_weights is None:
        return {"khat_median": None, "khat_above_0.7": None, "khat_undefined": None}
    return khat_counts(result.khat)


class _LogLikelihoodTable(TabularResult):
    """How a :class:`LogLikelihood` prints (a table of its summary numbers, no tensors) and
    its JSON form."""

    def repr_fields(self) -> dict:
        return {
            "num_data": len(self.log_px),
            "num_samples": self.num_samples,
            "method": self.method,
            "mean": self.mean,
            "mean_stderr": self.mean_stderr,
        }

    def to_dict(self) -> dict:
        """The numbers of ``summary()`` (None where k̂ is unavailable) with the method, the
        mean ESS, the count of non-finite estimates, the per-datapoint values, the curve
        against K (``by_num_samples``) and the method's details."""
        khat = khat_summary(self)
        per_datapoint = {"log_px": self.log_px, "stderr": self.stderr, "ess": self.ess}
        if khat["khat_median"] is not None or khat["khat_undefined"] is not None:
            per_datapoint["khat"] = self.khat
        curve = {
            k: {"log_px": log_px, "stderr": stderr}
            for k, (log_px, stderr) in (self.by_num_samples or {}).items()
        }
        return jsonable(
            {
                "log_px": self.mean,
                "stderr": self.mean_stderr,
                "ess_median": self.ess.median().item(),
                "ess_mean": self.ess.mean().item(),
                **khat,
                "num_samples": self.num_samples,
                "num_data": len(self.log_px),
                "method": self.method,
                "non_finite": int((~torch.isfinite(self.log_px)).sum()),
                "per_datapoint": per_datapoint,
                "by_num_samples": curve or None,
                "details": self.details,
            }
        )

    def table(self) -> Table:
        num_data, k = len(self.log_px), self.num_samples
        khat = khat_summary(self)
        rows = [
            ["datapoints", num_data],
            ["log p̂(x), mean ± MC stderr", fmt_pm(self.mean, self.mean_stderr)],
            ["ESS, mean (of K)", fmt(self.ess.mean().item(), ".1f")],
            ["ESS, min", fmt(self.ess.min().item(), ".1f")],
            ["Pareto k̂, median", fmt(khat["khat_median"], ".3f")],
            ["k̂ > 0.7 (unreliable)", fmt(khat["khat_above_0.7"], "d")],
        ]
        if khat["khat_undefined"]:
            rows.append(["k̂ undefined", khat["khat_undefined"]])
        non_finite = int((~torch.isfinite(self.log_px)).sum())
        if non_finite:
            rows.append(["non-finite log p̂(x)", non_finite])
        for recorded, (log_px, stderr) in (self.by_num_samples or {}).items():
            if recorded != k:
                rows.append(
                    [
                        f"log p̂(x), first {recorded}",
                        fmt_pm(log_px.mean().item(), mean_stderr(stderr)),
                    ]
                )
        if self.method == "ais":
            title = (
                f"log p̂(x) by annealed importance sampling: K = {k} chains per datapoint, "
                f"{self.details.get('num_steps')} steps; nats"
            )
            if "acceptance" in self.details:
                rows.append(["HMC acceptance, mean", fmt(self.details["acceptance"].mean().item())])
        else:
            title = f"log p̂(x) by importance sampling: K = {k} samples per datapoint; nats"
        return Table(title, ["", ""], rows)


@dataclass(repr=False)
class LogLikelihood(_LogLikelihoodTable):
    """Per-datapoint estimates (float64 tensors of shape (N,)).

    ``khat`` is computed on first access (it needs arviz) from the largest weights kept.
    """

    log_px: torch.Tensor
    stderr: torch.Tensor
    ess: torch.Tensor
    num_samples: int
    # K → (log p̂ with the first K samples, its stderr), when ``record_at`` asked for it
    by_num_samples: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
    largest_log_weights: torch.Tensor | None = field(default=None, repr=False)
    _khat: torch.Tensor | None = field(default=None, repr=False)
    method: str = "is"  # "is": importance sampling; "ais": annealed importance sampling
    details: dict = field(default_factory=dict, repr=False)  # method-specific diagnostics

    @property
    def khat(self) -> torch.Tensor:
        """Pareto k̂ of each datapoint's weights (PSIS; > 0.7: the estimate is unreliable)."""
        if self._khat is None:
            self._khat = pareto_khat(self.largest_log_weights, self.num_samples)
        return self._khat

    @property
    def mean(self) -> float:
        return self.log_px.mean().item()

    @property
    def mean_stderr(self) -> float:
        """Monte Carlo standard error of the mean over datapoints."""
        return mean_stderr(self.stderr)

    @classmethod
    def concatenate(cls, parts: list[LogLikelihood]) -> LogLikelihood:
        """The estimates of several groups of datapoints, as one result in their order."""
        first = parts[0]
        curve = None
        if first.by_num_samples is not None:
            curve = {
                k: tuple(torch.cat([p.by_num_samples[k][i] for p in parts]) for i in (0, 1))
                for k in first.by_num_samples
            }
        tails = [p.largest_log_weights for p in parts]
        return cls(
            torch.cat([p.log_px for p in parts]),
            torch.cat([p.stderr for p in parts]),
            torch.cat([p.ess for p in parts]),
            first.num_samples,
            by_num_samples=curve,
            largest_log_weights=None if tails[0] is None else torch.cat(tails, dim=1),
            method=first.method,
        )

    def summary(self) -> dict:
        return {
            "log_px": self.mean,
            "stderr": self.mean_stderr,
            "ess_median": self.ess.median().item(),
            **khat_counts(self.khat),
            "num_samples": self.num_samples,
            "num_data": len(self.log_px),
        }


def _check_num_samples(num_samples) -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    return num_samples


def _chunks(total: int, chunk_size: int | None, num_data: int):
    """Chunk sizes summing to ``total``: they depend on K and the batch size only, so that the
    samples drawn (which depend on how a draw is split) do not depend on what is recorded."""
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    size = chunk_size or max(1, ROWS_PER_CHUNK // max(num_data, 1))
    done = 0
    while done < total:
        step = min(size, total - done)
        yield step
        done += step


class _StreamingWeights:
    """Running log-sum-exp, sum of squared weights and the largest weights, per datapoint."""

    def __init__(self, num_data: int, num_samples: int):
        self.num_samples = num_samples
        # PSIS fits its Pareto tail to the largest M weights (M as in arviz.psislw, reff = 1);
        # the rest of the array only needs to sit at or below the cutoff.
        self.tail = math.ceil(min(num_samples / 5.0, 3 * num_samples**0.5)) + 1
        self.max = torch.full((num_data,), -math.inf, dtype=torch.float64)
        self.sum = torch.zeros(num_data, dtype=torch.float64)
        self.sum_sq = torch.zeros(num_data, dtype=torch.float64)
        self.top = torch.empty(0, num_data, dtype=torch.float64)
        self.seen = 0

    def add(self, lw: torch.Tensor) -> None:
        lw = lw.detach().cpu().to(torch.float64)  # the CPU: MPS has no float64
        new_max = torch.maximum(self.max, lw.max(0).values)
        shift = torch.where(
            torch.isfinite(self.max), self.max - new_max, torch.zeros_like(self.max)
        )
        self.sum = self.sum * shift.exp() + (lw - new_max).exp().sum(0)
        self.sum_sq = self.sum_sq * (2 * shift).exp() + (2 * (lw - new_max)).exp().sum(0)
        self.max = new_max
        merged = torch.cat([self.top, lw])
        self.top = merged.topk(min(self.tail, len(merged)), dim=0).values
        self.seen += len(lw)

    def add_recording(self, lw: torch.Tensor, record_at, curve: dict) -> None:
        """:meth:`add`, and the estimate from the first K samples into ``curve[K]`` for each K
        of ``record_at`` these weights reach."""
        start = 0
        for k in record_at:
            if self.seen < k <= self.seen + len(lw) - start:
                cut = start + k - self.seen
                self.add(lw[start:cut])
                start = cut
                curve[k] = self.estimate()
        if start < len(lw):
            self.add(lw[start:])

    def estimate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """log p̂ and its delta-method standard error from the samples seen so far."""
        k = self.seen
        log_px = self.max + self.sum.log() - math.log(k)
        if k == 1:
            return log_px, torch.full_like(log_px, math.nan)
        rel_var = (k * self.sum_sq / self.sum**2 - 1).clamp(min=0) / (k - 1)
        return log_px, rel_var.sqrt()

    def result(self) -> LogLikelihood:
        log_px, stderr = self.estimate()
        ess = self.sum**2 / self.sum_sq
        return LogLikelihood(log_px, stderr, ess, self.num_samples, largest_log_weights=self.top)


def pareto_khat(largest: torch.Tensor, num_samples: int) -> torch.Tensor:
    """k̂ per datapoint with ``arviz.psislw``, from the largest log weights (M+1, N) alone.

    PSIS fits its tail to the weights above the (M+1)-th largest, M = ⌈min(K/5, 3√K)⌉; the
    rest of each length-K row is filled with that cutoff value, which the fit ignores.
    """
    if num_samples < 5:
        return torch.full((largest.shape[1],), math.nan, dtype=torch.float64)
    with warnings.catch_warnings():  # arviz announces its refactor on import
        warnings.simplefilter("ignore", FutureWarning)
        import arviz
    top = largest.T.numpy()  # (N, M + 1), descending
    khat = np.full(len(top), np.nan)  # undefined where a weight is not finite: no tail to fit
    finite = np.flatnonzero(np.isfinite(top).all(axis=1))
    for start in range(0, len(finite), 256):
        at = finite[start : start + 256]
        rows = top[at]
        full = np.repeat(rows[:, -1:], num_samples, axis=1)
        full[:, : rows.shape[1]] = rows
        _, khat[at] = arviz.psislw(full, reff=1.0)
    return torch.from_numpy(khat)


#: The largest rounding step (nats) at which a log weight still means something: where the
#: dtype's spacing at |log w| exceeds it, a log p̂ − ELBO gap, an ESS or a k̂ is rounding noise.
PRECISION_TOLERANCE = 0.1


def largest_abs_log_weight(result: LogLikelihood) -> torch.Tensor:
    """The largest |log w| per datapoint among the weights ``result`` kept (its largest
    ones, which carry log p̂); NaN where a weight is NaN."""
    top = result.largest_log_weights
    if top is None or not top.numel():
        return torch.full((len(result.log_px),), math.nan, dtype=torch.float64)
    return top.abs().amax(0)


def float_spacing(magnitude, dtype: torch.dtype) -> torch.Tensor:
    """The gap between adjacent numbers of ``dtype`` at each ``magnitude`` (float64): the
    finest difference that arithmetic in ``dtype`` can tell apart there, e.g. float32 at 1e26:
    2⁶³ ≈ 9.2e18. The spacing of the dtype's normal numbers (its subnormals are finer)."""
    m = torch.as_tensor(magnitude, dtype=torch.float64).abs()
    return torch.finfo(dtype).eps * torch.exp2(torch.floor(torch.log2(m)))


def precision_lost(
    magnitude, dtype: torch.dtype, tolerance: float = PRECISION_TOLERANCE
) -> torch.Tensor:
    """Per datapoint, whether log weights of size ``magnitude`` (|log w|, nats) computed in
    ``dtype`` are rounded to steps coarser than ``tolerance`` nats: there log p̂ and the ELBO
    are right in their leading digits only, and their difference, the ESS and k̂ (which
    compare weights) are noise. False where ``magnitude`` is not finite (counted apart)."""
    spacing = float_spacing(magnitude, dtype)
    return torch.isfinite(spacing) & (spacing > tolerance)

"""The ELBO per datapoint and its gap to the importance-sampled log p(x), for any Pyro pair.

Since log p(x) = ELBO + KL(q(z | x) ‖ p(z | x)), :func:`elbo_gap` estimates that KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import torch

from ..tables import Table, TabularResult, fmt, fmt_pm, jsonable
from .importance import inspect_pair, log_weights
from .log_likelihood import khat_summary, log_likelihood
from .precision import computing_in, data_device
from .stats import mean_stderr
from .streams import each_datapoint
from .weights import LogLikelihood, _check_num_samples, _chunks


def non_finite_count(values: torch.Tensor) -> int:
    """How many per-datapoint estimates are NaN or infinite (a mean over them is too)."""
    return int((~torch.isfinite(values)).sum())


@dataclass(repr=False)
class ElboEstimate(TabularResult):
    """Per-datapoint ELBO estimates with their Monte Carlo standard errors."""

    elbo: torch.Tensor
    stderr: torch.Tensor
    num_samples: int

    @property
    def mean(self) -> float:
        return self.elbo.mean().item()

    @property
    def mean_stderr(self) -> float:
        return mean_stderr(self.stderr)

    def summary(self) -> dict:
        return {
            "elbo": self.mean,
            "elbo_stderr": self.mean_stderr,
            "num_samples": self.num_samples,
            "num_data": len(self.elbo),
            "non_finite": non_finite_count(self.elbo),
        }

    def to_dict(self) -> dict:
        per_datapoint = {"elbo": self.elbo, "stderr": self.stderr}
        return jsonable({**self.summary(), "per_datapoint": per_datapoint})

    def repr_fields(self) -> dict:
        return {
            "num_data": len(self.elbo),
            "num_samples": self.num_samples,
            "mean": self.mean,
            "mean_stderr": self.mean_stderr,
        }

    def table(self) -> Table:
        rows = [
            ["datapoints", len(self.elbo)],
            ["samples per datapoint", self.num_samples],
            ["ELBO, mean ± MC stderr", fmt_pm(self.mean, self.mean_stderr)],
        ]
        bad = non_finite_count(self.elbo)
        if bad:
            rows.append(["non-finite estimates", bad])
        return Table("ELBO estimate (nats per datapoint)", ["", ""], rows)


def elbo(
    model,
    guide,
    *args,
    num_samples: int = 100,
    objective: str = "trace",
    chunk_size: int | None = None,
    seed: int | None = None,
    datapoint_ids=None,
    precision: str = "fp32",
    **kwargs,
) -> ElboEstimate:
    """The ELBO E_q[log p(x, z) − log q(z | x)] per datapoint, averaged over ``num_samples``.

    ``objective="trace_mean_field"`` uses the analytic KL where one exists (lower variance, same
    expectation). ``seed``, ``datapoint_ids`` and ``precision`` are as for
    :func:`~pyro_vae.log_likelihood`: with a seed, each datapoint's samples come from its own
    stream, whatever the batch.
    """
    _check_num_samples(num_samples)
    if objective not in ("trace", "trace_mean_field"):
        raise ValueError(f"objective must be 'trace' or 'trace_mean_field', got {objective!r}")
    layout = inspect_pair(model, guide, args, kwargs)
    device = data_device(args, kwargs)

    def estimate(args, kwargs, num_data) -> tuple[torch.Tensor, torch.Tensor]:
        total = torch.zeros(num_data, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        with torch.no_grad(), pyro.validation_enabled(False), computing_in(precision, device):
            for k in _chunks(num_samples, chunk_size, num_data):
                values = (
                    log_weights(
                        model,
                        guide,
                        args,
                        kwargs,
                        num_samples=k,
                        layout=layout,
                        analytic_kl=objective == "trace_mean_field",
                    )
                    .cpu()
                    .double()
                )
                total += values.sum(0)
                total_sq += values.pow(2).sum(0)
        return total, total_sq

    if seed is None:
        total, total_sq = estimate(args, kwargs, layout.num_data)
    else:
        sums = [
            estimate(one_args, one_kwargs, 1)
            for one_args, one_kwargs in each_datapoint(
                model, guide, args, kwargs, seed, datapoint_ids
            )
        ]
        total, total_sq = (torch.cat(column) for column in zip(*sums, strict=True))
    mean = total / num_samples
    if num_samples > 1:
        var = ((total_sq - num_samples * mean**2) / (num_samples - 1)).clamp(min=0)
        stderr = (var / num_samples).sqrt()
    else:
        stderr = torch.full_like(mean, math.nan)
    return ElboEstimate(mean, stderr, num_samples)


@dataclass(repr=False)
class ElboGap(TabularResult):
    """ELBO, log p̂(x) and gap = log p̂(x) − ELBO ≈ KL(q(z | x) ‖ p(z | x)), per datapoint."""

    elbo: ElboEstimate
    log_likelihood: LogLikelihood

    @property
    def gap(self) -> torch.Tensor:
        return self.log_likelihood.log_px - self.elbo.elbo

    @property
    def stderr(self) -> torch.Tensor:
        # The two estimates use independent samples, so their variances add.
        return (self.elbo.stderr**2 + self.log_likelihood.stderr**2).sqrt()

    @property
    def mean(self) -> float:
        return self.gap.mean().item()

    @property
    def mean_stderr(self) -> float:
        return mean_stderr(self.stderr)

    def summary(self) -> dict:
        return {
            "elbo": self.elbo.mean,
            "elbo_stderr": self.elbo.mean_stderr,
            "log_px": self.log_likelihood.mean,
            "log_px_stderr": self.log_likelihood.mean_stderr,
            "gap": self.mean,
            "gap_stderr": self.mean_stderr,
        }

    def to_dict(self) -> dict:
        """:meth:`summary`, the sample sizes and k̂ counts, and the per-datapoint values."""
        ll = self.log_likelihood
        per_datapoint = {
            "elbo": self.elbo.elbo,
            "elbo_stderr": self.elbo.stderr,
            "log_px": ll.log_px,
            "log_px_stderr": ll.stderr,
            "gap": self.gap,
            "gap_stderr": self.stderr,
        }
        return jsonable(
            {
                **self.summary(),
                "num_data": len(self.gap),
                "num_samples": ll.num_samples,
                "elbo_samples": self.elbo.num_samples,
                **khat_summary(ll),
                "per_datapoint": per_datapoint,
            }
        )

    def repr_fields(self) -> dict:
        return {
            "num_data": len(self.gap),
            "elbo": self.elbo.mean,
            "log_px": self.log_likelihood.mean,
            "gap": self.mean,
            "gap_stderr": self.mean_stderr,
        }

    def table(self) -> Table:
        ll = self.log_likelihood
        rows = [
            ["log p̂(x)", fmt_pm(ll.mean, ll.mean_stderr), f"K = {ll.num_samples}"],
            [
                "ELBO",
                fmt_pm(self.elbo.mean, self.elbo.mean_stderr),
                f"{self.elbo.num_samples} draws",
            ],
            ["gap", fmt_pm(self.mean, self.mean_stderr), "≈ KL(q(z|x) ‖ p(z|x))"],
        ]
        num_data = len(self.gap)
        unreliable = fmt(khat_summary(ll)["khat_above_0.7"], "d")
        notes = [f"Pareto k̂ > 0.7 (log p̂ unreliable) on {unreliable} of {num_data} datapoints"]
        bad = non_finite_count(self.gap)
        if bad:
            notes.append(f"{bad} of {num_data} datapoints have a non-finite gap")
        title = f"ELBO gap over {num_data} datapoints (nats per datapoint)"
        return Table(title, ["", "mean ± MC stderr", ""], rows, notes, align="lrl")


def elbo_gap(
    model,
    guide,
    *args,
    num_samples: int = 1000,
    elbo_samples: int | None = None,
    objective: str = "trace",
    chunk_size: int | None = None,
    **kwargs,
) -> ElboGap:
    """ELBO and importance-sampled log p̂(x) side by side; ``elbo_samples`` defaults to K."""
    return ElboGap(
        elbo(
            model,
            guide,
            *args,
            num_samples=elbo_samples or num_samples,
            objective=objective,
            chunk_size=chunk_size,
            **kwargs,
        ),
        log_likelihood(
            model, guide, *args, num_samples=num_samples, chunk_size=chunk_size, **kwargs
        ),
    )

"""The ELBO per datapoint and its gap to the importance-sampled log p(x), for any Pyro pair.

Since log p(x) = ELBO + KL(q(z | x) ‖ p(z | x)), :func:`elbo_gap` estimates that KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pyro
import torch

from ..results.estimand import LOG_PX, Estimand
from ..results.result import Result
from ..results.stats import difference_stderr, mean_stderr
from .importance import log_weights
from .layout import inspect_pair
from .log_likelihood import log_likelihood
from .particles import particles_of
from .precision import computing_in, data_device
from .streams import each_datapoint
from .weights import LogLikelihood, _check_num_samples, _chunks

#: The ELBO estimators :func:`elbo` offers: the plain Monte Carlo ELBO, and TraceMeanField's
#: (the KL term in closed form where one exists) → whether the KL is analytic.
ESTIMATORS = {"trace": False, "trace_mean_field": True}


@dataclass(frozen=True, repr=False, eq=False)
class ElboEstimate(Result):
    """Per-datapoint ELBO estimates with their Monte Carlo standard errors; the ELBO is a lower
    bound on the ``estimand``'s log density. Means are over the datapoints whose ELBO is
    finite."""

    elbo: torch.Tensor
    stderr: torch.Tensor
    num_samples: int
    estimand: Estimand = LOG_PX
    particles: str = "vectorized"  # as for LogLikelihood

    @property
    def num_data(self) -> int:
        return len(self.elbo)

    @property
    def usable(self) -> torch.Tensor:
        return torch.isfinite(self.elbo)

    @property
    def mean(self) -> float:
        used = self.elbo[self.usable]
        return used.mean().item() if used.numel() else math.nan

    @property
    def mean_stderr(self) -> float:
        return mean_stderr(self.stderr[self.usable])

    @classmethod
    def concatenate(cls, parts: list[ElboEstimate]) -> ElboEstimate:
        """The estimates of several groups of datapoints, as one result in their order."""
        return replace(
            parts[0],
            elbo=torch.cat([p.elbo for p in parts]),
            stderr=torch.cat([p.stderr for p in parts]),
        )


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
    data_plate: str | None = None,
    **kwargs,
) -> ElboEstimate:
    """The ELBO E_q[log p(x, z) − log q(z | x)] per datapoint, averaged over ``num_samples``.

    ``objective="trace_mean_field"`` uses the analytic KL where one exists (lower variance, same
    expectation). ``seed``, ``datapoint_ids`` and ``precision`` are as for
    :func:`~pyro_vae.log_likelihood`: with a seed, each datapoint's samples come from its own
    stream, whatever the batch.
    """
    _check_num_samples(num_samples)
    if objective not in ESTIMATORS:
        raise ValueError(f"objective must be 'trace' or 'trace_mean_field', got {objective!r}")
    layout = inspect_pair(model, guide, args, kwargs, data_plate=data_plate)
    device = data_device(args, kwargs)

    def sums(args, kwargs, num_data) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ_k and Σ_k² of the ``num_samples`` single-sample ELBOs of each datapoint."""
        total = torch.zeros(num_data, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        with torch.no_grad(), pyro.validation_enabled(False), computing_in(precision, device):
            for k in _chunks(num_samples, chunk_size, num_data):
                values = log_weights(
                    model,
                    guide,
                    args,
                    kwargs,
                    num_samples=k,
                    layout=layout,
                    analytic_kl=ESTIMATORS[objective],
                    enumerated="expectation",
                )
                values = values.cpu().double()
                total += values.sum(0)
                total_sq += values.pow(2).sum(0)
        return total, total_sq

    if seed is None:
        total, total_sq = sums(args, kwargs, layout.num_data)
    else:
        streams = each_datapoint(
            model, guide, args, kwargs, layout, seed, datapoint_ids, "guide", data_plate
        )
        parts = [sums(one_args, one_kwargs, 1) for one_args, one_kwargs in streams]
        total, total_sq = (torch.cat(column) for column in zip(*parts, strict=True))
    mean, stderr = _mean_and_stderr(total, total_sq, num_samples)
    return ElboEstimate(mean, stderr, num_samples, layout.estimand, particles_of(layout))


def _mean_and_stderr(total, total_sq, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of n values from their sum and sum of squares, and its standard error (NaN for
    a single value)."""
    mean = total / n
    if n == 1:
        return mean, torch.full_like(mean, math.nan)
    var = ((total_sq - n * mean**2) / (n - 1)).clamp(min=0)
    return mean, (var / n).sqrt()


@dataclass(frozen=True, repr=False, eq=False)
class ElboGap(Result):
    """ELBO, log p̂(x) and gap = log p̂(x) − ELBO ≈ KL(q(z | x) ‖ p(z | x)), per datapoint; the
    means are over the datapoints usable in both estimates."""

    elbo: ElboEstimate
    log_likelihood: LogLikelihood

    @classmethod
    def concatenate(cls, parts: list[ElboGap]) -> ElboGap:
        """The gaps of several groups of datapoints, as one result in their order."""
        return cls(
            ElboEstimate.concatenate([p.elbo for p in parts]),
            LogLikelihood.concatenate([p.log_likelihood for p in parts]),
        )

    @property
    def estimand(self) -> Estimand:
        return self.log_likelihood.estimand

    @property
    def gap(self) -> torch.Tensor:
        return self.log_likelihood.log_px - self.elbo.elbo

    @property
    def stderr(self) -> torch.Tensor:
        # The two estimates use independent samples, so their variances add.
        return difference_stderr(self.log_likelihood.stderr, self.elbo.stderr)

    @property
    def num_data(self) -> int:
        return len(self.elbo.elbo)

    @property
    def usable(self) -> torch.Tensor:
        return self.elbo.usable & self.log_likelihood.usable

    @property
    def mean(self) -> float:
        used = self.gap[self.usable]
        return used.mean().item() if used.numel() else math.nan

    @property
    def mean_stderr(self) -> float:
        return mean_stderr(self.stderr[self.usable])


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
    bound = elbo(
        model,
        guide,
        *args,
        num_samples=elbo_samples or num_samples,
        objective=objective,
        chunk_size=chunk_size,
        **kwargs,
    )
    ll = log_likelihood(
        model, guide, *args, num_samples=num_samples, chunk_size=chunk_size, **kwargs
    )
    return ElboGap(bound, ll)

r"""Per-time-step estimates of a sequence pair: where, along a sequence, the likelihood and the
ELBO's terms come from.

For a state-space pair the log weight of one sample splits over time steps,
:math:`\log w = \sum_t w_t` with
:math:`w_t = \log p(x_t \mid z_t) + \log p(z_t \mid z_{t-1}) - \log q(z_t \mid z_{t-1}, x)`.
The partial sums are importance weights of the prefixes: q's marginal over
:math:`z_{1:t}` is a proposal for :math:`p(z_{1:t} \mid x_{1:t})` (any guide, also one whose
rnn reads the whole sequence), so from the same K samples

.. math::

    \log \hat p(x_{1:t}) = \log \frac1K \sum_k \exp \sum_{s \le t} w_{s,k}

is a consistent estimate for every t, and its increments
:math:`\log \hat p(x_t \mid x_{<t})` split :math:`\log \hat p(x_{1:T})` over the steps. The
ELBO splits exactly, as :math:`\mathbb{E}_q \log p(x_t \mid z_t) - \mathrm{KL}_t`,
:math:`\mathrm{KL}_t = \mathbb{E}_q[\log q(z_t \mid \cdot) - \log p(z_t \mid z_{t-1})]`,
both estimated by the mean over the K samples.

Sites are grouped by the trailing number of their names (``z_3``, ``obs_x_3``: step 3), the
convention of Pyro's sequence examples; ``step_of=`` takes another. A site without one (a
static latent) counts at step 0, before the first. Steps a datapoint does not have (masked
past its length) are marked absent and left out of the means.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ModelGuideError
from ..results.estimand import Estimand
from ..results.result import Result
from .importance import log_weight_terms
from .layout import inspect_pair

_TRAILING_NUMBER = re.compile(r"(\d+)$")


def step_number(site: str) -> int:
    """The time step of a site: the number its name ends with (``x_12`` → 12), else 0."""
    match = _TRAILING_NUMBER.search(site)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True, repr=False, eq=False)
class StepwiseEstimate(Result):
    """Per datapoint and time step ``(N, S)``, for the steps ``steps`` (S of them).

    :ivar log_px_prefix: log p̂(x_{1:t}).
    :ivar reconstruction: E_q log p(x_t | z_t).
    :ivar kl: KL_t, E_q[log q(z_t | ·) − log p(z_t | ·)], sampled.
    :ivar present: whether the datapoint has the step (not masked past its length).
    """

    steps: tuple[int, ...]
    log_px_prefix: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    present: torch.Tensor
    num_samples: int
    estimand: Estimand

    @property
    def log_px_step(self) -> torch.Tensor:
        """log p̂(x_t | x_{<t}): the increments of :attr:`log_px_prefix` (sum: log p̂(x))."""
        previous = torch.nn.functional.pad(self.log_px_prefix[:, :-1], (1, 0))
        return self.log_px_prefix - previous

    @property
    def elbo_step(self) -> torch.Tensor:
        return self.reconstruction - self.kl

    @property
    def gap_step(self) -> torch.Tensor:
        """log p̂(x_t | x_{<t}) − ELBO_t: where the gap builds up (summed: log p̂(x) − ELBO)."""
        return self.log_px_step - self.elbo_step

    def by_step(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over the datapoints that have each step, ``(S,)`` (NaN where none has)."""
        present = self.present.to(values.dtype)
        return (values * present).sum(0) / present.sum(0)

    @classmethod
    def concatenate(cls, parts: list[StepwiseEstimate]) -> StepwiseEstimate:
        """The estimates of several batches of datapoints as one (the same steps and K)."""
        first = parts[0]
        if any(p.steps != first.steps for p in parts):
            raise ModelGuideError("the batches have different time steps; evaluate them apart")

        def joined(name):
            return torch.cat([getattr(p, name) for p in parts])

        fields = ("log_px_prefix", "reconstruction", "kl", "present")
        return cls(first.steps, *(joined(n) for n in fields), first.num_samples, first.estimand)

    def totals(self) -> dict[str, float]:
        """The per-sequence sums of the per-step values, averaged over the datapoints:
        ``log_px`` (= the IS estimate of log p(x) from these samples), ``elbo``,
        ``reconstruction``, ``kl``, ``gap``."""
        present = self.present.to(self.log_px_prefix.dtype)
        per_step = {
            "log_px": self.log_px_step,
            "elbo": self.elbo_step,
            "reconstruction": self.reconstruction,
            "kl": self.kl,
            "gap": self.gap_step,
        }
        return {name: float((v * present).sum(1).mean()) for name, v in per_step.items()}

    @property
    def table_rows(self) -> dict[str, torch.Tensor]:
        """The per-step means the views show, by column name."""
        return {
            "log p̂(x_t | x_<t)": self.by_step(self.log_px_step),
            "ELBO_t": self.by_step(self.elbo_step),
            "E log p(x_t | z_t)": self.by_step(self.reconstruction),
            "KL_t": self.by_step(self.kl),
            "gap_t": self.by_step(self.gap_step),
            "datapoints": self.present.sum(0).to(torch.float64),
        }


def stepwise_estimate(
    model,
    guide,
    *args,
    num_samples: int = 100,
    chunk_size: int | None = None,
    step_of: Callable[[str], int] = step_number,
    data_plate: str | None = None,
    **kwargs,
) -> StepwiseEstimate:
    """Per-datapoint, per-time-step log p̂, ELBO terms and gap of any sequence pair
    (sites named by step, :func:`step_number`), from ``num_samples`` guide samples per
    datapoint, ``chunk_size`` at a time (default: about 16384 / N)."""
    layout = inspect_pair(model, guide, args, kwargs, data_plate=data_plate)
    chunk = chunk_size or max(1, 16384 // max(layout.num_data, 1))
    state = None
    for start in range(0, num_samples, chunk):
        k = min(chunk, num_samples - start)
        with torch.no_grad():  # an estimate, not a loss: no graph to keep across the steps
            terms = log_weight_terms(model, guide, args, kwargs, num_samples=k, layout=layout)
        state = _accumulate(state, _by_step(terms, step_of), k)
    steps, lse, recon, kl, present = state
    log_px_prefix = lse - math.log(num_samples)
    return StepwiseEstimate(
        steps,
        log_px_prefix,
        recon / num_samples,
        kl / num_samples,
        present,
        num_samples,
        layout.estimand,
    )


def _by_step(terms, step_of) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(steps, weight, reconstruction, kl)``: each ``(K, N, S)``, the terms summed by step."""
    steps = tuple(sorted({step_of(t.name) for t in terms}))
    if len(steps) < 2:
        raise ModelGuideError(
            f"no time steps in the pair's site names ({', '.join(t.name for t in terms)}); "
            f"name them by step (z_1, x_1, …) or give step_of="
        )
    index = {s: i for i, s in enumerate(steps)}
    shape = (*terms[0].value.shape, len(steps))
    weight, recon, kl = (terms[0].value.new_zeros(shape, dtype=torch.float64) for _ in range(3))
    for term in terms:
        i, value = index[step_of(term.name)], term.value.detach().double()
        weight[..., i] += value
        (recon if term.observed else kl)[..., i] += value if term.observed else -value
    return steps, weight, recon, kl


def _accumulate(state, by_step, k: int):
    """Fold one chunk of ``k`` samples into the running log-sum-exp of the prefix weights,
    the sums of the reconstruction and KL terms, and which steps each datapoint has."""
    steps, weight, recon, kl = by_step
    lse = torch.logsumexp(weight.cumsum(-1), dim=0)
    present = (weight != 0).any(0) | (recon != 0).any(0)
    chunk = (steps, lse, recon.sum(0), kl.sum(0), present)
    if state is None:
        return chunk
    if state[0] != steps:
        raise ModelGuideError(f"the pair's steps changed between runs: {state[0]} and {steps}")
    return (
        steps,
        torch.logaddexp(state[1], lse),
        state[2] + chunk[2],
        state[3] + chunk[3],
        state[4] | present,
    )

r"""Annealed importance sampling (AIS) of log p(x), and bidirectional Monte Carlo (BDMC).

AIS (Neal 2001; for VAEs, Wu et al. 2017, "On the Quantitative Analysis of Decoder-Based
Generative Models") moves K chains per datapoint from the guide to the posterior through the
intermediate densities

.. math:: f_t(z) = q(z \mid x)^{1 - \beta_t} \, p(x, z)^{\beta_t}, \qquad
          0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

with a Markov transition leaving each :math:`f_t` invariant, and weights each chain by

.. math:: \log w = \sum_{t=1}^T (\beta_t - \beta_{t-1})
          \big(\log p(x, z_{t-1}) - \log q(z_{t-1} \mid x)\big),

so that :math:`\mathbb E[w] = p(x)`: :math:`\log \frac1K \sum_k w_k` is a stochastic lower bound
on log p(x), as importance sampling is, but with a proposal that has been moved towards the
posterior. The transitions are Hamiltonian Monte Carlo (``leapfrog_steps`` steps, identity mass),
one per intermediate density, with a step size per datapoint adapted as the chains run: × 1.02
after a step whose acceptance rate over the datapoint's chains exceeds ``target_accept``
(0.65), × 0.98 otherwise, as Wu et al. do. The schedule is the sigmoidal one of Grosse et al.
(2015), :math:`\beta_t \propto \sigma(\delta(2t/T - 1))` rescaled to [0, 1], δ = 4, which spends
more steps near both ends.

BDMC (Grosse, Ghahramani & Adams 2015, "Sandwiching the marginal likelihood using bidirectional
Monte Carlo") simulates data (z*, x) from the model, so that z* is an exact posterior sample of
x, and runs AIS backwards from it, :math:`\beta` from 1 to 0. The reverse weights have
expectation 1/p(x), so :math:`-\log \frac1K \sum_k w^{\text{rev}}_k` is a stochastic upper bound;
the forward estimate is the lower one, and the two sandwich log p(x).

Both work on any Pyro pair whose latents are real-valued and sit in ``pyro.plate("data")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.poutine as poutine
import torch
from tqdm.auto import tqdm

from ..devices import module_device
from ..errors import ModelGuideError
from ..results.choices import Method, Proposal
from ..results.estimand import LOG_PX, Estimand
from ..results.result import Result
from ..results.stats import difference_stderr
from .latents import Latents, continuous_latents, log_densities, sample_latents
from .layout import sample_sites
from .particles import particles_of
from .weights import LogLikelihood, _check_num_samples, _StreamingWeights

SIGMOID_DELTA = 4.0


def schedule(num_steps: int, delta: float = SIGMOID_DELTA) -> torch.Tensor:
    """β_0 = 0, …, β_T = 1 on the sigmoidal schedule of Grosse et al. (2015)."""
    t = torch.linspace(-delta, delta, num_steps + 1, dtype=torch.float64)
    s = torch.sigmoid(t)
    return (s - s[0]) / (s[-1] - s[0])


@dataclass(frozen=True)
class HMC:
    """The transitions of AIS: ``leapfrog_steps`` per transition, the initial ``step_size``,
    adapted per datapoint towards ``target_accept``."""

    leapfrog_steps: int = 10
    step_size: float = 0.05
    target_accept: float = 0.65

    def __post_init__(self):
        if not isinstance(self.leapfrog_steps, int) or self.leapfrog_steps < 1:
            raise ValueError(
                f"leapfrog_steps must be a positive integer, got {self.leapfrog_steps!r}"
            )
        if not 0 < self.step_size < math.inf:
            raise ValueError(f"step_size must be a positive number, got {self.step_size!r}")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target_accept must lie in (0, 1), got {self.target_accept!r}")


class _Chains:
    """K chains per datapoint on one annealing path of the pair ``program``."""

    def __init__(self, program: tuple, latents: Latents, proposal: Proposal, hmc: HMC):
        self.program, self.latents, self.proposal, self.hmc = program, latents, proposal, hmc
        num_data = latents.layout.num_data
        self.step_size = torch.full((num_data,), float(hmc.step_size))
        self.accepted = torch.zeros(num_data, dtype=torch.float64)  # sum of acceptance rates

    def _potential(self, z: torch.Tensor, beta: float):
        """−log f_β(z) (K, N) and its gradient; also log p − log r, the weight increment."""
        z = z.detach().requires_grad_()
        model, guide, args, kwargs = self.program
        values = self.latents.unflatten(z)
        densities = log_densities(
            model, guide, args, kwargs, self.latents, values, self.proposal.uses_guide
        )
        log_joint, log_r = densities.joint, densities.proposal(self.proposal)
        log_f = (1 - beta) * log_r + beta * log_joint
        (grad,) = torch.autograd.grad(log_f.sum(), z)
        return -log_f.detach(), -grad, (log_joint - log_r).detach()

    def move(self, z: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One HMC transition leaving f_β invariant, adapting the step size per datapoint;
        returns the new values and log p − log r at the old ones (the weight increment)."""
        eps = self.step_size.to(z)[None, :, None]
        u0, grad, increment = self._potential(z, beta)
        momentum = torch.randn_like(z)
        p = momentum - 0.5 * eps * grad
        proposal = z
        for step in range(self.hmc.leapfrog_steps):
            proposal = proposal + eps * p
            u1, grad, _ = self._potential(proposal, beta)
            if step < self.hmc.leapfrog_steps - 1:
                p = p - eps * grad
        p = p - 0.5 * eps * grad
        log_ratio = u0 - u1 + 0.5 * (momentum.pow(2).sum(-1) - p.pow(2).sum(-1))
        log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)  # a step that left the support
        accept = torch.rand_like(log_ratio).log() < log_ratio
        rate = accept.float().mean(0).cpu().double()  # bookkeeping on the CPU, in float64
        self.accepted += rate
        grow = (rate > self.hmc.target_accept).to(self.step_size.dtype)
        self.step_size = (self.step_size * (0.98 + 0.04 * grow)).clamp(1e-4, 1.0)
        return torch.where(accept[..., None], proposal.detach(), z), increment

    def anneal(self, z: torch.Tensor, betas: torch.Tensor, progress, desc: str) -> torch.Tensor:
        """Run the chains along ``betas`` (increasing, or decreasing for reverse AIS) and
        return their log weights (K, N): at step t the increment (β_t − β_{t−1})(log p − log r)
        at the values reached so far, then a transition leaving f_{β_t} invariant."""
        log_w = torch.zeros(z.shape[:2], dtype=torch.float64)
        steps = range(1, len(betas))
        for t in tqdm(steps, disable=None if progress is None else not progress, desc=desc):
            z, increment = self.move(z, float(betas[t]))
            log_w += (betas[t] - betas[t - 1]) * increment.cpu().double()
        return log_w


def _check_steps(num_steps) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    return num_steps


def ais_log_likelihood(
    model,
    guide,
    args=(),
    kwargs=None,
    *,
    num_samples: int = 16,
    num_steps: int = 500,
    proposal: str = "guide",
    leapfrog_steps: int = 10,
    step_size: float = 0.05,
    target_accept: float = 0.65,
    progress: bool | None = None,
    data_plate: str | None = None,
) -> LogLikelihood:
    """AIS estimate of log p(x) per datapoint with ``num_samples`` chains and ``num_steps``
    intermediate densities; the result's stderr, ESS and k̂ are those of the final weights."""
    _check_num_samples(num_samples)
    _check_steps(num_steps)
    hmc = HMC(leapfrog_steps, step_size, target_accept)
    kwargs = kwargs or {}
    proposal = Proposal.of(proposal)
    latents = continuous_latents(model, guide, args, kwargs, proposal, "AIS", data_plate)
    return _annealed(
        (model, guide, args, kwargs), latents, proposal, hmc, num_samples, num_steps, progress
    )


def _annealed(
    program: tuple,
    latents: Latents,
    proposal: Proposal,
    hmc: HMC,
    num_samples: int,
    num_steps: int,
    progress: bool | None,
) -> LogLikelihood:
    """The AIS estimate of :func:`ais_log_likelihood` for the pair ``program`` = ``(model,
    guide, args, kwargs)``, whose ``latents`` are found and checked."""
    model, guide, args, kwargs = program
    chains = _Chains(program, latents, proposal, hmc)
    with poutine.block(), torch.no_grad():
        start = sample_latents(model, guide, args, kwargs, latents, num_samples, proposal)
    with poutine.block():
        log_w = chains.anneal(latents.flatten(start), schedule(num_steps), progress, "AIS")
    stream = _StreamingWeights(latents.layout.num_data, num_samples)
    stream.add(log_w)
    details = {
        "num_steps": num_steps,
        "leapfrog_steps": hmc.leapfrog_steps,
        "acceptance": (chains.accepted / num_steps).float(),
        "step_size": chains.step_size,
    }
    # The weights are summed in float64 from increments computed in the pair's own dtype.
    return stream.result(
        method=Method.AIS,
        details=details,
        estimand=latents.layout.estimand,
        weight_dtype=start[latents.names[0]].dtype,
        particles=particles_of(latents.layout),
    )


@dataclass(frozen=True, repr=False, eq=False)
class BDMC(Result):
    """Stochastic bounds on log p(x) of data simulated from the model (float64, per datapoint):
    ``lower`` from forward AIS, ``upper`` from reverse AIS started at the exact posterior
    sample ``latents`` of each simulated datapoint ``data``."""

    lower: torch.Tensor
    upper: torch.Tensor
    lower_stderr: torch.Tensor
    upper_stderr: torch.Tensor
    data: torch.Tensor
    latents: dict[str, torch.Tensor]
    num_samples: int
    num_steps: int
    estimand: Estimand = LOG_PX

    @property
    def gap(self) -> torch.Tensor:
        """upper − lower: how far apart the bounds are, per datapoint (0 when AIS is exact)."""
        return self.upper - self.lower

    @property
    def gap_stderr(self) -> torch.Tensor:
        return difference_stderr(self.lower_stderr, self.upper_stderr)


def _simulate(model, num_data: int, data_shape, device) -> tuple[torch.Tensor, dict]:
    """Data simulated from ``model`` (called with a placeholder batch on ``device``), and its
    latents."""
    placeholder = torch.zeros(num_data, *data_shape, device=device)
    observed = poutine.trace(model).get_trace(placeholder)
    names = [n for n, s in observed.nodes.items() if s["type"] == "sample" and s["is_observed"]]
    if len(names) != 1:
        raise ModelGuideError(f"bdmc simulates one observed site, the model has {names}")
    with torch.no_grad():
        trace = poutine.trace(poutine.uncondition(model)).get_trace(placeholder)
    data = trace.nodes[names[0]]["value"]
    if data.shape != placeholder.shape:
        raise ModelGuideError(
            f"the observed site '{names[0]}' has shape {tuple(data.shape)}, not that of the "
            f"data argument {tuple(placeholder.shape)}; bdmc needs obs=x"
        )
    latents = {s["name"]: s["value"] for s in sample_sites(trace) if s["name"] != names[0]}
    return data, latents


def _simulation_setting(model, data_shape, device) -> tuple[tuple, object]:
    """One datapoint's shape and the device to simulate on: given, or a spec-built model's."""
    vae = getattr(model, "__self__", None)
    if data_shape is None:
        data_shape = getattr(vae, "data_shape", None)
        if data_shape is None:
            raise ValueError("bdmc needs data_shape= (one datapoint's shape) to simulate data")
    if device is None:
        device = module_device(vae) if isinstance(vae, torch.nn.Module) else "cpu"
    return tuple(data_shape), device


def bdmc(
    model,
    guide,
    *,
    num_data: int,
    num_samples: int = 16,
    num_steps: int = 500,
    data_shape=None,
    leapfrog_steps: int = 10,
    step_size: float = 0.05,
    target_accept: float = 0.65,
    progress: bool | None = None,
    device=None,
) -> BDMC:
    """Sandwich log p(x) on ``num_data`` datapoints simulated from ``model``.

    :param data_shape: the shape of one datapoint (a spec-built model knows its own).
    :param device: where to simulate the data (a spec-built model's own device by default).
    """
    data_shape, device = _simulation_setting(model, data_shape, device)
    _check_num_samples(num_samples)
    _check_steps(num_steps)
    hmc = HMC(leapfrog_steps, step_size, target_accept)
    data, exact = _simulate(model, num_data, data_shape, device)
    program = (model, guide, (data,), {})
    # One look at the latents serves both directions (its errors name the forward AIS).
    latents = continuous_latents(*program, Proposal.GUIDE, "AIS")
    forward = _annealed(program, latents, Proposal.GUIDE, hmc, num_samples, num_steps, progress)
    chains = _Chains(program, latents, Proposal.GUIDE, hmc)
    start = latents.flatten(
        {n: exact[n].expand(num_samples, *exact[n].shape) for n in latents.names}
    )
    with poutine.block():
        log_w = chains.anneal(start, schedule(num_steps).flip(0), progress, "reverse AIS")
    # E[w_rev] = 1/p(x): −log of its average bounds log p(x) from above.
    reverse = _StreamingWeights(num_data, num_samples)
    reverse.add(log_w)
    log_inverse, stderr = reverse.estimate()
    return BDMC(
        forward.log_px,
        -log_inverse,
        forward.stderr,
        stderr,
        data,
        {n: exact[n] for n in latents.names},
        num_samples,
        num_steps,
        forward.estimand,
    )

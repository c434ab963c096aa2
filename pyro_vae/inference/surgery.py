r"""What the KL term is made of, and which latent dimensions are used.

**ELBO surgery** (Hoffman & Johnson 2016, "ELBO surgery: yet another way to carve up the
variational evidence lower bound"). Over the N datapoints given, with the aggregate posterior
:math:`\bar q(z) = \frac1N \sum_n q(z \mid x_n)`,

.. math:: \underbrace{\frac1N \sum_n \mathrm{KL}\big(q(z \mid x_n) \,\|\, p(z)\big)}_{
              \text{average KL}}
        = \underbrace{\mathrm{I}_q[x; z]}_{\text{index-code mutual information}}
        + \underbrace{\mathrm{KL}\big(\bar q(z) \,\|\, p(z)\big)}_{\text{marginal KL}},

with :math:`0 \le \mathrm I_q \le \log N`. The marginal KL is what a better prior could remove:
it is 0 when p(z) is the aggregate posterior, the prior that maximizes the ELBO (which the
VampPrior approximates). All three are estimated from the same draws
:math:`z \sim q(z \mid x_n)`, S per datapoint, with
:math:`\log \bar q(z) = \operatorname{logsumexp}_m \log q(z \mid x_m) - \log N` evaluated against
every datapoint (in blocks); the standard errors are Monte Carlo, over the draws.

**Latent usage.** Per latent dimension j, the KL between the marginals
:math:`q(z_j \mid x)` and :math:`p(z_j)` averaged over the datapoints, and the activity
:math:`A_j = \mathrm{Cov}_x\big(\mathbb E_{q(z \mid x)}[z_j]\big)`; a dimension is active when
:math:`A_j > 0.01` (Burda et al. 2016). Few active units, or KLs near 0, are posterior collapse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch
from torch.distributions import Independent, Normal

from ..results.estimand import LOG_PX, Estimand
from ..results.result import Result
from ..results.stats import mean_stderr
from .latents import continuous_latents, log_densities, program_log_density, sample_latents
from .particles import Particles
from .weights import ROWS_PER_CHUNK

#: A dimension is active when the variance over datapoints of its posterior mean exceeds this.
ACTIVE_THRESHOLD = 0.01
#: Draws × datapoints evaluated at once against the aggregate posterior.
PAIRS_PER_BLOCK = 1 << 22


@dataclass(frozen=True, repr=False, eq=False)
class ElboSurgery(Result):
    """The average KL split into mutual information and marginal KL (nats, with Monte Carlo
    standard errors), over ``num_data`` datapoints with ``num_samples`` draws each; the KL is
    taken against the prior the ``estimand`` names (conditional or not)."""

    average_kl: float
    average_kl_stderr: float
    marginal_kl: float
    marginal_kl_stderr: float
    mutual_information: float
    mutual_information_stderr: float
    num_data: int
    num_samples: int
    kl_per_datapoint: torch.Tensor  # (N,) float64
    estimand: Estimand = LOG_PX
    summed_out: tuple[str, ...] = ()  # discrete latents summed out of every density

    @property
    def log_num_data(self) -> float:
        """log N, the largest mutual information N datapoints can carry."""
        return math.log(self.num_data)


def _aggregate_log_density(guide, args, kwargs, latents, values) -> torch.Tensor:
    """log q̄(z) = logsumexp_m log q(z | x_m) − log N for each draw ``values`` (P, N): every
    draw against every datapoint, a block of draws at a time."""
    flat = latents.flatten(values).reshape(-1, latents.size)  # (P·N, D) draws
    layout, n = latents.layout, latents.layout.num_data
    pairs = PAIRS_PER_BLOCK if layout.vectorized else ROWS_PER_CHUNK  # replicated: rows run
    pairs = max(1, pairs // layout.enumerated_values)  # each pair runs once per joint value
    out = []
    for part in flat.split(max(1, pairs // n)):
        particles = Particles(layout, len(part))
        z = part[:, None, :] if particles.vectorized else part[:, None, :].expand(-1, n, -1)
        z = {k: particles.to_program(v) for k, v in latents.unflatten(z).items()}
        log_q = program_log_density(guide, args, kwargs, latents, z, particles)
        out.append(torch.logsumexp(log_q.cpu().double(), -1) - math.log(n))
    return torch.cat(out).reshape(values[latents.names[0]].shape[:2])


def elbo_surgery(
    model, guide, *args, num_samples: int = 32, data_plate: str | None = None, **kwargs
) -> ElboSurgery:
    """Average KL, mutual information and marginal KL over the datapoints in ``args``."""
    latents = continuous_latents(model, guide, args, kwargs, "guide", "ELBO surgery", data_plate)
    with torch.no_grad(), poutine.block(), pyro.validation_enabled(False):
        values = sample_latents(model, guide, args, kwargs, latents, num_samples)
        densities = log_densities(model, guide, args, kwargs, latents, values)
        log_q, log_p = densities.guide.cpu().double(), densities.prior.cpu().double()
        log_agg = _aggregate_log_density(guide, args, kwargs, latents, values)

    def mean_and_stderr(terms: torch.Tensor) -> tuple[float, float, torch.Tensor]:
        per_datapoint = terms.mean(0)
        stderr = terms.std(0) / math.sqrt(num_samples) if num_samples > 1 else terms[0] * math.nan
        return per_datapoint.mean().item(), mean_stderr(stderr), per_datapoint

    kl, kl_se, kl_n = mean_and_stderr(log_q - log_p)
    mi, mi_se, _ = mean_and_stderr(log_q - log_agg)
    marginal, marginal_se, _ = mean_and_stderr(log_agg - log_p)
    return ElboSurgery(
        kl,
        kl_se,
        marginal,
        marginal_se,
        mi,
        mi_se,
        latents.layout.num_data,
        num_samples,
        kl_n,
        latents.estimand,
        latents.discrete,
    )


@dataclass(frozen=True, repr=False, eq=False)
class LatentUsage(Result):
    """Per latent: the KL of each dimension's marginals (averaged over datapoints; absent where
    the marginals have no closed form, see ``notes``), each dimension's activity, and how many
    dimensions are active."""

    kl_per_dim: dict[str, torch.Tensor]
    activity: dict[str, torch.Tensor]
    active_units: dict[str, int]
    threshold: float
    notes: dict[str, str]
    estimand: Estimand = LOG_PX
    conditioned_on: tuple[str, ...] = ()  # discrete latents held at the guide's draws

    def kl_total(self, name: str) -> float | None:
        """The summed KL of latent ``name`` (None where it has no closed form)."""
        return self.kl_per_dim[name].sum().item() if name in self.kl_per_dim else None


def _marginals(d, event_size: int):
    """The 1-D marginals of every dimension of ``d`` as one batched Normal, where they are
    Gaussian: (Independent) Normal, MultivariateNormal, LowRankMultivariateNormal."""
    if isinstance(d, Independent) and isinstance(d.base_dist, Normal):
        loc, scale = torch.broadcast_tensors(d.base_dist.loc, d.base_dist.scale)
        return Normal(
            loc.reshape(*loc.shape[: loc.dim() - d.reinterpreted_batch_ndims], -1),
            scale.reshape(*scale.shape[: scale.dim() - d.reinterpreted_batch_ndims], -1),
        )
    if isinstance(d, Normal) and event_size == 1:
        return Normal(d.loc[..., None], d.scale[..., None])
    if isinstance(
        d, torch.distributions.MultivariateNormal | torch.distributions.LowRankMultivariateNormal
    ):
        return Normal(d.mean, d.variance.sqrt())
    return None


def latent_usage(
    model, guide, *args, num_samples: int = 64, data_plate: str | None = None, **kwargs
) -> LatentUsage:
    """KL per latent dimension and active units, over the datapoints in ``args``."""
    latents = continuous_latents(model, guide, args, kwargs, "guide", "latent usage", data_plate)
    particles = Particles(latents.layout, num_samples)
    quiet = (torch.no_grad(), poutine.block(), pyro.validation_enabled(False))
    with quiet[0], quiet[1], quiet[2], particles.running(args, kwargs) as (a, kw):
        guide_trace = poutine.trace(guide).get_trace(*a, **kw)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*a, **kw)
    kl_per_dim, activity, active, notes = {}, {}, {}, {}
    for name, shape in zip(latents.names, latents.event_shapes, strict=True):
        size = math.prod(shape)
        q_site, p_site = guide_trace.nodes[name], model_trace.nodes[name]
        value = q_site["value"].reshape(num_samples, -1, size)
        try:  # the mean of each draw's conditional: less noisy than the draws themselves
            means = q_site["fn"].mean.expand(q_site["value"].shape).reshape(value.shape)
        except NotImplementedError:  # a flow: the draws' average
            means = value
        posterior_mean = means.double().mean(0)  # (N, D): E_q[z | x_n]
        activity[name] = posterior_mean.var(0) if len(posterior_mean) > 1 else posterior_mean[0] * 0
        active[name] = int((activity[name] > ACTIVE_THRESHOLD).sum())
        q_marginal, p_marginal = _marginals(q_site["fn"], size), _marginals(p_site["fn"], size)
        if q_marginal is None or p_marginal is None:
            notes[name] = "KL per dimension needs Gaussian marginals of q and p"
            continue
        kl = torch.distributions.kl_divergence(q_marginal, p_marginal)  # (S, N, D) or broadcast
        batch = q_site["value"].shape[: q_site["value"].dim() - len(shape)]
        kl = kl.expand(*batch, size).reshape(num_samples, -1, size)
        kl = kl.double()
        kl_per_dim[name] = kl.mean((0, 1))
    return LatentUsage(
        kl_per_dim, activity, active, ACTIVE_THRESHOLD, notes, latents.estimand, latents.discrete
    )

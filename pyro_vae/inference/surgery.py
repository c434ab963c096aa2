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

**At scale.** That sum costs S·N² guide densities. Where the guide is one diagonal Gaussian
site (a factorized encoder), every :math:`\log q(z_b \mid x_m)` is a sum of three matrix
products of the draws against the components' precisions and means, in float64, instead of a
(draws × components × dims) tensor: the components come from one run of the guide, and the
products are checked against the traced densities on a few draws before they are used. The
exact sum over the 10,000 binarized-MNIST test images then takes about a minute on one core.

With ``components = M < N`` it is estimated in O(N·M) instead. A draw from datapoint n keeps
a stratum exactly: its own component, the term that dominates since z was drawn from it, and
(Gaussian guides) the ``NEIGHBOURS`` components densest at n's mean, :math:`T_n`. The other
:math:`R = N - 1 - |T_n|` are estimated from M components drawn at random (one set per block
of draws):

.. math:: \hat{\bar q}(z) = \frac1N \Big( q(z \mid x_n) + \sum_{m \in T_n} q(z \mid x_m)
          + \frac{R}{|S_n|} \sum_{m \in S_n} q(z \mid x_m) \Big),
          \qquad S_n = S \setminus (\{n\} \cup T_n),

unbiased for :math:`\bar q(z)`: the stratified estimator of Chen et al. (2018, "Isolating
sources of disentanglement in VAEs") with the datapoint's own component and its neighbours as
the summed stratum. Its logarithm is biased low, by O(1/M); the bias is estimated per draw by
the jackknife over the sampled components (the estimates with one left out), times the
finite-population correction :math:`1 - |S_n| / R`, and removed. The shortcut's standard error
on the mean :math:`\log \bar q` comes from the spread, over the sampled components, of their
summed contributions (the draws of a block share their components, so their errors are not
independent). That spread sees only the components drawn: where a few far ones carry a draw's
sum it is too small (on a trained MNIST VAE, the error against the exact sum was 10–25 of
them, about 10⁻⁴ nats; ``benchmarks/surgery_scale.py`` measures it), so the exact sum is the
default.

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
from .arguments import take_rows
from .latents import (
    Latents,
    continuous_latents,
    log_densities,
    program_log_density,
    sample_latents,
)
from .particles import Particles
from .weights import ROWS_PER_CHUNK

#: A dimension is active when the variance over datapoints of its posterior mean exceeds this.
ACTIVE_THRESHOLD = 0.01
#: Draws × datapoints evaluated at once against the aggregate posterior.
PAIRS_PER_BLOCK = 1 << 22
#: Draws that share one random set of components: few, so that the shortcut's errors of
#: different draws are nearly independent and its standard error can treat them so.
DRAWS_PER_SUBSET = 256
#: Components nearest each datapoint's own, summed exactly besides it (Gaussian guides).
NEIGHBOURS = 64
#: Rows (draws × datapoints) the programs run on at once: a whole test set's draws would need
#: tens of GB of activations.
ROWS_PER_PASS = 1 << 16


def _in_passes(num_samples: int, num_data: int) -> list[slice]:
    """The draws of each datapoint, split into passes of at most ``ROWS_PER_PASS`` rows."""
    step = max(1, ROWS_PER_PASS // max(num_data, 1))
    return [slice(s, min(s + step, num_samples)) for s in range(0, num_samples, step)]


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
    #: Mixture components log q̄ was estimated from (``num_data``: the exact sum).
    components: int | None = None
    #: The shortcut's standard error on the mean log q̄, and the bias it removed from it (0
    #: when exact): the mutual information carries minus these, the marginal KL plus.
    aggregate_stderr: float = 0.0
    aggregate_bias: float = 0.0

    @property
    def exact(self) -> bool:
        """Whether q̄ was summed over every datapoint."""
        return self.components is None or self.components >= self.num_data

    @property
    def log_num_data(self) -> float:
        """log N, the largest mutual information N datapoints can carry."""
        return math.log(self.num_data)


@dataclass(frozen=True)
class _Aggregate:
    """log q̄ of every draw, ``(P, N)``, the bias removed from the shortcut's log per draw and
    the variance of its error summed over all draws (zeros when exact)."""

    log_density: torch.Tensor
    bias: torch.Tensor
    error_variance: float
    components: int  # N where the sum was exact


def _components_log_q(guide, args, kwargs, latents, part, rows) -> torch.Tensor:
    """``(B, M)`` log q(z_b | x_m) of the draws ``part`` (B, D) against the datapoints
    ``rows`` (all of them where None), the arguments cut to those rows."""
    layout, n = latents.layout, latents.layout.num_data
    if rows is not None:
        args, kwargs = take_rows(args, kwargs, n, rows)
    m = n if rows is None else len(rows)
    particles = Particles(layout, len(part))
    z = part[:, None, :] if particles.vectorized else part[:, None, :].expand(-1, m, -1)
    z = {k: particles.to_program(v) for k, v in latents.unflatten(z).items()}
    return program_log_density(guide, args, kwargs, latents, z, particles).cpu().double()


@dataclass(frozen=True)
class _GaussianComponents:
    """Every datapoint's q(z | x_m) = N(loc_m, diag(scale_m²)), ``(N, D)`` in float64."""

    loc: torch.Tensor
    scale: torch.Tensor

    def log_q(self, z: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """``(B, M)`` log q(z_b | x_m) of the draws ``z`` (B, D) at the datapoints ``rows``."""
        loc, scale = (self.loc, self.scale) if rows is None else (self.loc[rows], self.scale[rows])
        precision, z = scale.pow(-2), z.double()
        # In place: one (B, M) tensor, where each new one of tens of MB fragments the heap.
        quadratic = (z * z) @ precision.T
        quadratic.addmm_(z, (loc * precision).T, alpha=-2).add_((loc * loc * precision).sum(-1))
        constant = scale.log().sum(-1) + loc.shape[-1] * math.log(2 * math.pi) / 2
        return quadratic.mul_(-0.5).sub_(constant)

    def log_q_at(self, z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` log q(z_b | x_m) of each draw at its own K datapoints ``index`` (B, K)."""
        q = Normal(self.loc[index], self.scale[index])
        return q.log_prob(z.double()[:, None, :]).sum(-1)

    def neighbours(self, k: int, rows_per_block: int = 1024) -> torch.Tensor:
        """``(N, k)``: for each datapoint, the k other components densest at its mean (those
        that hold most of a draw's sum besides its own)."""
        n, found = len(self.loc), []
        for start in range(0, n, rows_per_block):
            rows = torch.arange(start, min(start + rows_per_block, n))
            score = self.log_q(self.loc[rows], None)  # (rows, N): component m at mean n
            score[torch.arange(len(rows)), rows] = -math.inf
            found.append(score.topk(k, -1).indices)
        return torch.cat(found)


def _gaussian_components(guide, args, kwargs, latents, values) -> _GaussianComponents | None:
    """The guide's components as Gaussians, where it is one diagonal Gaussian site whose
    densities at a few of ``values`` match its traced ones; else None."""
    if len(latents.names) != 1 or latents.discrete:
        return None
    name, n = latents.names[0], latents.layout.num_data
    site = poutine.trace(guide).get_trace(*args, **kwargs).nodes[name]
    d = site["fn"]
    base = d.base_dist if isinstance(d, Independent) else d
    if not isinstance(base, Normal) or tuple(d.batch_shape) != (n,):
        return None
    loc, scale = torch.broadcast_tensors(base.loc, base.scale)
    found = _GaussianComponents(loc.reshape(n, -1).double(), scale.reshape(n, -1).double())
    probe = latents.flatten(values).reshape(-1, latents.size)[:4]
    traced = _components_log_q(guide, args, kwargs, latents, probe, None)
    return found if torch.allclose(found.log_q(probe, None), traced, rtol=1e-4, atol=1e-3) else None


def _estimated_sum(log_q, exact, excluded, population: int):
    """log Σ_m q(z | x_m) of each draw: ``exact`` (B,), the log of its summed stratum (its own
    component, and its neighbours), plus the rest, ``population`` components, estimated from
    the sampled ``log_q`` (B, M) not ``excluded`` (in the stratum); with the bias of the log
    removed. Returns that, the bias removed per draw, and the variance of the sum of the draws'
    errors: the draws share one set of components, so it is of the components' summed terms."""
    others = ~excluded
    count = others.sum(-1).double().clamp(min=1)
    log_q = log_q.masked_fill(excluded, -math.inf)
    peak = torch.maximum(log_q.max(-1).values, exact)
    w = (log_q - peak[:, None]).exp()  # scaled by the largest term, so no overflow
    exact_w, summed_w = (exact - peak).exp(), w.sum(-1)
    total = exact_w + population / count * summed_w
    # Jackknife: the estimates with one sampled component left out show the bias of the log.
    scale = population / (count - 1).clamp(min=1)
    left_out = exact_w[:, None] + (summed_w[:, None] - w).clamp(min=0) * scale[:, None]
    left_out = (left_out.log() * others).sum(-1) / count
    fpc = (1 - count / max(population, 1)).clamp(min=0)  # a sample without replacement
    bias = torch.where(count > 1, fpc * (count - 1) * (left_out - total.log()), 0.0)
    # Σ_b error_b ≈ population · mean over the sampled m of u_m = Σ_b w_bm / total_b.
    m = log_q.shape[-1]
    u = ((w / total[:, None]) * others / count[:, None] * m).sum(0)
    fpc_all = max(0.0, 1 - m / max(population, 1))
    spread = population**2 * u.var().item() / m * fpc_all if m > 1 else 0.0
    return total.log() + peak - bias, bias, spread


def _stratum(owners, rows, near, n: int):
    """``(B, M)``: which of the sampled ``rows`` are in each draw's summed stratum (its own
    datapoint ``owners`` and their ``near`` neighbours), and the stratum's indices (B, K)."""
    mask = torch.zeros(len(owners), n, dtype=torch.bool)
    mask[torch.arange(len(owners)), owners] = True
    index = near[owners] if near is not None else torch.empty(len(owners), 0, dtype=torch.long)
    mask[torch.arange(len(owners))[:, None], index] = True
    return mask[:, rows], index


def _aggregate_log_density(guide, args, kwargs, latents, values, own, components, rng):
    """log q̄(z) = log Σ_m q(z | x_m) − log N for each draw ``values`` (P, N), every draw
    against every datapoint or, with ``components`` < N, against that many drawn at random
    with its own component ``own`` (P, N) kept exactly; a block of draws at a time."""
    flat = latents.flatten(values).reshape(-1, latents.size)  # (P·N, D) draws
    layout, n = latents.layout, latents.layout.num_data
    m = n if components is None else min(components, n)
    pairs = PAIRS_PER_BLOCK if layout.vectorized else ROWS_PER_CHUNK  # replicated: rows run
    pairs = max(1, pairs // layout.enumerated_values)  # each pair runs once per joint value
    gaussian = _gaussian_components(guide, args, kwargs, latents, values)
    if gaussian is not None:  # products, not a (draws × components × dims) tensor
        pairs = PAIRS_PER_BLOCK
        m = n if n - 1 <= NEIGHBOURS else m  # the neighbours are every other component
    owners, own = torch.arange(n).repeat(len(flat) // n), own.reshape(-1)
    block = max(1, pairs // m) if m == n else max(1, min(pairs // m, DRAWS_PER_SUBSET))
    k = min(NEIGHBOURS, n - 1) if gaussian is not None and m < n else 0
    near = gaussian.neighbours(k) if k else None
    # The results are written into tensors made once: small ones made between the blocks'
    # large temporaries pin the heap, which then grows by a block each time (tens of GB).
    log_sum = torch.empty(len(flat), dtype=torch.float64)
    bias = torch.zeros(len(flat), dtype=torch.float64)
    variance = 0.0
    for start in range(0, len(flat), block):
        part, span = flat[start : start + block], slice(start, start + block)
        rows = None if m == n else torch.randperm(n, generator=rng)[:m].sort().values
        if gaussian is not None:
            log_q = gaussian.log_q(part, rows)
        else:
            log_q = _components_log_q(guide, args, kwargs, latents, part, rows)
        if rows is None:
            torch.logsumexp(log_q, -1, out=log_sum[span])
        else:
            excluded, index = _stratum(owners[span], rows, near, n)
            exact = own[span]
            if k:  # the neighbours' terms, summed exactly beside the draw's own
                exact = torch.logaddexp(exact, gaussian.log_q_at(part, index).logsumexp(-1))
            log_sum[span], bias[span], spread = _estimated_sum(log_q, exact, excluded, n - 1 - k)
            variance += spread
        del log_q
    shape = values[latents.names[0]].shape[:2]
    log_density = (log_sum - math.log(n)).reshape(shape)
    return _Aggregate(log_density, bias.reshape(shape), variance, m)


def check_components(components) -> int | None:
    """``components`` as :func:`elbo_surgery` takes it: None (exact) or a count of at least 2."""
    if components is None:
        return None
    if isinstance(components, bool) or not isinstance(components, int) or components < 2:
        raise ValueError(f"components must be an integer >= 2 or None (exact), got {components!r}")
    return components


def elbo_surgery(
    model,
    guide,
    *args,
    num_samples: int = 32,
    components: int | None = None,
    data_plate: str | None = None,
    seed: int = 0,
    **kwargs,
) -> ElboSurgery:
    """Average KL, mutual information and marginal KL over the datapoints in ``args``; the
    aggregate posterior's density from ``components`` random mixture components besides each
    draw's own (None, or at least N: all of them, exactly), drawn with ``seed``."""
    components = check_components(components)
    latents = continuous_latents(model, guide, args, kwargs, "guide", "ELBO surgery", data_plate)
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad(), poutine.block(), pyro.validation_enabled(False):
        values = sample_latents(model, guide, args, kwargs, latents, num_samples)
        passes = [
            log_densities(model, guide, args, kwargs, latents, {k: v[p] for k, v in values.items()})
            for p in _in_passes(num_samples, latents.layout.num_data)
        ]
        log_q = torch.cat([d.guide.cpu().double() for d in passes])
        log_p = torch.cat([d.prior.cpu().double() for d in passes])
        agg = _aggregate_log_density(guide, args, kwargs, latents, values, log_q, components, rng)

    def mean_and_stderr(terms: torch.Tensor) -> tuple[float, float, torch.Tensor]:
        per_datapoint = terms.mean(0)
        stderr = terms.std(0) / math.sqrt(num_samples) if num_samples > 1 else terms[0] * math.nan
        return per_datapoint.mean().item(), mean_stderr(stderr), per_datapoint

    kl, kl_se, kl_n = mean_and_stderr(log_q - log_p)
    mi, mi_se, _ = mean_and_stderr(log_q - agg.log_density)
    marginal, marginal_se, _ = mean_and_stderr(agg.log_density - log_p)
    n = latents.layout.num_data
    return ElboSurgery(
        kl,
        kl_se,
        marginal,
        marginal_se,
        mi,
        mi_se,
        n,
        num_samples,
        kl_n,
        latents.estimand,
        latents.discrete,
        components=agg.components,
        aggregate_stderr=math.sqrt(agg.error_variance) / agg.bias.numel(),
        aggregate_bias=agg.bias.mean().item(),
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


def _usage_sums(model, guide, args, kwargs, latents: Latents, k: int) -> dict:
    """Per latent, from k draws per datapoint: the sum over the draws of E_q[z | x_n] (N, D),
    and of each dimension's KL summed over datapoints (D; None without Gaussian marginals)."""
    particles = Particles(latents.layout, k)
    quiet = (torch.no_grad(), poutine.block(), pyro.validation_enabled(False))
    with quiet[0], quiet[1], quiet[2], particles.running(args, kwargs) as (a, kw):
        guide_trace = poutine.trace(guide).get_trace(*a, **kw)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*a, **kw)
    sums = {}
    for name, shape in zip(latents.names, latents.event_shapes, strict=True):
        size = math.prod(shape)
        q_site, p_site = guide_trace.nodes[name], model_trace.nodes[name]
        value = q_site["value"].reshape(k, -1, size)
        try:  # the mean of each draw's conditional: less noisy than the draws themselves
            means = q_site["fn"].mean.expand(q_site["value"].shape).reshape(value.shape)
        except NotImplementedError:  # a flow: the draws' average
            means = value
        q_marginal, p_marginal = _marginals(q_site["fn"], size), _marginals(p_site["fn"], size)
        kl = None
        if q_marginal is not None and p_marginal is not None:
            kl = torch.distributions.kl_divergence(q_marginal, p_marginal)  # or broadcast
            batch = q_site["value"].shape[: q_site["value"].dim() - len(shape)]
            kl = kl.expand(*batch, size).reshape(k, -1, size).double().sum((0, 1))
        sums[name] = (means.double().sum(0), kl)
    return sums


def latent_usage(
    model, guide, *args, num_samples: int = 64, data_plate: str | None = None, **kwargs
) -> LatentUsage:
    """KL per latent dimension and active units, over the datapoints in ``args``."""
    latents = continuous_latents(model, guide, args, kwargs, "guide", "latent usage", data_plate)
    means, kls = {}, {}  # summed over the passes of draws
    for p in _in_passes(num_samples, latents.layout.num_data):
        for name, (mean_sum, kl_sum) in _usage_sums(
            model, guide, args, kwargs, latents, p.stop - p.start
        ).items():
            means[name] = mean_sum + means.get(name, 0)
            kls[name] = None if kl_sum is None else kl_sum + kls.get(name, 0)
    kl_per_dim, activity, active, notes = {}, {}, {}, {}
    for name, mean_sum in means.items():
        kl_sum, posterior_mean = kls[name], mean_sum / num_samples  # (N, D): E_q[z | x_n]
        activity[name] = posterior_mean.var(0) if len(posterior_mean) > 1 else posterior_mean[0] * 0
        active[name] = int((activity[name] > ACTIVE_THRESHOLD).sum())
        if kl_sum is None:
            notes[name] = "KL per dimension needs Gaussian marginals of q and p"
            continue
        kl_per_dim[name] = kl_sum / (num_samples * len(mean_sum))
    return LatentUsage(
        kl_per_dim, activity, active, ACTIVE_THRESHOLD, notes, latents.estimand, latents.discrete
    )

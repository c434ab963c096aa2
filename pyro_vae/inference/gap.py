r"""The ELBO gap split in two (Cremer, Li & Duvenaud 2018, "Inference Suboptimality in
Variational Autoencoders").

For a datapoint x, with q the amortized guide (the encoder's output) and :math:`q^*_x` the best
member of the same variational family for this x alone,

.. math:: \log p(x) - \mathcal L[q]
        = \underbrace{\log p(x) - \mathcal L[q^*_x]}_{\text{approximation gap}}
        + \underbrace{\mathcal L[q^*_x] - \mathcal L[q]}_{\text{amortization gap}}.

The approximation gap is what the family cannot express (KL(q*‖posterior)); the amortization
gap is what the encoder loses by sharing one network over all datapoints. :math:`q^*_x` is found
by optimizing the parameters of each guide site's distribution for each datapoint separately,
starting from the encoder's output (Adam on the per-datapoint ELBO, reparameterized samples).
Convergence is checked with common random numbers: every ``check_every`` steps each datapoint's
ELBO is estimated with the same fixed draws, the learning rate is halved whenever the mean
improvement falls below ten times ``tol`` (there the noise of the steps dominates), and the
refinement stops once no datapoint improved by more than ``tol`` nats since the last check (or
after ``max_steps``); datapoints
still improving are flagged unconverged. log p(x) comes from importance sampling (or AIS) with
the guide as proposal; both are lower bounds in expectation, so the approximation gap they give
is too, the less so the better log p̂ is (AIS, large K).

Guide sites may be (Independent) Normal, MultivariateNormal or LowRankMultivariateNormal, and
each site's parameters must depend on x alone (not on another latent): the family refined per
datapoint is then exactly the guide's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions.torch_distribution import MaskedDistribution

from ..errors import ModelGuideError
from ..results.choices import Method
from ..results.estimand import LOG_PX, Estimand
from ..results.result import Result
from ..results.stats import KHAT_UNRELIABLE, Stats, difference_stderr
from .elbo import ElboEstimate, elbo
from .enumeration import enumerating, marked_enumerated
from .importance import log_weights
from .latents import continuous_latents
from .layout import sample_sites
from .log_likelihood import log_likelihood
from .particles import batch_rows
from .weights import LogLikelihood


@dataclass
class _LocalSite:
    """One guide site's distribution with free per-datapoint parameters; ``source`` holds the
    tensors of the guide's distribution they were copied from."""

    name: str
    params: dict[str, torch.Tensor]
    build: Callable[[dict[str, torch.Tensor]], dist.Distribution]
    source: tuple[torch.Tensor, ...] = ()
    infer: dict = field(default_factory=dict)  # a discrete site's: enumerated in parallel

    def distribution(self, rows: torch.Tensor | None = None) -> dist.Distribution:
        """The distribution of every datapoint, or of the datapoints ``rows`` (replicated
        particles: row ``j`` is datapoint ``rows[j]``)."""
        if rows is None:
            return self.build(self.params)
        return self.build({k: v[rows] for k, v in self.params.items()})


def _local(name: str, d) -> _LocalSite:
    """Free parameters for ``d`` (detached copies of its current values) and how to rebuild it;
    a masked distribution keeps its mask."""
    if isinstance(d, MaskedDistribution):
        inner = _local(name, d.base_dist)
        mask = d._mask
        return replace(inner, build=lambda p, build=inner.build: build(p).mask(mask))
    events = 0
    if isinstance(d, torch.distributions.Independent):
        d, events = d.base_dist, d.reinterpreted_batch_ndims
        if isinstance(d, MaskedDistribution):
            inner = _local(name, d)
            return replace(inner, build=lambda p, build=inner.build: build(p).to_event(events))
    leaf = lambda t: t.detach().clone().requires_grad_()  # noqa: E731

    def wrap(base):
        return base.to_event(events) if events else base

    if isinstance(d, torch.distributions.Normal):
        loc, scale = torch.broadcast_tensors(d.loc, d.scale)
        params = {"loc": leaf(loc), "log_scale": leaf(scale.log())}
        return _LocalSite(
            name, params, lambda p: wrap(dist.Normal(p["loc"], p["log_scale"].exp())), (loc, scale)
        )
    if isinstance(d, torch.distributions.MultivariateNormal) and not events:
        tril = d.scale_tril
        size = tril.shape[-1]
        rows, cols = torch.tril_indices(size, size, -1)
        params = {
            "loc": leaf(d.loc),
            "log_diag": leaf(tril.diagonal(dim1=-2, dim2=-1).log()),
            "lower": leaf(tril[..., rows, cols]),
        }

        def mvn(p):
            strict = p["lower"].new_zeros(*p["lower"].shape[:-1], size, size)
            strict[..., rows, cols] = p["lower"]
            return dist.MultivariateNormal(
                p["loc"], scale_tril=strict + torch.diag_embed(p["log_diag"].exp())
            )

        return _LocalSite(name, params, mvn, (d.loc, tril))
    if isinstance(d, torch.distributions.LowRankMultivariateNormal) and not events:
        params = {
            "loc": leaf(d.loc),
            "factor": leaf(d.cov_factor),
            "log_diag": leaf(d.cov_diag.log()),
        }
        return _LocalSite(
            name,
            params,
            lambda p: dist.LowRankMultivariateNormal(p["loc"], p["factor"], p["log_diag"].exp()),
            (d.loc, d.cov_factor, d.cov_diag),
        )
    if isinstance(d, DISCRETE) and not events:
        kind = type(d)
        return _LocalSite(
            name,
            {"logits": leaf(d.logits)},
            lambda p: kind(logits=p["logits"]),
            (d.logits,),
            {"enumerate": "parallel"},
        )
    raise ModelGuideError(
        f"guide site '{name}' is a {type(d).__name__}; the gap decomposition refines (Independent) "
        f"Normal, MultivariateNormal and LowRankMultivariateNormal sites, and Categorical, "
        f"OneHotCategorical and Bernoulli ones"
    )


#: The discrete guide families a refined q keeps, each summed out exactly (enumerated).
DISCRETE = (
    torch.distributions.Categorical,
    torch.distributions.OneHotCategorical,
    torch.distributions.Bernoulli,
)


def local_guide(guide, args, kwargs, latents) -> tuple[list[_LocalSite], Callable]:
    """Per-datapoint copies of the guide's sites at x, and a guide program that samples them.

    Refuses a site whose parameters depend on another latent's value (checked by autograd on a
    run of the guide with every latent fixed to a leaf tensor).
    """
    trace, values = _guide_at_leaves(guide, args, kwargs, latents)
    order = [s["name"] for s in sample_sites(trace)]
    names = [n for n in order if n in latents.names or n in latents.discrete]
    sites = [_local(n, trace.nodes[n]["fn"]) for n in names]
    for site in sites:
        others = [values[n] for n in latents.names if n != site.name]
        for tensor in site.source:
            if not (others and tensor.requires_grad):
                continue
            grads = torch.autograd.grad(tensor.sum(), others, allow_unused=True, retain_graph=True)
            if any(g is not None for g in grads):
                raise ModelGuideError(
                    f"guide site '{site.name}' depends on another continuous latent; the gap "
                    f"decomposition refines guides whose sites depend on x (and discrete "
                    f"latents) alone"
                )
    layout = latents.layout

    def program(*args, **kwargs):
        rows = batch_rows(args, kwargs, layout)  # K·N where the particles are replicated rows
        index = None if rows == layout.num_data else torch.arange(rows) % layout.num_data
        with pyro.plate(layout.data_plate, rows, dim=layout.data_dim):
            for site in sites:
                pyro.sample(site.name, site.distribution(index), infer=dict(site.infer))

    return sites, program


def _guide_at_leaves(guide, args, kwargs, latents):
    """A run of the guide with every continuous latent at a leaf tensor (its first draw) and
    every discrete one taking all its values, and those leaves."""
    if latents.discrete and not latents.layout.vectorized:
        raise ModelGuideError(
            "the gap decomposition of a pair with discrete latents needs a model that takes a "
            "particle dimension (this one runs on replicated rows)"
        )
    with poutine.block(), torch.random.fork_rng():
        sampled = poutine.trace(guide).get_trace(*args, **kwargs)
        values = {
            n: sampled.nodes[n]["value"].detach().clone().requires_grad_() for n in latents.names
        }
        program = marked_enumerated(guide, latents.discrete)
        with enumerating(latents.layout, latents.discrete):
            trace = poutine.trace(poutine.condition(program, data=values)).get_trace(
                *args, **kwargs
            )
    return trace, values


@dataclass(frozen=True)
class Refinement:
    """What refining q per datapoint gave: the refined q's ELBO, which datapoints had stopped
    improving, and the number of steps taken."""

    elbo: ElboEstimate
    converged: torch.Tensor  # bool, per datapoint
    steps: int

    @classmethod
    def concatenate(cls, parts: list[Refinement]) -> Refinement:
        """The refinements of several groups of datapoints, in their order."""
        return cls(
            ElboEstimate.concatenate([p.elbo for p in parts]),
            torch.cat([p.converged for p in parts]),
            max(p.steps for p in parts),
        )


@dataclass(frozen=True, repr=False, eq=False)
class GapDecomposition(Result):
    """Per datapoint (float64): log p̂(x), the amortized ELBO, the ELBO of q refined for each
    datapoint, and the two gaps; stderrs are Monte Carlo. A datapoint is usable where every
    number is finite."""

    log_px: torch.Tensor
    log_px_stderr: torch.Tensor
    elbo: torch.Tensor
    elbo_stderr: torch.Tensor
    elbo_refined: torch.Tensor
    elbo_refined_stderr: torch.Tensor
    converged: torch.Tensor  # bool: the refinement of this datapoint had stopped improving
    refine_steps: int
    method: Method = Method.IS
    estimand: Estimand = LOG_PX
    #: Pareto k̂ of the importance weights behind log p̂ (None for AIS): where it exceeds 0.7
    #: log p̂ is unreliable, and the datapoint is flagged and left out of the means.
    khat: torch.Tensor | None = None

    @classmethod
    def of(
        cls, log_px: LogLikelihood, amortized: ElboEstimate, refined: Refinement
    ) -> GapDecomposition:
        """The decomposition from its three estimates: log p̂ (by IS or AIS), the ELBO of the
        amortized q, and the refinement's."""
        return cls(
            log_px.log_px,
            log_px.stderr,
            amortized.elbo,
            amortized.stderr,
            refined.elbo.elbo,
            refined.elbo.stderr,
            refined.converged,
            refined.steps,
            log_px.method,
            log_px.estimand,
            log_px.khat if log_px.method is Method.IS else None,
        )

    @property
    def num_data(self) -> int:
        return len(self.log_px)

    @property
    def approximation_gap(self) -> torch.Tensor:
        return self.log_px - self.elbo_refined

    @property
    def amortization_gap(self) -> torch.Tensor:
        return self.elbo_refined - self.elbo

    @property
    def gap(self) -> torch.Tensor:
        return self.log_px - self.elbo

    @property
    def unreliable(self) -> torch.Tensor:
        """Datapoints whose importance-sampled log p̂ has Pareto k̂ > 0.7."""
        if self.khat is None:
            return torch.zeros(self.num_data, dtype=torch.bool)
        return self.khat > KHAT_UNRELIABLE

    @property
    def usable(self) -> torch.Tensor:
        """Finite numbers, and a log p̂ that is not unreliable."""
        values = (self.log_px, self.elbo, self.elbo_refined)
        return torch.stack([torch.isfinite(v) for v in values]).all(0) & ~self.unreliable

    @property
    def negative(self) -> torch.Tensor:
        """Datapoints with a gap below −3 standard errors: the approximation gap (log p̂ too
        low, or q refined past the posterior's fit by noise) or the amortization gap (the
        refinement did worse than the encoder: not converged)."""
        approximation = difference_stderr(self.log_px_stderr, self.elbo_refined_stderr)
        amortization = difference_stderr(self.elbo_refined_stderr, self.elbo_stderr)
        return (self.approximation_gap < -3 * approximation) | (
            self.amortization_gap < -3 * amortization
        )

    def stats(self, keep=None) -> dict[str, Stats]:
        """Each number's :class:`~pyro_vae.results.stats.Stats` over the datapoints ``keep``
        (default: the usable ones); a gap's Monte Carlo error adds its two terms'."""
        keep = self.usable if keep is None else keep
        pairs = {
            "log_px": (self.log_px, self.log_px_stderr),
            "elbo": (self.elbo, self.elbo_stderr),
            "elbo_refined": (self.elbo_refined, self.elbo_refined_stderr),
            "gap": (self.gap, difference_stderr(self.log_px_stderr, self.elbo_stderr)),
            "approximation_gap": (
                self.approximation_gap,
                difference_stderr(self.log_px_stderr, self.elbo_refined_stderr),
            ),
            "amortization_gap": (
                self.amortization_gap,
                difference_stderr(self.elbo_refined_stderr, self.elbo_stderr),
            ),
        }
        return {name: Stats.of(v, e, keep) for name, (v, e) in pairs.items()}


def refine(
    model,
    guide,
    args,
    kwargs,
    *,
    max_steps=2000,
    check_every=100,
    tol=1e-3,
    lr=1e-2,
    particles=8,
    check_samples=64,
    seed=0,
    data_plate=None,
):
    """Optimize each datapoint's q from the encoder's output; returns the refined guide
    program, the number of steps, and which datapoints converged."""
    what = "the gap decomposition"
    latents = continuous_latents(model, guide, args, kwargs, "guide", what, data_plate)
    sites, program = local_guide(guide, args, kwargs, latents)
    params = [p for site in sites for p in site.params.values()]
    optimizer = torch.optim.Adam(params, lr=lr)
    weights = partial(
        log_weights,
        model,
        program,
        args,
        kwargs,
        layout=replace(latents.layout, enumerated=latents.discrete),
        analytic_kl=True,
        enumerated="expectation",
    )

    def checked_elbo() -> torch.Tensor:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(seed)  # the same draws at every check
            return weights(num_samples=check_samples).cpu().double().mean(0)

    def step() -> None:
        grads = torch.autograd.grad(-weights(num_samples=particles).mean(0).sum(), params)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        optimizer.step()

    previous = checked_elbo()
    converged = torch.zeros(latents.layout.num_data, dtype=torch.bool)
    steps = 0
    with pyro.validation_enabled(False), poutine.block():
        while steps < max_steps:
            for _ in range(check_every):
                step()
            steps += check_every
            current = checked_elbo()
            improvement = current - previous
            converged = improvement < tol
            previous = current
            if converged.all():
                break
            if improvement.mean() < 10 * tol:  # a plateau: the steps' noise now dominates
                for group in optimizer.param_groups:
                    group["lr"] /= 2
    return program, steps, converged


def refined_elbo(
    model,
    guide,
    *args,
    num_samples: int = 1000,
    max_steps: int = 2000,
    tol: float = 1e-3,
    lr: float = 1e-2,
    data_plate: str | None = None,
    **kwargs,
) -> Refinement:
    """The ELBO of q refined for each datapoint (``num_samples`` samples each, analytic KL),
    which datapoints converged, and the number of refinement steps taken."""
    program, steps, converged = refine(
        model, guide, args, kwargs, max_steps=max_steps, tol=tol, lr=lr, data_plate=data_plate
    )
    refined = elbo(
        model,
        program,
        *args,
        num_samples=num_samples,
        objective="trace_mean_field",
        data_plate=data_plate,
        **kwargs,
    )
    return Refinement(refined, converged, steps)


def gap_decomposition(
    model,
    guide,
    *args,
    num_samples: int = 1000,
    elbo_samples: int | None = None,
    method: str = "ais",
    num_steps: int | None = None,
    chains: int = 16,
    max_steps: int = 2000,
    tol: float = 1e-3,
    lr: float = 1e-2,
    progress: bool | None = None,
    **kwargs,
) -> GapDecomposition:
    """Split the ELBO gap of every datapoint into approximation and amortization gaps.

    :param method: how log p̂(x) is estimated: ``"ais"`` (the default; ``chains`` chains per
        datapoint, ``num_steps`` intermediate densities, default 500), or ``"is"``
        (importance sampling with ``num_samples``): then the datapoints whose weights have
        Pareto k̂ > 0.7, where log p̂ and so the approximation gap are too low, are flagged
        and left out of the means.
    :param num_samples: K of importance sampling, and the default ``elbo_samples``.
    :param elbo_samples: samples per datapoint for the two ELBOs.
    :param max_steps, tol, lr: the per-datapoint refinement (see the module docstring).
    """
    elbo_samples = elbo_samples or num_samples
    refined = refined_elbo(
        model, guide, *args, num_samples=elbo_samples, max_steps=max_steps, tol=tol, lr=lr, **kwargs
    )
    # log p(x) with the guide as it is as proposal: the refined q, fitted by KL(q ‖ posterior),
    # is narrower than the posterior, and a narrower proposal makes importance sampling worse.
    ais = Method.of(method) is Method.AIS
    ll = log_likelihood(
        model,
        guide,
        *args,
        num_samples=chains if ais else num_samples,
        method=method,
        num_steps=num_steps or 500 if ais else None,
        progress=progress,
        **kwargs,
    )
    # The guide's sites depend on x alone (checked by the refinement): the analytic KL is valid.
    amortized = elbo(
        model, guide, *args, num_samples=elbo_samples, objective="trace_mean_field", **kwargs
    )
    return GapDecomposition.of(ll, amortized, refined)

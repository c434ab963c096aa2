r"""The latent values of any Pyro pair, one row per (particle, datapoint): drawing them, and the
log densities of the model and the guide at given values.

The estimators that move latent values themselves (AIS, BDMC, refining q per datapoint, the
aggregate posterior) need what importance sampling does not: ``log p(x, z)`` and ``log q(z | x)``
at values they choose. Both come from one run of each program with every latent site
conditioned on those values (``poutine.condition``), with K particles
(:mod:`pyro_vae.inference.particles`), and are summed per datapoint like the importance weights
(:mod:`pyro_vae.inference.importance`). Values have shape ``(K, N, *event)``: K particles
(chains), N datapoints.

They move the **continuous** latents. A discrete latent with a finite support (M2's label y, a
mixture's component) is **summed out** of every density they evaluate, each program enumerating
it by itself: the model gives :math:`\log p(x, z) = \log \sum_y p(x, y, z)` and the guide
:math:`\log q(z \mid x) = \log \sum_y q(y \mid x)\, q(z \mid x, y)`; draws of z come from the
guide with y drawn as it is (so they are draws of the marginal q(z | x)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pyro.poutine as poutine
import torch
from torch.distributions import constraints

from ..errors import ModelGuideError
from ..results.choices import Proposal
from .enumeration import enum_rank, enumerating, marked_enumerated, reduced, summed_out
from .importance import _site_device
from .layout import PlateLayout, inspect_pair, owner_method, sample_sites
from .particles import Particles


@dataclass(frozen=True)
class Latents:
    """The latent sites of a pair in the guide's order, with their event shapes, and the plate
    layout; ``flatten`` / ``unflatten`` turn values into one vector per (particle, datapoint)."""

    names: tuple[str, ...]
    event_shapes: tuple[torch.Size, ...]
    layout: PlateLayout
    #: Discrete latents with finite support, summed out of the densities.
    discrete: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.event_shapes)

    @property
    def estimand(self):
        """The pair's estimand, of these (continuous) latents: the KL terms of surgery and usage
        are of them, the discrete ones summed out."""
        return replace(self.layout.estimand, latents=self.names)

    def flatten(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [
            values[n].reshape(*values[n].shape[: values[n].dim() - len(s)], -1)
            for n, s in zip(self.names, self.event_shapes, strict=True)
        ]
        return torch.cat(parts, -1)

    def unflatten(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        values, start = {}, 0
        for name, shape in zip(self.names, self.event_shapes, strict=True):
            size = math.prod(shape)
            values[name] = z[..., start : start + size].reshape(*z.shape[:-1], *shape)
            start += size
        return values


def continuous_latents(
    model, guide, args=(), kwargs=None, proposal="guide", what="", data_plate=None
) -> Latents:
    """The latent sites of the pair, checked: per-datapoint (``inspect_pair``), only the data
    plate, and real-valued (what ``what`` — AIS, say — needs to move them continuously)."""
    kwargs = kwargs or {}
    layout = inspect_pair(model, guide, args, kwargs, proposal, data_plate=data_plate)
    if layout.max_plate_nesting != 1:
        raise ModelGuideError(
            f"{what or 'this estimator'} needs the latents in the data plate "
            f"'{layout.data_plate}' alone; the pair nests {layout.max_plate_nesting} plates"
        )
    program = Proposal.of(proposal).program(model, guide)
    with poutine.block(), torch.no_grad(), torch.random.fork_rng():
        trace = poutine.trace(program).get_trace(*args, **kwargs)
    names, shapes, discrete = [], [], []
    for site in sample_sites(trace):
        if site["is_observed"]:
            continue
        kind = _kind(site)
        if kind == "discrete":
            discrete.append(site["name"])
            continue
        if kind != "real":
            raise ModelGuideError(
                f"latent site '{site['name']}' is {kind}; {what or 'this estimator'} moves "
                f"latents on the real line, and sums out discrete ones with a finite support"
            )
        names.append(site["name"])
        shapes.append(site["fn"].event_shape)
    if not names:
        raise ModelGuideError(
            f"{what or 'this estimator'} moves continuous latents; this pair's are all discrete "
            f"({', '.join(discrete)}): enumerate them (infer={{'enumerate': 'parallel'}}) and "
            f"importance sampling sums them out exactly"
        )
    return Latents(tuple(names), tuple(shapes), layout, tuple(discrete))


def _kind(site) -> str:
    """ "real" (moved), "discrete" (a finite support, summed out), or what else it is."""
    fn = site["fn"]
    support = fn.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.real:
        return "real"
    if support.is_discrete:
        if fn.has_enumerate_support:
            return "discrete"
        # Independent binary units (a sigmoid belief network's) have 2^dim values: too many
        return "discrete without an enumerable support (infinite, or a product of many units)"
    return f"constrained ({support})"


def sample_latents(
    model, guide, args, kwargs, latents: Latents, num_samples: int, proposal="guide"
) -> dict[str, torch.Tensor]:
    """``num_samples`` draws of every latent per datapoint from the guide (or the prior)."""
    program = Proposal.of(proposal).program(model, guide)
    particles = Particles(latents.layout, num_samples)
    with particles.running(args, kwargs) as (args, kwargs):
        trace = poutine.trace(program).get_trace(*args, **kwargs)
    return {name: particles.from_program(trace.nodes[name]["value"]) for name in latents.names}


@dataclass
class Densities:
    """Log densities at given latent values, each ``(K, N)``: the joint log p(x, z), the prior
    log p(z) (the model's latent sites), and the guide's log q(z | x) (None if not run); the
    discrete latents summed out of each."""

    joint: torch.Tensor
    prior: torch.Tensor
    guide: torch.Tensor | None

    def proposal(self, proposal: str) -> torch.Tensor:
        """log r(z) for ``proposal`` "guide" (q(z | x)) or "prior" (p(z))."""
        return self.guide if Proposal.of(proposal).uses_guide else self.prior


def log_densities(
    model, guide, args, kwargs, latents: Latents, values: dict[str, torch.Tensor], with_guide=True
) -> Densities:
    """The log densities of the pair at ``values``; differentiable in the values.

    A pair whose model and guide are methods of one object offering ``log_densities(x,
    values)`` (a spec-built :class:`~pyro_vae.LatentModel`) is evaluated through it, without
    Pyro's traces: the same numbers, several times faster for small nets.
    """
    kwargs = kwargs or {}
    fast = owner_method(model, guide, "log_densities", args, kwargs)
    if fast is not None and not latents.discrete:
        return Densities(*fast(args[0], values, with_guide=with_guide))
    particles = Particles(latents.layout, next(iter(values.values())).shape[0])
    values = {name: particles.to_program(v) for name, v in values.items()}
    model_trace = _conditioned(model, args, kwargs, latents, values, particles)
    joint, prior = _summed(model_trace, latents, particles, {*latents.names, *latents.discrete})
    guide_log = None
    if with_guide:
        guide_trace = _conditioned(guide, args, kwargs, latents, values, particles)
        guide_log = _summed(guide_trace, latents, particles, None)[0]
    return Densities(joint, prior, guide_log)


def program_log_density(program, args, kwargs, latents: Latents, values, particles) -> torch.Tensor:
    """``(K, N)`` log density of ``program`` (the guide, say) at ``values`` already laid out
    for ``particles``, its discrete latents summed out."""
    trace = _conditioned(program, args, kwargs, latents, values, particles)
    return _summed(trace, latents, particles, None)[0]


def _conditioned(program, args, kwargs, latents: Latents, values, particles):
    """A run of ``program`` with the continuous latents at ``values`` and the discrete ones
    taking all their values (parallel enumeration)."""
    program = marked_enumerated(program, latents.discrete)
    enumerated = enumerating(latents.layout, latents.discrete)
    with particles.running(args, kwargs) as (args, kwargs), enumerated:
        return poutine.trace(poutine.condition(program, data=values)).get_trace(*args, **kwargs)


def _summed(trace, latents: Latents, particles, subset) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(K, N)`` sums of a trace's log densities over all its sites and over the sites in
    ``subset`` (None: the second is not computed), the discrete latents summed out."""
    layout = latents.layout
    sites = sample_sites(trace)
    shape = particles.program_shape(layout.batch_size(sites))
    rank = enum_rank(sites, layout)
    # Each site's density once: both sums take it, in the sites' order.
    terms = [reduced(s["fn"].log_prob(s["value"]), s, layout, rank) for s in sites]

    def total(chosen) -> torch.Tensor:
        summed = sum(chosen) if chosen else torch.zeros(shape, device=_site_device(sites))
        summed = summed_out(summed, None, [], rank, "sum").expand(shape)
        return particles.per_datapoint(summed)

    second = None
    if subset is not None:
        second = total([t for s, t in zip(sites, terms, strict=True) if s["name"] in subset])
    return total(terms), second

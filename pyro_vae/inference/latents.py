"""The latent values of any Pyro pair, one row per (particle, datapoint): drawing them, and the
log densities of the model and the guide at given values.

The estimators that move latent values themselves (AIS, BDMC, refining q per datapoint, the
aggregate posterior) need what importance sampling does not: ``log p(x, z)`` and ``log q(z | x)``
at values they choose. Both come from one run of each program with every latent site
conditioned on those values (``poutine.condition``), under the particles plate, and are summed
per datapoint like the importance weights (:mod:`pyro_vae.inference.importance`). Values have
shape ``(K, N, *event)``: K particles (chains), N datapoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch
from torch.distributions import constraints

from ..errors import ModelGuideError
from ..results.choices import Proposal
from .importance import (
    PlateLayout,
    _data_frame,
    _per_datapoint,
    _sample_sites,
    _site_device,
    inspect_pair,
    owner_method,
)


@dataclass(frozen=True)
class Latents:
    """The latent sites of a pair in the guide's order, with their event shapes, and the plate
    layout; ``flatten`` / ``unflatten`` turn values into one vector per (particle, datapoint)."""

    names: tuple[str, ...]
    event_shapes: tuple[torch.Size, ...]
    layout: PlateLayout

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.event_shapes)

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


def continuous_latents(model, guide, args=(), kwargs=None, proposal="guide", what="") -> Latents:
    """The latent sites of the pair, checked: per-datapoint (``inspect_pair``), only the data
    plate, and real-valued (what ``what`` — AIS, say — needs to move them continuously)."""
    kwargs = kwargs or {}
    layout = inspect_pair(model, guide, args, kwargs, proposal)
    if layout.max_plate_nesting != 1:
        raise ModelGuideError(
            f"{what or 'this estimator'} needs the latents in pyro.plate('data') alone; the "
            f"pair nests {layout.max_plate_nesting} plates"
        )
    program = Proposal.of(proposal).program(model, guide)
    with poutine.block(), torch.no_grad(), torch.random.fork_rng():
        trace = poutine.trace(program).get_trace(*args, **kwargs)
    names, shapes = [], []
    for site in _sample_sites(trace):
        if site["is_observed"]:
            continue
        support = site["fn"].support
        while isinstance(support, constraints.independent):
            support = support.base_constraint
        if support is not constraints.real:
            kind = "discrete" if site["fn"].support.is_discrete else f"constrained ({support})"
            raise ModelGuideError(
                f"latent site '{site['name']}' is {kind}; {what or 'this estimator'} moves "
                f"latents on the real line, so it needs real-valued latents"
            )
        names.append(site["name"])
        shapes.append(site["fn"].event_shape)
    return Latents(tuple(names), tuple(shapes), layout)


def sample_latents(
    model, guide, args, kwargs, latents: Latents, num_samples: int, proposal="guide"
) -> dict[str, torch.Tensor]:
    """``num_samples`` draws of every latent per datapoint from the guide (or the prior)."""
    program = Proposal.of(proposal).program(model, guide)
    with pyro.plate("particles", num_samples, dim=latents.layout.particle_dim):
        trace = poutine.trace(program).get_trace(*args, **kwargs)
    return {name: trace.nodes[name]["value"] for name in latents.names}


def _site_sum(trace, layout: PlateLayout, shape, names=None) -> torch.Tensor:
    total = torch.zeros(shape, device=_site_device(_sample_sites(trace)))
    for site in _sample_sites(trace):
        if names is None or site["name"] in names:
            total = total + _per_datapoint(site["fn"].log_prob(site["value"]), site, layout, shape)
    return total


@dataclass
class Densities:
    """Log densities at given latent values, each ``(K, N)``: the joint log p(x, z), the prior
    log p(z) (the model's latent sites), and the guide's log q(z | x) (None if not run)."""

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
    if fast is not None:
        return Densities(*fast(args[0], values, with_guide=with_guide))
    num = next(iter(values.values())).shape[0]
    with pyro.plate("particles", num, dim=latents.layout.particle_dim):
        model_trace = poutine.trace(poutine.condition(model, data=values)).get_trace(
            *args, **kwargs
        )
        guide_trace = None
        if with_guide:
            guide_trace = poutine.trace(poutine.condition(guide, data=values)).get_trace(
                *args, **kwargs
            )
    data = _data_frame(_sample_sites(model_trace)[0]).size
    shape = (num, data)
    layout = latents.layout
    return Densities(
        _site_sum(model_trace, layout, shape),
        _site_sum(model_trace, layout, shape, set(latents.names)),
        None if guide_trace is None else _site_sum(guide_trace, layout, shape),
    )

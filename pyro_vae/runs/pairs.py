"""Training a model/guide pair written by hand, not built from specs.

``pv.train`` accepts, besides a :class:`~pyro_vae.LatentModel`:

- a ``(model, guide)`` tuple of Pyro programs, or
- an object with ``model`` and ``guide`` methods (an ``nn.Module`` or ``PyroModule``, as in
  Pyro's own ``examples/vae``),

whose parameters are ``pyro.param`` sites, modules registered with ``pyro.module``, or the
object's own ``nn.Module`` parameters. They are found by running both programs once on a batch.
Such a pair trains with the same loop, objectives and settings; what needs the specs is not
available: run directories (a run is rebuilt from its ``model.toml``/``guide.toml``), the fused
step, and the objectives' spec checks (the estimators check the pair as they run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PyroVaeError
from ..inference.layout import sample_sites, takes_particles, traced_pair
from ..model.latent_model import LatentModel
from ..objectives.comparison import parameter_groups
from .batches import as_args


@dataclass(frozen=True)
class PyroPair:
    """A hand-written pair as the training loop sees it: the programs, the tensors to optimize,
    the module they belong to (for ``train()``/``eval()`` modes), if any, and whether Pyro's
    estimators may give it its particles as a plate dimension (else they loop over them)."""

    model: Callable
    guide: Callable
    params: tuple[torch.Tensor, ...]
    module: nn.Module | None = None
    vectorized: bool = True

    def parameters(self):
        return iter(self.params)

    def train(self, mode: bool = True):
        if self.module is not None:
            self.module.train(mode)
        return self

    def eval(self):
        return self.train(False)


def trainable(
    obj, batch: torch.Tensor, collate=None, num_particles: int = 1
) -> LatentModel | PyroPair:
    """``obj`` as something the training loop can step: a LatentModel as it is, any other pair
    as a :class:`PyroPair` whose parameters were found by running it on ``batch`` (through
    ``collate``, where given: the pair is called with ``collate(*batch)``). Trained with
    ``num_particles`` > 1, the pair is tried on ``batch`` with a particle dimension
    (:func:`~pyro_vae.inference.layout.takes_particles`); one that cannot take it has its
    particles looped over."""
    if isinstance(obj, LatentModel):
        if collate is not None:
            raise PyroVaeError("collate is for hand-written pairs; a spec-built one takes x")
        return obj
    if isinstance(obj, tuple) and len(obj) == 2 and all(callable(p) for p in obj):
        model, guide, module = obj[0], obj[1], None
    elif callable(getattr(obj, "model", None)) and callable(getattr(obj, "guide", None)):
        model, guide = obj.model, obj.guide
        module = obj if isinstance(obj, nn.Module) else None
    else:
        raise PyroVaeError(
            f"pv.train trains a LatentModel (pv.load), a (model, guide) pair of Pyro programs, "
            f"or an object with model and guide methods; got {type(obj).__name__}"
        )
    if collate is not None:
        model, guide = _collated(model, guide, collate)
    groups = parameter_groups(model, guide, *as_args(batch))
    found = [p for group in groups.values() for _, p in group]
    if module is not None:
        found += list(module.parameters())
    unique = {id(p): p for p in found if p.requires_grad}
    if not unique:
        raise PyroVaeError(
            "the model and guide have no parameters to train: use pyro.param, pyro.module or "
            "PyroModule parameters"
        )
    _check_observes(model, guide, batch)
    plate = num_particles == 1 or takes_particles(model, guide, as_args(batch))
    return PyroPair(model, guide, tuple(unique.values()), module, plate)


def vectorized(pair: LatentModel | PyroPair) -> bool:
    """Whether Pyro's estimators may give ``pair`` its particles as a plate dimension: always
    for a spec-built pair, as :func:`trainable` found for one written by hand."""
    return not isinstance(pair, PyroPair) or pair.vectorized


def _collated(model, guide, collate) -> tuple[Callable, Callable]:
    """``model`` and ``guide`` called with ``collate(*arrays)`` in place of the arrays, collated
    once per batch: an estimator calls both with the same arrays, so the last arrays (kept, so
    that no other can take their identity) and what ``collate`` made of them are reused."""
    last = []  # [the arrays, their collated arguments]

    def collated(program):
        def called(*arrays):
            same = last and len(last[0]) == len(arrays)
            if not (same and all(a is b for a, b in zip(last[0], arrays, strict=True))):
                last[:] = [arrays, tuple(collate(*arrays))]
            return program(*last[1])

        return called

    return collated(model), collated(guide)


def _check_observes(model, guide, batch) -> None:
    """Refuse a pair whose model observes nothing when called with ``batch``'s arrays: its ELBO
    would be the KL of the guide alone, 0 at the prior, and training would 'converge' there."""
    _, trace = traced_pair(model, guide, as_args(batch))
    if not any(s["is_observed"] for s in sample_sites(trace)):
        raise PyroVaeError(
            f"the model observes nothing when called with {len(as_args(batch))} argument(s): it "
            "would train to an ELBO of 0. Give it the arrays it observes, in order, e.g. "
            "pv.train(pair, data, args=('x', 'labels'))"
        )

"""What the objectives computed from K particles' importance weights share: they run the pair
through :mod:`pyro_vae.inference.importance` (the particles as an outer plate) instead of a
Pyro trace of their own, and give Pyro's ``ELBO`` methods from their ``differentiable_loss``,
whose value is always the bound and whose gradient is the estimator's."""

from __future__ import annotations

import torch
from pyro.infer import ELBO

from ..inference.importance import WeightTerm, log_weight_terms, log_weights
from ..inference.layout import PlateLayout, inspect_pair


class WeightedObjective(ELBO):
    """Base of :mod:`~pyro_vae.objectives.iwae` (and so DReG and Rényi),
    :mod:`~pyro_vae.objectives.stl`, :mod:`~pyro_vae.objectives.vimco`,
    :mod:`~pyro_vae.objectives.rws` and :mod:`~pyro_vae.objectives.tvo`; a subclass defines
    ``differentiable_loss``."""

    #: Whether every guide site must be drawn by reparameterization.
    require_rsample = False

    def __init__(self, num_particles: int = 1, **kwargs):
        super().__init__(num_particles=num_particles, **kwargs)
        self._layouts: dict = {}

    def layout(self, model, guide, args, kwargs) -> PlateLayout:
        """The pair's plates, inspected once (the structure is static)."""
        key = (model, guide)
        if key not in self._layouts:
            self._layouts[key] = inspect_pair(
                model, guide, args, kwargs, require_rsample=self.require_rsample
            )
        return self._layouts[key]

    def log_weights(self, model, guide, args, kwargs, **options) -> torch.Tensor:
        """The ``(K, N)`` log weights of K particles; ``options`` as
        :func:`~pyro_vae.inference.importance.log_weights` takes them."""
        layout = self.layout(model, guide, args, kwargs)
        return log_weights(
            model, guide, args, kwargs, num_samples=self.num_particles, layout=layout, **options
        )

    def terms(self, model, guide, args, kwargs, fixed_draws=False) -> list[WeightTerm]:
        """The ``(K, N)`` log-weight terms of K particles, site by site."""
        layout = self.layout(model, guide, args, kwargs)
        return log_weight_terms(
            model,
            guide,
            args,
            kwargs,
            num_samples=self.num_particles,
            layout=layout,
            fixed_draws=fixed_draws,
        )

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError(f"{type(self).__name__} weighs particles, it has no trace")

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()

"""The importance-weighted bound (Burda et al. 2016, "Importance Weighted Autoencoders").

``IWAE_ELBO`` maximizes the K-sample bound

.. math:: \\mathcal{L}_K = \\mathbb{E}\\Big[\\log \\frac{1}{K}\\sum_{k=1}^K w_k\\Big], \\qquad
          w_k = \\frac{p(x, z_k)}{q(z_k \\mid x)},

which equals the ELBO at K = 1 and rises to log p(x) as K grows. It is computed per datapoint,
so it bounds each log p(x_n) and sums over the batch, with the K samples as one vectorized plate
(see :mod:`pyro_vae.inference.importance`). :mod:`~pyro_vae.objectives.dreg` and
:mod:`~pyro_vae.objectives.renyi` build on it.
"""

from __future__ import annotations

import math

import torch

from .weighted import WeightedObjective


class IWAE_ELBO(WeightedObjective):
    """The K-sample importance-weighted bound; ``num_particles`` is K.

    Every guide site must be reparameterizable (there is no score-function term).
    """

    detach_guide_params = False
    alpha = 0.0  # the Rényi order; IWAE is α = 0
    require_rsample = True

    def __init__(self, num_particles: int = 5, **kwargs):
        super().__init__(num_particles=num_particles, **kwargs)

    def _bound_and_weights(self, model, guide, args, kwargs, holder=None):
        lw = self.log_weights(
            model,
            guide,
            args,
            kwargs,
            detach_guide_params=self.detach_guide_params,
            path_grad_scale=holder,
        )
        scaled = (1.0 - self.alpha) * lw
        bound = (torch.logsumexp(scaled, 0) - math.log(self.num_particles)) / (1.0 - self.alpha)
        return bound, lw

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """−L_K summed over the batch; its gradient is the IWAE gradient."""
        bound, _ = self._bound_and_weights(model, guide, args, kwargs)
        return -bound.sum()

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            bound, _ = self._bound_and_weights(model, guide, args, kwargs)
        return -bound.sum().item()

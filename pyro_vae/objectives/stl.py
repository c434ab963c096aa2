"""The ELBO with the "sticking the landing" gradient (Roeder, Wu & Duvenaud 2017, "Sticking
the Landing: Simple, Lower-Variance Gradient Estimators for Variational Inference").

The reparameterized ELBO gradient of a guide :math:`q_\\phi` with :math:`z = g_\\phi(\\varepsilon)`
has two parts,

.. math:: \\nabla_\\phi \\big[\\log p(x, z) - \\log q_\\phi(z)\\big]
          = \\underbrace{\\nabla_z \\big[\\log p(x, z) - \\log q_\\phi(z)\\big]
            \\, \\nabla_\\phi g_\\phi(\\varepsilon)}_{\\text{path}}
          - \\underbrace{\\nabla_\\phi \\log q_\\phi(z)\\big|_{z \\text{ fixed}}}_{\\text{score}},

and the score term has expectation zero under q. ``STL_ELBO`` drops it by evaluating log q with
the guide's parameters held fixed: the same value, an unbiased gradient of the ELBO, and one
whose variance vanishes where q is the exact posterior (then the bracket is log p(x), constant
in z). With K particles it averages K such estimates.
"""

from __future__ import annotations

import torch
from pyro.infer import ELBO

from ..inference.importance import log_weights
from ..inference.layout import inspect_pair


class STL_ELBO(ELBO):
    """The ELBO, averaged over ``num_particles`` draws, with the sticking-the-landing gradient;
    every guide site must be reparameterizable."""

    def __init__(self, num_particles: int = 1, **kwargs):
        super().__init__(num_particles=num_particles, **kwargs)
        self._layouts: dict = {}

    def _elbo(self, model, guide, args, kwargs) -> torch.Tensor:
        """The ``(N,)`` ELBO estimates, log q's parameters held fixed."""
        key = (model, guide)  # the plate structure is static: one inspection per pair
        if key not in self._layouts:
            self._layouts[key] = inspect_pair(model, guide, args, kwargs, require_rsample=True)
        lw = log_weights(
            model,
            guide,
            args,
            kwargs,
            num_samples=self.num_particles,
            layout=self._layouts[key],
            detach_guide_params=True,
        )
        return lw.mean(0)

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("STL_ELBO computes its weights with inference.importance")

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """−ELBO summed over the batch; its gradient is the sticking-the-landing gradient."""
        return -self._elbo(model, guide, args, kwargs).sum()

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return -self._elbo(model, guide, args, kwargs).sum().item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()

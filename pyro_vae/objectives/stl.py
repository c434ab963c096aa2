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

from .weighted import WeightedObjective


class STL_ELBO(WeightedObjective):
    """The ELBO, averaged over ``num_particles`` draws, with the sticking-the-landing gradient;
    every guide site must be reparameterizable."""

    require_rsample = True

    def _elbo(self, model, guide, args, kwargs) -> torch.Tensor:
        """The ``(N,)`` ELBO estimates, log q's parameters held fixed."""
        return self.log_weights(model, guide, args, kwargs, detach_guide_params=True).mean(0)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """−ELBO summed over the batch; its gradient is the sticking-the-landing gradient."""
        return -self._elbo(model, guide, args, kwargs).sum()

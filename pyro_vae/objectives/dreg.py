"""IWAE with doubly reparameterized gradients (Tucker et al. 2019, "Doubly Reparameterized
Gradient Estimators for Monte Carlo Objectives").

IWAE's reparameterized gradient for the guide degrades as K grows (Rainforth et al. 2018).
``IWAE_DReG`` uses the estimator of Tucker et al., eq. (5): the same model gradient
:math:`\\sum_k \\tilde w_k \\nabla_\\theta \\log w_k`, and for the guide
:math:`\\sum_k \\tilde w_k^2 \\, (\\partial \\log w_k / \\partial z_k)
(\\partial z_k / \\partial \\phi)`
with log q's parameters held fixed — unbiased for the same gradient, with lower variance.
"""

from __future__ import annotations

import torch

from .iwae import IWAE_ELBO


class IWAE_DReG(IWAE_ELBO):
    """IWAE with doubly reparameterized guide gradients (Tucker et al. 2019).

    Valid for guides whose sites condition on the data only: with a latent feeding another
    guide site, holding log q's parameters fixed would also drop a path term.
    """

    detach_guide_params = True

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        holder: list = []
        bound, lw = self._bound_and_weights(model, guide, args, kwargs, holder)
        normalized = torch.softmax(lw.detach(), 0)
        holder.append(normalized)  # read by the gradient hooks on z during backward
        surrogate = (normalized * lw).sum()
        # Value: the bound itself; gradient: that of the surrogate.
        return -(bound.sum().detach() + surrogate - surrogate.detach())

"""Importance-weighted training objectives.

``IWAE_ELBO`` (Burda et al. 2016, "Importance Weighted Autoencoders") maximizes the K-sample
bound

.. math:: \\mathcal{L}_K = \\mathbb{E}\\Big[\\log \\frac{1}{K}\\sum_{k=1}^K w_k\\Big], \\qquad
          w_k = \\frac{p(x, z_k)}{q(z_k \\mid x)},

which equals the ELBO at K = 1 and rises to log p(x) as K grows. ``RenyiBound`` (Li & Turner 2016,
"Rényi Divergence Variational Inference") generalizes it with an order α ≠ 1:

.. math:: \\mathcal{L}_{\\alpha,K} = \\mathbb{E}\\Big[\\frac{1}{1-\\alpha}
          \\log \\frac{1}{K}\\sum_{k=1}^K w_k^{1-\\alpha}\\Big],

which is IWAE's bound at α = 0 and tends to the ELBO as α → 1; for 0 < α < 1 it lies between
the two. Unlike :class:`pyro.infer.RenyiELBO`, which weights the whole mini-batch jointly, both
are computed per datapoint, so they bound each log p(x_n) and sum over the batch.

IWAE's reparameterized gradient for the guide degrades as K grows (Rainforth et al. 2018).
``IWAE_DReG`` uses the doubly reparameterized estimator of Tucker et al. (2019), "Doubly
Reparameterized Gradient Estimators for Monte Carlo Objectives", eq. (5): the same model gradient
:math:`\\sum_k \\tilde w_k \\nabla_\\theta \\log w_k`, and for the guide
:math:`\\sum_k \\tilde w_k^2 \\, (\\partial \\log w_k / \\partial z_k)
(\\partial z_k / \\partial \\phi)`
with log q's parameters held fixed — unbiased for the same gradient, with lower variance.

Both take the K samples as one vectorized plate (see :mod:`pyro_vae.importance`).
"""

from __future__ import annotations

import math

import torch
from pyro.infer import ELBO

from .importance import inspect_pair, log_weights


class IWAE_ELBO(ELBO):
    """The K-sample importance-weighted bound; ``num_particles`` is K.

    Every guide site must be reparameterizable (there is no score-function term).
    """

    detach_guide_params = False
    alpha = 0.0  # the Rényi order; IWAE is α = 0

    def __init__(self, num_particles: int = 5, **kwargs):
        super().__init__(num_particles=num_particles, **kwargs)
        self._layouts: dict = {}

    def _layout(self, model, guide, args, kwargs):
        # The plate structure is static, so one inspection per (model, guide) pair suffices.
        key = (model, guide)
        if key not in self._layouts:
            self._layouts[key] = inspect_pair(model, guide, args, kwargs, require_rsample=True)
        return self._layouts[key]

    def _bound_and_weights(self, model, guide, args, kwargs, holder=None):
        layout = self._layout(model, guide, args, kwargs)
        lw = log_weights(
            model,
            guide,
            args,
            kwargs,
            num_samples=self.num_particles,
            layout=layout,
            detach_guide_params=self.detach_guide_params,
            path_grad_scale=holder,
        )
        scaled = (1.0 - self.alpha) * lw
        bound = (torch.logsumexp(scaled, 0) - math.log(self.num_particles)) / (1.0 - self.alpha)
        return bound, lw

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("IWAE_ELBO computes its weights with pyro_vae.importance")

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """−L_K summed over the batch; its gradient is the IWAE gradient."""
        bound, _ = self._bound_and_weights(model, guide, args, kwargs)
        return -bound.sum()

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            bound, _ = self._bound_and_weights(model, guide, args, kwargs)
        return -bound.sum().item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


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


class RenyiBound(IWAE_ELBO):
    """The per-datapoint variational Rényi bound of order ``alpha`` (α ≠ 1) with K samples.

    Its reparameterized gradient weights sample k by the normalized w_k^(1−α): α = 0 is IWAE,
    α → 1 the ELBO's uniform weights.
    """

    def __init__(self, num_particles: int = 5, alpha: float = 0.5, **kwargs):
        if alpha == 1:
            raise ValueError("alpha = 1 is the ELBO; use objective 'trace'")
        super().__init__(num_particles=num_particles, **kwargs)
        self.alpha = float(alpha)

"""Reweighted wake-sleep (Bornschein & Bengio 2015, "Reweighted Wake-Sleep"; the analysis of
Le et al. 2019, "Revisiting Reweighted Wake-Sleep for Models with Stochastic Control Flow").

With K draws :math:`z_k \\sim q_\\phi(z \\mid x)`, weights :math:`w_k = p_\\theta(x, z_k) /
q_\\phi(z_k \\mid x)` and their normalized values :math:`\\tilde w_k`, the model and the guide
get different gradients, neither through the draws:

.. math:: \\text{wake-}\\theta: \\sum_k \\tilde w_k \\nabla_\\theta \\log p_\\theta(x, z_k),
          \\qquad
          \\text{wake-}\\phi: \\sum_k \\tilde w_k \\nabla_\\phi \\log q_\\phi(z_k \\mid x).

Wake-θ is the gradient of the K-sample bound :math:`\\hat L = \\log \\frac1K \\sum_k w_k` in
θ, unbiased for :math:`\\nabla_\\theta \\mathbb E[\\hat L]`. Wake-φ is a self-normalized estimate
of :math:`-\\nabla_\\phi \\mathrm{KL}(p(z \\mid x) \\,\\|\\, q_\\phi(z \\mid x))`: the guide chases
the posterior from the other side than the ELBO's KL, needs no reparameterization and no
score-function term, and is biased for finite K (the bias falls as K grows). Both come from
one surrogate, θ and φ being different parameters; the reported value is :math:`\\hat L`.
Only the wake update of the guide is implemented (no sleep phase from model samples).
"""

from __future__ import annotations

import math

import torch

from .weighted import WeightedObjective


class ReweightedWakeSleep(WeightedObjective):
    """Reweighted wake-sleep with the wake-φ guide update; ``num_particles`` is K ≥ 2."""

    def __init__(self, num_particles: int = 5, **kwargs):
        if num_particles < 2:
            raise ValueError(f"reweighted wake-sleep needs 2 or more samples, got {num_particles}")
        super().__init__(num_particles=num_particles, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """−bound summed over the batch; its gradient is wake-θ for the model's parameters and
        wake-φ for the guide's."""
        terms = self.terms(model, guide, args, kwargs, fixed_draws=True)
        log_p = sum(t.value for t in terms if not t.in_guide)
        log_q = -sum(t.value for t in terms if t.in_guide)
        lw = (log_p - log_q).detach()
        bound = torch.logsumexp(lw, 0) - math.log(self.num_particles)
        surrogate = (torch.softmax(lw, 0) * (log_p + log_q)).sum()
        return -(bound.sum() + surrogate - surrogate.detach())

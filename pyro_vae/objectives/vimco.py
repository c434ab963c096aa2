"""VIMCO: the K-sample importance-weighted bound for discrete latents (Mnih & Rezende 2016,
"Variational Inference for Monte Carlo Objectives").

The bound is IWAE's, :math:`\\hat L = \\log \\frac1K \\sum_k w_k`. Where guide sites cannot be
reparameterized (discrete latents), its gradient needs a score-function term for each sample,
and VIMCO gives each sample its own baseline from the other K − 1:

.. math:: \\nabla \\hat L \\approx \\sum_k \\tilde w_k \\nabla \\log w_k
          + \\sum_k \\big(\\hat L - \\hat L_{-k}\\big) \\nabla \\log q(z_k \\mid x),
          \\qquad \\hat L_{-k} = \\log \\frac1K \\Big(\\sum_{j \\ne k} w_j
          + \\exp \\frac{1}{K-1} \\sum_{j \\ne k} \\log w_j\\Big),

with :math:`\\tilde w_k` the normalized weights: sample k's learning signal is how much the bound
owes to it against the geometric mean of the others standing in for it. The baselines do not
depend on :math:`z_k`, so the estimator stays unbiased for :math:`\\nabla \\mathbb E[\\hat L]`
(eq. 10 of the paper). Reparameterized guide sites keep their path gradient through
:math:`\\log w_k`; only the others enter the score term.
"""

from __future__ import annotations

import math

import torch

from .weighted import WeightedObjective


def leave_one_out_bounds(lw: torch.Tensor) -> torch.Tensor:
    """``(K, N)``: :math:`\\hat L_{-k}` of each sample, its weight replaced by the geometric
    mean of the other K − 1 (``lw``: ``(K, N)`` log weights, K ≥ 2)."""
    k = lw.shape[0]
    others_mean = (lw.sum(0, keepdim=True) - lw) / (k - 1)  # (K, N)
    replaced = lw.unsqueeze(0).expand(k, *lw.shape).clone()  # row k: every sample's weight
    index = torch.arange(k, device=lw.device)
    replaced[index, index] = others_mean
    return torch.logsumexp(replaced, 1) - math.log(k)


class VIMCO(WeightedObjective):
    """The K-sample bound with VIMCO's gradient; ``num_particles`` is K ≥ 2."""

    def __init__(self, num_particles: int = 5, **kwargs):
        if num_particles < 2:
            raise ValueError(f"VIMCO needs at least 2 samples per datapoint, got {num_particles}")
        super().__init__(num_particles=num_particles, **kwargs)

    def _weights(self, model, guide, args, kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log w, log q of the sites drawn without reparameterization)``, each ``(K, N)``."""
        terms = self.terms(model, guide, args, kwargs)
        lw = sum(t.value for t in terms)
        scored = [-t.value for t in terms if t.in_guide and not t.reparameterized]
        return lw, sum(scored) if scored else torch.zeros_like(lw)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """−bound summed over the batch; its gradient is VIMCO's estimate."""
        lw, log_q = self._weights(model, guide, args, kwargs)
        bound = torch.logsumexp(lw, 0) - math.log(self.num_particles)  # (N,)
        signal = bound.detach() - leave_one_out_bounds(lw.detach())  # (K, N)
        surrogate = bound.sum() + (signal * log_q).sum()
        return -(bound.sum().detach() + surrogate - surrogate.detach())

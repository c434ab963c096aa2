"""The thermodynamic variational objective (Masrani, Le & Wood 2019, "The Thermodynamic
Variational Objective").

log p(x) is the integral over β ∈ [0, 1] of :math:`\\mathbb E_{\\pi_\\beta}[\\log w]`, where
:math:`\\pi_\\beta(z) \\propto q(z \\mid x)^{1-\\beta} p(x, z)^\\beta` moves from the guide
(β = 0) to the posterior (β = 1) and :math:`w = p(x, z) / q(z \\mid x)`. The integrand grows
with β, so its left Riemann sum on the points :math:`0 = \\beta_0 < \\dots < \\beta_{P-1} < 1`
(here evenly spaced, :math:`\\beta_j = j / P`) is a lower bound,

.. math:: \\mathrm{TVO} = \\sum_{j=0}^{P-1} (\\beta_{j+1} - \\beta_j)\\,
          \\mathbb E_{\\pi_{\\beta_j}}[\\log w] \\le \\log p(x),

which is the ELBO at P = 1 and rises to log p(x) as P grows. Each expectation is estimated
from the same K draws of q by self-normalized importance sampling (weights
:math:`\\propto w_k^{\\beta_j}`), and its gradient by the covariance identity of the paper,
:math:`\\nabla \\mathbb E_\\pi[f] = \\mathbb E_\\pi[\\nabla f] + \\mathrm{Cov}_\\pi(f, \\nabla \\log
\\tilde\\pi)` with :math:`\\log \\tilde\\pi_\\beta = \\log q + \\beta \\log w`, at draws held fixed:
no reparameterization is needed, so discrete latents train with it. Both estimates are biased
for finite K (self-normalization; at K = 1 the covariance, and with it the guide's gradient,
vanishes), the bias falling as K grows.
"""

from __future__ import annotations

import torch

from .weighted import WeightedObjective


def partition_points(partitions: int) -> torch.Tensor:
    """β_0 … β_P: ``partitions`` + 1 evenly spaced points from 0 to 1."""
    return torch.linspace(0.0, 1.0, partitions + 1)


class TVO(WeightedObjective):
    """The TVO lower bound with ``partitions`` terms from ``num_particles`` draws per
    datapoint."""

    def __init__(self, num_particles: int = 5, partitions: int = 10, **kwargs):
        super().__init__(num_particles=num_particles, **kwargs)
        self.partitions = partitions

    def _bound_and_surrogate(self, lw: torch.Tensor, log_q: torch.Tensor):
        """The ``(N,)`` TVO estimates and a scalar whose gradient is the estimated gradient."""
        points = partition_points(self.partitions).to(lw)
        fixed = lw.detach()
        bound = lw.new_zeros(lw.shape[1:])
        surrogate = lw.new_zeros(())
        for beta, width in zip(points[:-1], points[1:] - points[:-1], strict=True):
            weights = torch.softmax(beta * fixed, 0)  # π_β's self-normalized weights
            expectation = (weights * fixed).sum(0)
            centred = weights * (fixed - expectation)  # the covariance's coefficients
            bound = bound + width * expectation
            surrogate = surrogate + width * (
                (weights * lw).sum() + (centred * (log_q + beta * lw)).sum()
            )
        return bound, surrogate

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """−TVO summed over the batch; its gradient is the covariance estimate."""
        terms = self.terms(model, guide, args, kwargs, fixed_draws=True)
        lw = sum(t.value for t in terms)
        log_q = -sum(t.value for t in terms if t.in_guide)
        bound, surrogate = self._bound_and_surrogate(lw, log_q)
        return -(bound.sum() + surrogate - surrogate.detach())

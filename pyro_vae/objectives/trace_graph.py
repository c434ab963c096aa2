"""Pyro's TraceGraph_ELBO with the ``differentiable_loss`` our single-optimizer loop needs."""

from __future__ import annotations

import pyro.infer
import torch
from pyro.infer.util import torch_item


class TraceGraph_ELBO(pyro.infer.TraceGraph_ELBO):
    """Pyro's TraceGraph_ELBO with a ``differentiable_loss``: its value is −ELBO, its gradient
    that of Pyro's Rao-Blackwellized surrogate (Schulman et al. 2015, "Gradient Estimation Using
    Stochastic Computation Graphs")."""

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        elbo, surrogate = self._loss_and_surrogate_loss(model, guide, args, kwargs)
        return -torch_item(elbo) + (surrogate - surrogate.detach())

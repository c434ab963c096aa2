"""Affine autoregressive flows from :mod:`pyro.distributions.transforms`, as the ``iaf`` guide
family and the ``flow_normal`` prior use them.

Each flow is an affine map whose shift and scale for dimension i depend on the dimensions before
i in its ordering (a MADE network, Germain et al. 2015), so its Jacobian is triangular and its
log-determinant a sum. Pyro's "stable" form is used, :math:`y = \\sigma \\odot x + (1-\\sigma)
\\odot \\mu` with :math:`\\sigma = \\mathrm{sigmoid}(s)` (Kingma et al. 2016, eq. (14)).
Running a flow forwards is one pass of its network; running it backwards takes one pass per
dimension. The orderings alternate between natural and reversed, fixed rather than random, so a
model rebuilt from its specs has the flows its checkpoint was trained with.
"""

from __future__ import annotations

import torch
from pyro.distributions.transforms import AffineAutoregressive, ConditionalAffineAutoregressive
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN
from torch import nn


def ordering(dim: int, index: int) -> torch.Tensor:
    """The autoregressive order of flow ``index``: natural for even, reversed for odd."""
    order = torch.arange(dim)
    return order if index % 2 == 0 else order.flip(0)


def autoregressive_flows(dim: int, hidden: list[int], count: int) -> nn.ModuleList:
    """``count`` unconditional flows on ``dim`` dimensions."""
    return nn.ModuleList(
        AffineAutoregressive(
            AutoRegressiveNN(dim, hidden, permutation=ordering(dim, i)), stable=True
        )
        for i in range(count)
    )


def conditional_autoregressive_flows(
    dim: int, context: int, hidden: list[int], count: int
) -> nn.ModuleList:
    """``count`` flows whose networks also see a ``context`` vector (amortized flows)."""
    return nn.ModuleList(
        ConditionalAffineAutoregressive(
            ConditionalAutoRegressiveNN(dim, context, hidden, permutation=ordering(dim, i)),
            stable=True,
        )
        for i in range(count)
    )

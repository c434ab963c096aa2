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

from ..spec.options import Option, list_of, positive_int
from .counting import Size, SpecEntry, sum_of, times

#: The keys of a spec entry with flows (the ``iaf`` guide family, the ``flow_normal`` prior).
FLOW_OPTIONS = {
    "flows": Option(positive_int, 2, "number of autoregressive flows"),
    "hidden": Option(
        list_of(positive_int, allow_empty=False),
        None,
        "hidden sizes of each flow's network (default [4 × dim])",
    ),
}


def hidden_sizes(hidden: list[int] | None, dim: int) -> list[int]:
    """The flows' hidden sizes (default ``[4 · dim]``); raises ``ValueError`` for a size below
    ``dim``: a MADE layer needs a unit for every input it orders."""
    hidden = hidden or [4 * dim]
    if min(hidden) < dim:
        raise ValueError(f"each hidden size must be at least dim = {dim}, got {hidden}")
    return hidden


def counted_hidden(entry: SpecEntry, dim: Size) -> list[Size]:
    """:func:`hidden_sizes` as counted sizes: the entry's ``hidden``, or the default
    ``[4 · dim]``, which the latent's ``dim`` then sizes."""
    return entry.sizes("hidden") or [times(Size(4), dim)]


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


def flow_values(count: Size, dim: Size, hidden: list[Size], context: Size | None):
    """The tensors of ``count`` flows as :func:`autoregressive_flows` (``context`` None) or
    :func:`conditional_autoregressive_flows` build them: each one's network (Pyro's
    ``AutoRegressiveNN``) has per masked layer a weight, its mask (a buffer of the same shape)
    and a bias; its outputs are a shift and a scale per dimension; its permutation is an int64
    buffer (2 float32s each)."""
    two = Size(2)
    widths = [sum_of([dim, context]) if context else dim, *hidden, times(two, dim)]
    tensors: list[tuple[Size, ...]] = [(two, dim)]
    for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
        tensors += [(two, n_in, n_out), (n_out,)]
    return [(count, *t) for t in tensors]

"""Variational families of guide nodes.

A guide family names which model supports it can approximate and builds, for one model latent,
the :class:`~pyro_vae.model.families.Family` that gives q(latent | inputs): from the raw output
of the node's net when the guide node has parents (amortized), from its own learned parameters
when it has none.

``diagonal_normal``
    :math:`\\mathcal N(\\mu, \\mathrm{diag}\\,\\sigma^2)`: the mean-field Gaussian.
``full_normal``
    :math:`\\mathcal N(\\mu, LL^\\top)` with a lower-triangular Cholesky factor L from the net
    (positive diagonal): every correlation between the latent's dimensions. With
    ``cholesky = "relative"``, :math:`L = \\mathrm{diag}(\\sigma)(I + M/d)`: the net's
    off-diagonal outputs M are relative to their row's scale σ and start d times smaller, so
    q starts near mean field and the net's d(d−1)/2 off-diagonal outputs do not swamp its
    shared layers; with ``"absolute"`` (the default, as runs made before the option were
    built) the net gives L's entries themselves, which on MNIST costs 15 nats at 100 epochs
    (docs/reproducing.md).
``low_rank_normal``
    :math:`\\mathcal N(\\mu, FF^\\top + \\mathrm{diag}\\,d)` with F of shape (dim, ``rank``):
    correlations of rank ``rank`` at a cost linear in dim.
``iaf``
    an inverse autoregressive flow (Kingma et al. 2016, "Improved Variational Inference with
    Inverse Autoregressive Flow"): a diagonal Gaussian from the net pushed through ``flows``
    affine autoregressive flows whose networks also see a context vector from the same net.
``categorical`` / ``enumerate``
    an amortized categorical, or no guide site at all: the model sums the latent out.
``bernoulli``
    independent amortized Bernoulli units, for binary latents (a sigmoid belief network's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from ..spec.options import Option, one_of, positive_int
from .counting import FamilyShape, Size, head_or_own, sum_of, times
from .families import MIN_SCALE, Bernoulli, Categorical, Family, Normal, OptionError
from .flows import (
    FLOW_OPTIONS,
    autoregressive_flows,
    conditional_autoregressive_flows,
    counted_hidden,
    flow_values,
    hidden_sizes,
)


@dataclass(frozen=True)
class GuideFamily:
    """``supports``: the model supports it approximates; ``build(target, conditional,
    **options)``; ``options``: the keys a guide entry of this family may set; ``count``: the
    ``count`` of the family class it builds (:meth:`Family.count`), which a sampled family
    must have, so that its size is known before it is built."""

    supports: frozenset[str]
    build: Callable[..., Family | None]
    sampled: bool = True  # False: no guide site; the model sums the latent out exactly
    options: dict[str, Option] = field(default_factory=dict)
    count: Callable[..., FamilyShape] | None = None


GUIDE_FAMILIES: Registry[GuideFamily] = Registry("guide family")


def register_guide_family(
    name: str,
    supports: set[str],
    sampled: bool = True,
    options: dict | None = None,
    count: Callable[..., FamilyShape] | None = None,
):
    if sampled and count is None:
        raise ValueError(f"guide family {name!r} builds a family, so it needs a count")

    def decorator(build):
        GUIDE_FAMILIES.register(name)(
            GuideFamily(frozenset(supports), build, sampled, options or {}, count)
        )
        return build

    return decorator


# Normal's default scale is the one built here (the entry has no options to override it).
@register_guide_family("diagonal_normal", {"real"}, count=Normal.count)
def diagonal_normal(target: Family, conditional: bool) -> Family:
    return Normal(target.size, conditional, scale="net" if conditional else "learned_per_dim")


def _positive(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw) + MIN_SCALE


class FullNormal(Family):
    """Full-covariance Gaussian: mean, then the Cholesky factor's diagonal (through softplus),
    then its strictly lower entries, row by row. ``cholesky="relative"``: those entries, over
    d, are relative to their row's scale, L = diag(σ)(I + M/d)."""

    support = "real"

    def __init__(self, size, conditional, cholesky: str = "absolute"):
        super().__init__(size, conditional)
        self.relative = cholesky == "relative"
        self.register_buffer("lower", torch.tril_indices(size, size, -1), persistent=False)
        if not conditional:
            self.raw = nn.Parameter(torch.zeros(self.head_size))

    @classmethod
    def count(cls, size, conditional, entry, data):
        lower = Size(size.value * (size.value - 1) // 2, size.path, size.key)
        head = sum_of([times(Size(2), size), lower])
        # The indices of the strictly lower triangle: two int64 (four float32s) per entry.
        return FamilyShape(head, [(Size(4), lower), *head_or_own(head, conditional).own])

    @property
    def head_size(self):
        return 2 * self.size + self.size * (self.size - 1) // 2

    def forward(self, raw=None):
        raw = self.raw if raw is None else raw
        d = self.size
        loc, diag, off = raw[..., :d], raw[..., d : 2 * d], raw[..., 2 * d :]
        strict = off.new_zeros(*off.shape[:-1], d, d)
        strict[..., self.lower[0], self.lower[1]] = off
        scale = _positive(diag)
        if self.relative:  # diag(σ)(I + M/d): each row scaled by its σ, M starting small
            strict = strict / d
            return dist.MultivariateNormal(
                loc, scale_tril=scale.unsqueeze(-1) * strict + torch.diag_embed(scale)
            )
        return dist.MultivariateNormal(loc, scale_tril=strict + torch.diag_embed(scale))


@torch.distributions.kl.register_kl(
    torch.distributions.MultivariateNormal, torch.distributions.Independent
)
def _kl_full_normal_diagonal_normal(q, p):
    """KL(N(μ, LLᵀ) ‖ N(m, diag s²)) in closed form, for a full-covariance guide against a
    factorized Gaussian prior (torch registers none): ½[Σᵢ (Σⱼ L_ij² + (μᵢ − mᵢ)²)/sᵢ² − d]
    + Σᵢ log sᵢ − Σᵢ log L_ii. Without it the KL is sampled, and Adam turns the noise of the
    sampled KL's gradient on the guide's d(d−1)/2 off-diagonal outputs into steps of full size
    (docs/reproducing.md measures what that costs). Other factorized priors: no closed form."""
    base = p.base_dist
    if p.reinterpreted_batch_ndims != 1 or not isinstance(base, torch.distributions.Normal):
        raise NotImplementedError
    scale_tril, inverse_variance = q.scale_tril, base.scale.pow(-2)
    spread = (scale_tril.pow(2).sum(-1) + (q.loc - base.loc).pow(2)) * inverse_variance
    log_det = base.scale.log().sum(-1) - scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (spread.sum(-1) - q.event_shape[-1]) + log_det


class LowRankNormal(Family):
    """Gaussian with covariance F Fᵀ + diag(d): mean, then F (dim × rank, row by row), then the
    standard deviations √d (through softplus)."""

    support = "real"

    def __init__(self, size, conditional, rank):
        super().__init__(size, conditional)
        self.rank = rank
        if not conditional:
            self.raw = nn.Parameter(torch.zeros(self.head_size))

    @classmethod
    def count(cls, size, conditional, entry, data):
        # The factor's columns, the mean and the scale: rank + 2 values per dimension.
        rank = entry.size("rank", entry.options["rank"] + 2)
        return head_or_own(times(size, rank), conditional)

    @property
    def head_size(self):
        return self.size * (self.rank + 2)

    def forward(self, raw=None):
        raw = self.raw if raw is None else raw
        d, r = self.size, self.rank
        loc, factor, diag = raw[..., :d], raw[..., d : d + d * r], raw[..., d + d * r :]
        factor = factor.reshape(*factor.shape[:-1], d, r)
        return dist.LowRankMultivariateNormal(loc, factor, _positive(diag) ** 2)


class InverseAutoregressiveFlow(Family):
    """q(z | x): a diagonal Gaussian pushed through ``flows`` affine autoregressive flows.

    With parents, the net gives the Gaussian's mean and scale and a ``context`` vector that
    every flow's network also sees (Kingma et al. 2016, section 4); without, they are learned.
    Samples and their log density cost one pass per flow; the density of any other point one
    pass per flow and dimension (the flows run backwards).
    """

    support = "real"

    def __init__(self, size, conditional, flows: int, hidden: list[int] | None, context: int):
        super().__init__(size, conditional)
        try:
            hidden = hidden_sizes(hidden, size)
        except ValueError as e:
            raise OptionError("hidden", str(e)) from None
        self.context_size = context if conditional else 0
        if conditional:
            self.flows = conditional_autoregressive_flows(size, context, hidden, flows)
        else:
            self.flows = autoregressive_flows(size, hidden, flows)
            self.raw = nn.Parameter(torch.zeros(2 * size))

    @classmethod
    def count(cls, size, conditional, entry, data):
        flows, hidden = entry.size("flows"), counted_hidden(entry, size)
        two_dims = times(Size(2), size)
        if conditional:
            context = entry.size("context")
            head = sum_of([two_dims, context])
            return FamilyShape(head, flow_values(flows, size, hidden, context))
        return FamilyShape(two_dims, [*flow_values(flows, size, hidden, None), (two_dims,)])

    @property
    def head_size(self):
        return 2 * self.size + self.context_size

    def forward(self, raw=None):
        raw = self.raw if raw is None else raw
        d = self.size
        base = dist.Normal(raw[..., :d], _positive(raw[..., d : 2 * d])).to_event(1)
        if self.conditional:
            context = raw[..., 2 * d :]
            transforms = [flow.condition(context) for flow in self.flows]
        else:
            transforms = list(self.flows)
        return dist.TransformedDistribution(base, transforms)


@register_guide_family(
    "full_normal",
    {"real"},
    options={
        "cholesky": Option(
            one_of(("absolute", "relative")),
            "absolute",
            'cholesky = "relative": L = diag(σ)(I + M/d), off-diagonals relative to their '
            "row's scale; \"absolute\": the net gives L's entries",
        )
    },
    count=FullNormal.count,
)
def full_normal(target: Family, conditional: bool, cholesky: str = "absolute") -> Family:
    return FullNormal(target.size, conditional, cholesky)


@register_guide_family(
    "low_rank_normal",
    {"real"},
    options={"rank": Option(positive_int, doc="rank = <positive integer>, the rank of F")},
    count=LowRankNormal.count,
)
def low_rank_normal(target: Family, conditional: bool, rank: int) -> Family:
    return LowRankNormal(target.size, conditional, rank)


@register_guide_family(
    "iaf",
    {"real"},
    options={
        **FLOW_OPTIONS,
        "context": Option(positive_int, 32, "size of the context vector the net gives the flows"),
    },
    count=InverseAutoregressiveFlow.count,
)
def iaf(target: Family, conditional: bool, flows: int, hidden, context: int) -> Family:
    return InverseAutoregressiveFlow(target.size, conditional, flows, hidden, context)


#: ``enumerate = "parallel"`` on a guide node: the guide's site is enumerated (every value at
#: once, weighted by q), so that later guide nodes can condition on it and TraceEnum_ELBO sums
#: it out under q (M2's q(y | x) with q(z | x, y)). The family is built without it.
ENUMERATE = "enumerate"


@register_guide_family(
    "categorical",
    {"categorical"},
    options={
        ENUMERATE: Option(
            one_of(("parallel",)), None, 'enumerate = "parallel": sum it out in the guide'
        )
    },
    count=Categorical.count,
)
def categorical(target: Family, conditional: bool, enumerate: str | None = None) -> Family:
    return Categorical(target.size, conditional, weights=None if conditional else "learned")


@register_guide_family("bernoulli", {"binary"}, count=Bernoulli.count)
def bernoulli(target: Family, conditional: bool) -> Family:
    """Independent Bernoulli units, logits from the net (or learned, without parents)."""
    return Bernoulli(target.size, conditional)


@register_guide_family("enumerate", {"categorical"}, sampled=False)
def enumerate_(target: Family, conditional: bool) -> None:
    # The model marks the site for parallel enumeration; TraceEnum_ELBO sums it out.
    return None

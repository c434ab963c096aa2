"""Variational families of guide nodes.

A guide family names which model supports it can approximate and builds, for one model latent,
the :class:`~pyro_vae.model.families.Family` that gives q(latent | inputs). The amortized
families reuse the model families: a diagonal Gaussian guide is a ``normal`` whose mean and scale
come from a net.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..registry import Registry
from .families import Categorical, Family, Normal


@dataclass(frozen=True)
class GuideFamily:
    """``supports``: the model supports it approximates; ``build(target, conditional)``."""

    supports: frozenset[str]
    build: Callable[[Family, bool], Family | None]
    sampled: bool = True  # False: no guide site; the model sums the latent out exactly


GUIDE_FAMILIES: Registry[GuideFamily] = Registry("guide family")


def register_guide_family(name: str, supports: set[str], sampled: bool = True):
    def decorator(build):
        GUIDE_FAMILIES.register(name)(GuideFamily(frozenset(supports), build, sampled))
        return build

    return decorator


@register_guide_family("diagonal_normal", {"real"})
def diagonal_normal(target: Family, conditional: bool) -> Family:
    return Normal(target.size, conditional, scale="net" if conditional else "learned_per_dim")


@register_guide_family("categorical", {"categorical"})
def categorical(target: Family, conditional: bool) -> Family:
    return Categorical(target.size, conditional, weights=None if conditional else "learned")


@register_guide_family("enumerate", {"categorical"}, sampled=False)
def enumerate_(target: Family, conditional: bool) -> None:
    # The model marks the site for parallel enumeration; TraceEnum_ELBO sums it out.
    return None

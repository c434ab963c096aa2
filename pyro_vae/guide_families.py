"""Variational families of guide nodes.

A guide family names which model supports it can approximate and builds, for one model latent,
the :class:`~pyro_vae.families.Family` that gives q(latent | inputs). The amortized families reuse
the model families: a diagonal Gaussian guide is a ``normal`` whose mean and scale come from a net.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .families import Categorical, Family, Normal
from .registry import Registry


@dataclass(frozen=True)
class GuideFamily:
    """``supports``: the model supports it approximates; ``build(target, conditional)``."""

    supports: frozenset[str]
    build: Callable[[Family, bool], Family]
    doc: str = ""


GUIDE_FAMILIES: Registry[GuideFamily] = Registry("guide family")


def register_guide_family(name: str, supports: set[str], doc: str = ""):
    def decorator(build):
        GUIDE_FAMILIES.register(name)(GuideFamily(frozenset(supports), build, doc))
        return build

    return decorator


@register_guide_family("diagonal_normal", {"real"}, "amortized diagonal Gaussian")
def diagonal_normal(target: Family, conditional: bool) -> Family:
    return Normal(target.size, conditional, scale="net" if conditional else "learned_per_dim")


@register_guide_family("categorical", {"categorical"}, "amortized categorical")
def categorical(target: Family, conditional: bool) -> Family:
    return Categorical(target.size, conditional, weights=None if conditional else "learned")

r"""Discrete latents summed out exactly, in the weights of any estimator.

A discrete latent marked for parallel enumeration (``infer={"enumerate": "parallel"}``, Pyro's
``config_enumerate``) is given every value of its support at once along a dimension of its own,
left of the particle dimension (:func:`enumerating`), and each estimate sums those values out:

- **importance weights** (``"sum"``): with y enumerated in the guide and z drawn from
  :math:`q(z \mid x, y)`, :math:`w = \sum_y p(x, y, z_y) / q(z_y \mid x, y)`, whose expectation is
  :math:`\sum_y p(x, y) = p(x)`; q(y | x) does not enter, the sum over y is exact. A latent
  enumerated in the model alone (no guide site) is summed the same way, with its prior.
- **the ELBO** (``"expectation"``): the guide's enumerated latents are averaged under their own
  probabilities, :math:`\sum_y q(y \mid x)\,[\log p(x, y, z_y) - \log q(y \mid x) -
  \log q(z_y \mid x, y)]`, as Pyro's ``TraceEnum_ELBO`` computes it; the model's alone are
  summed inside the logarithm, :math:`\log \sum_y p(x, y, z)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection

import pyro.poutine as poutine
import torch

from ..errors import ModelGuideError
from .layout import PlateLayout, is_enumerated

#: is_enumerated lives in layout (which this module imports) and is offered here too.
__all__ = [
    "enum_rank",
    "enumerating",
    "is_enumerated",
    "marked_enumerated",
    "reduced",
    "summed_out",
]


def enumerating(layout: PlateLayout, names: Collection[str] | None = None):
    """The context in which enumerated latents take all their values: dimensions from just left
    of the particle dimension outwards. ``names``: the latents enumerated (default: the pair's,
    ``layout.enumerated``); none, no context."""
    if not (layout.enumerated if names is None else names):
        return contextlib.nullcontext()
    return poutine.enum(first_available_dim=layout.particle_dim - 1)


def marked_enumerated(program, names: Collection[str]):
    """``program`` with its sites ``names`` marked for parallel enumeration (run it inside
    :func:`enumerating` with the same ``names``); ``program`` itself where there are none."""
    if not names:
        return program
    chosen = set(names)
    return poutine.infer_config(
        program, lambda site: {"enumerate": "parallel"} if site["name"] in chosen else {}
    )


def reduced(log_prob: torch.Tensor, site, layout: PlateLayout, enum_rank: int) -> torch.Tensor:
    """A site's log density summed over every plate dim but the particle and data dims,
    keeping ``enum_rank`` enumeration dims on the left: ``(E_1 … E_r, K, N)``, broadcastable.

    :raises ModelGuideError: the log density has more batch dims than the plates (and the
        enumeration dims) account for.
    """
    mask = site["mask"]
    if mask is not None and not isinstance(mask, bool):
        log_prob = log_prob * mask
    elif mask is False:
        log_prob = torch.zeros_like(log_prob)
    total = enum_rank + layout.max_plate_nesting + 1
    if log_prob.dim() > total:
        raise ModelGuideError(f"site '{site['name']}' has more batch dims than the model's plates")
    log_prob = log_prob.reshape((1,) * (total - log_prob.dim()) + log_prob.shape)
    keep = {*range(enum_rank + 1), total + layout.data_dim}
    other = [d for d in range(total) if d not in keep]
    return log_prob.sum(other) if other else log_prob


def enum_rank(sites, layout: PlateLayout) -> int:
    """How many enumeration dims the sites use."""
    dims = [-s["infer"]["_enumerate_dim"] for s in sites if "_enumerate_dim" in s["infer"]]
    return max(dims, default=-layout.particle_dim) + layout.particle_dim


def summed_out(
    joint: torch.Tensor,
    guide_enumerated: torch.Tensor | None,
    guide_dims: list[int],
    enum_rank: int,
    mode: str,
) -> torch.Tensor:
    """The ``(K, N)`` estimate from ``joint`` = log p − log q of the sampled latents, with
    enumeration dims on the left, and ``guide_enumerated`` = log q of the guide's enumerated
    latents (None: no guide site is enumerated) along ``guide_dims`` (their positions)."""
    model_dims = [d for d in range(enum_rank) if d not in guide_dims]
    if mode == "sum" or guide_enumerated is None:
        return torch.logsumexp(joint, dim=tuple(range(enum_rank))) if enum_rank else joint
    if model_dims:
        joint = torch.logsumexp(joint, dim=tuple(model_dims), keepdim=True)
    joint, log_q = torch.broadcast_tensors(joint, guide_enumerated)
    weights = log_q.exp()
    terms = torch.where(weights > 0, weights * (joint - log_q), torch.zeros_like(joint))
    return terms.sum(dim=tuple(range(enum_rank)))

r"""Free bits: a floor under each latent group's KL in the training objective.

Kingma et al. (2016, "Improved variational inference with inverse autoregressive flow",
appendix C) divide the latents into groups :math:`j` and train on

.. math::

    \tilde{\mathcal L}_\lambda = \sum_{n \in M} \mathbb E_{q}\big[\log p(x_n \mid z_n)\big]
        - |M| \sum_j \max\Big(\lambda,\ \frac{1}{|M|} \sum_{n \in M}
            \mathrm{KL}\big(q(z_j \mid x_n) \,\|\, p(z_j)\big)\Big)

for a minibatch :math:`M`: a group whose KL, averaged over the batch, is below λ nats gets no
gradient pushing it further towards the prior, so the optimizer is free to spend λ nats of
information on it. This counters posterior collapse (units the KL term shuts off early, before
the decoder learns to use them), as KL warm-up does, but by a floor rather than a ramp. At
λ = 0 it is the ELBO (with sampled KLs, wherever no group's batch-mean estimate is
negative). The objective is not a bound on log p(x): a run reports the ELBO on its test and
validation data, not this.

A **group** is a latent site (``per="site"``: each node of a spec, each ``z_t`` of a chain, any
site of a hand-written pair) or each coordinate of one (``per="dim"``, for factorized prior and
guide distributions: ``Independent`` of a univariate family). The KL of a site is taken in
closed form where torch has one and ``analytic_kl`` is set (as ``TraceMeanField_ELBO``), else
sampled, :math:`\log q(z) - \log p(z)` (as ``Trace_ELBO``); Pyro's masks and scales apply.
The KL weight β (and its warm-up) multiplies the floored sum, as it multiplies the KL.
"""

from __future__ import annotations

import pyro.poutine as poutine
import torch
from torch.distributions import Independent

from ..errors import ModelGuideError
from ..inference.estimand import sample_sites
from ..inference.importance import closed_form_kl
from ..inference.layout import data_plate_name

#: What one group of latents is: a whole site, or each coordinate of one.
FREE_BITS_GROUPS = ("site", "dim")


class FreeBitsELBO:
    """The free-bits objective of Kingma et al. (2016) with floor ``free_bits`` (λ, nats per
    group), as a Pyro-style estimator: ``differentiable_loss(model, guide, *args)`` is
    :math:`-\\tilde{\\mathcal L}_\\lambda` summed over the batch, averaged over
    ``num_particles`` draws; works on any pair whose latents are reparameterized and sit in a
    data plate."""

    def __init__(
        self,
        free_bits: float,
        per: str = "site",
        analytic_kl: bool = False,
        num_particles: int = 1,
        kl_weight: float = 1.0,
    ):
        if per not in FREE_BITS_GROUPS:
            raise ValueError(f"per must be one of {FREE_BITS_GROUPS}, got {per!r}")
        self.free_bits, self.per, self.analytic_kl = float(free_bits), per, analytic_kl
        self.num_particles, self.kl_weight = num_particles, kl_weight

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        total = sum(self._particle(model, guide, args, kwargs) for _ in range(self.num_particles))
        return total / self.num_particles

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def group_kls(self, model, guide, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Each latent site's KL averaged over the batch (a vector over its coordinates for
        ``per="dim"``), from one draw: what the floor applies to."""
        return self._terms(model, guide, args, kwargs)[1]

    def _particle(self, model, guide, args, kwargs) -> torch.Tensor:
        reconstruction, kls, rows = self._terms(model, guide, args, kwargs)
        floored = sum(kl.clamp(min=self.free_bits).sum() for kl in kls.values())
        return -(reconstruction - self.kl_weight * rows * floored)

    def _terms(self, model, guide, args, kwargs):
        """Σ log p(x | z) over the batch, each site's batch-mean KL, and the batch's rows."""
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        sites = sample_sites(model_trace)
        plate, per_dim = data_plate_name(sites, None), self.per == "dim"
        reconstruction, kls, rows = 0.0, {}, None
        for site in sites:
            if site["is_observed"]:
                log_p = site["fn"].log_prob(site["value"])
                reconstruction = reconstruction + _masked(site, log_p).sum()
                continue
            frame = next(f for f in site["cond_indep_stack"] if f.name == plate)
            kl = self._site_kl(guide_trace.nodes[site["name"]], site)
            dim = frame.dim - per_dim  # past the coordinates' axis
            rows = kl.shape[dim]
            kl = kl.mean(dim)
            kls[site["name"]] = kl.reshape(-1, kl.shape[-1]).sum(0) if per_dim else kl.sum()
        return reconstruction, kls, rows or 1

    def _site_kl(self, q_site, p_site) -> torch.Tensor:
        """The KL of one site per datapoint (and per coordinate), masked and scaled as Pyro
        scales the site's log density."""
        q, p, z = q_site["fn"], p_site["fn"], q_site["value"]
        if not getattr(q, "has_rsample", False) or q_site["infer"].get("enumerate"):
            raise ModelGuideError(
                f"free bits: guide site {q_site['name']!r} is not reparameterized; free bits "
                f"trains by the reparameterized gradient of each group's KL"
            )
        if self.per == "dim":
            q, p = _coordinates(q, q_site["name"]), _coordinates(p, p_site["name"])
        kl = closed_form_kl(q, p) if self.analytic_kl else None
        if kl is None:
            kl = q.log_prob(z) - p.log_prob(z)
        kl = kl.expand(torch.broadcast_shapes(kl.shape, q.batch_shape))
        return _masked(p_site, kl, trailing=1 if self.per == "dim" else 0)


def _coordinates(d, name: str):
    """The univariate factors of a factorized distribution (its batch shape ends with the
    coordinates), for groups per coordinate."""
    if isinstance(d, Independent) and d.reinterpreted_batch_ndims == 1:
        return d.base_dist
    if not d.event_shape:
        return d
    raise ModelGuideError(
        f"free bits per dim: site {name!r} has a {type(d).__name__} distribution, not a "
        f"factorized one (Independent of a univariate family); use free bits per site"
    )


def _masked(site, log_density: torch.Tensor, trailing: int = 0) -> torch.Tensor:
    """``log_density`` times the site's mask and scale (``trailing`` axes after the site's
    batch shape, which the mask does not cover)."""
    mask = site["mask"]
    if mask is not None:
        mask = torch.as_tensor(mask, device=log_density.device)
        log_density = log_density * mask.reshape(mask.shape + (1,) * trailing)
    return log_density * site["scale"]

"""Per-datapoint importance weights of any Pyro model/guide pair, vectorized over samples.

For each datapoint x_n and K samples z_{n,k} ~ q(z | x_n) the log weights are

.. math:: \\log w_{n,k} = \\log p(x_n, z_{n,k}) - \\log q(z_{n,k} \\mid x_n),

computed in one pass with the samples as an outer plate ``"particles"`` to the left of the
model's plates (the layout of Pyro's ``vectorize_particles``), so the model and guide run once
per chunk of samples, not once per sample. Every site sits in the data plate
(:mod:`~pyro_vae.inference.layout`); each site's log density is summed over all its other
dimensions, leaving a ``(K, N)`` tensor.
"""

from __future__ import annotations

import copy
import functools
import types
from dataclasses import dataclass

import pyro.poutine as poutine
import torch
from pyro.distributions.util import is_identically_zero
from torch import nn
from torch.distributions import kl_divergence

from ..errors import ModelGuideError
from ..results.choices import Proposal
from .enumeration import enum_rank, enumerating, is_enumerated, reduced, summed_out
from .layout import PlateLayout, sample_sites
from .particles import Particles


def _site_device(sites) -> torch.device:
    """The device the pair computes on: that of its first tensor-valued site."""
    for site in sites:
        if torch.is_tensor(site["value"]):
            return site["value"].device
    return torch.device("cpu")


def log_weights(
    model,
    guide,
    args=(),
    kwargs=None,
    *,
    num_samples: int,
    layout: PlateLayout,
    proposal: str = "guide",
    analytic_kl: bool = False,
    detach_guide_params: bool = False,
    path_grad_scale: list | None = None,
    enumerated: str = "sum",
) -> torch.Tensor:
    """``(num_samples, N)`` log weights ``log p(x, z) − log q(z | x)``; differentiable.

    :param proposal: ``"guide"``, or ``"prior"`` for the naive estimator (z ~ p(z), so the weight
        is just p(x | z)).
    :param analytic_kl: replace ``log p(z) − log q(z)`` by ``−KL(q ‖ p)`` where a closed form
        exists (TraceMeanField's estimator of the ELBO; not a valid importance weight).
    :param detach_guide_params: evaluate ``log q`` with the guide's distribution parameters
        detached, keeping the path through z (the doubly reparameterized estimator's weights).
    :param path_grad_scale: a list the caller fills, after this returns, with a ``(K, N)``
        tensor; gradients that reach the guide through the sampled z are multiplied by it.
    :param enumerated: how enumerated discrete latents are summed out
        (:mod:`~pyro_vae.inference.enumeration`): ``"sum"`` for importance weights,
        ``"expectation"`` for the ELBO.
    """
    from_guide = Proposal.of(proposal).uses_guide
    particles, model_trace, guide_trace = _traces(
        model, guide, args, kwargs or {}, num_samples, layout, from_guide, path_grad_scale
    )
    sites = sample_sites(model_trace)
    # The batch may differ from the one inspected (say, the last batch of an epoch).
    shape = particles.program_shape(layout.batch_size(sites))
    terms = _terms(model_trace, guide_trace, analytic_kl, detach_guide_params)
    if not terms:
        return particles.per_datapoint(torch.zeros(shape, device=_site_device(sites)))
    return particles.per_datapoint(_total(terms, layout, shape, enumerated))


def _traces(
    model,
    guide,
    args,
    kwargs,
    num_samples,
    layout,
    from_guide,
    path_grad_scale=None,
    fixed_draws=False,
):
    """``(particles, model trace, guide trace)``: K samples per datapoint drawn from the guide
    (or, ``from_guide`` False, the prior: no guide trace) and the model replayed on them;
    ``fixed_draws``: the guide run again on its draws detached, so that no gradient flows
    through a draw (each density's gradient is taken at a fixed z)."""
    particles = Particles(layout, num_samples)
    with particles.running(args, kwargs) as (args, kwargs), enumerating(layout):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs) if from_guide else None
        if guide_trace is not None and fixed_draws:
            for site in sample_sites(guide_trace):
                site["value"] = site["value"].detach()
            guide_trace = poutine.trace(poutine.replay(guide, trace=guide_trace)).get_trace(
                *args, **kwargs
            )
        if guide_trace is not None and path_grad_scale is not None:
            _scale_value_grads(guide_trace, layout, particles, path_grad_scale)
        model_trace = poutine.trace(
            poutine.replay(model, trace=guide_trace) if from_guide else model
        ).get_trace(*args, **kwargs)
    return particles, model_trace, guide_trace


@dataclass(frozen=True)
class WeightTerm:
    """One site's signed part of the log weights, per (particle, datapoint): ``+log p`` of a
    model site (``observed`` or not), ``−log q`` of a guide site (``in_guide``; whether it was
    drawn by reparameterization, ``reparameterized``, decides if it needs a score-function
    term)."""

    name: str
    value: torch.Tensor
    observed: bool = False
    in_guide: bool = False
    reparameterized: bool = True


def log_weight_terms(
    model,
    guide,
    args=(),
    kwargs=None,
    *,
    num_samples: int,
    layout: PlateLayout,
    fixed_draws: bool = False,
) -> list[WeightTerm]:
    """The ``(K, N)`` terms of :func:`log_weights`, site by site (model sites in model order,
    then the guide's), for a pair without enumerated latents; they sum to the log weights.
    ``fixed_draws``: no gradient through the draws (reweighted wake-sleep's densities)."""
    particles, model_trace, guide_trace = _traces(
        model, guide, args, kwargs or {}, num_samples, layout, True, fixed_draws=fixed_draws
    )
    shape = particles.program_shape(layout.batch_size(sample_sites(model_trace)))
    terms = []
    for sign, log_density, site, in_q in _terms(model_trace, guide_trace, False, False):
        if in_q or is_enumerated(site):
            raise ModelGuideError(
                f"site '{site['name']}' is enumerated; per-site terms need every latent sampled"
            )
        value = particles.per_datapoint(
            (sign * reduced(log_density, site, layout, 0)).expand(shape)
        )
        observed = bool(site["is_observed"]) and sign > 0
        reparameterized = sign > 0 or bool(getattr(site["fn"], "has_rsample", False))
        terms.append(WeightTerm(site["name"], value, observed, sign < 0, reparameterized))
    return terms


def _terms(model_trace, guide_trace, analytic_kl: bool, detach_guide_params: bool) -> list:
    """``(sign, log density, site, enumerated in the guide)`` of each term of the weight: the
    model's sites (+), the guide's (−); −KL(q ‖ p) in place of a latent's two where
    ``analytic_kl`` and a closed form exist. Without a guide (the prior as proposal) the
    latents' terms cancel and are left out."""
    terms, analytic = [], set()
    for site in sample_sites(model_trace):
        latent = not site["is_observed"]
        if latent and guide_trace is None:
            continue  # log p(z) − log q(z) = 0 when q is the prior
        q_site = guide_trace.nodes.get(site["name"]) if guide_trace is not None else None
        if latent and analytic_kl and q_site is not None and not is_enumerated(q_site):
            kl = closed_form_kl(q_site["fn"], site["fn"])
            if kl is not None:
                terms.append((-1, kl, site, False))
                analytic.add(site["name"])
                continue
        log_p = site["fn"].log_prob(site["value"])
        if not is_identically_zero(log_p):
            terms.append((1, log_p, site, False))
    for site in sample_sites(guide_trace) if guide_trace is not None else ():
        if site["name"] not in analytic:
            fn = _detached(site["fn"]) if detach_guide_params else site["fn"]
            terms.append((-1, fn.log_prob(site["value"]), site, is_enumerated(site)))
    return terms


def _total(terms, layout: PlateLayout, shape, mode: str) -> torch.Tensor:
    """The ``shape`` weights from their (non-empty) ``terms``, each summed per datapoint, the
    enumerated latents summed out (see ``enumerated``; none: the plain sum of the terms)."""
    rank = enum_rank([site for _, _, site, _ in terms], layout)
    joint = sum(s * reduced(lp, site, layout, rank) for s, lp, site, in_q in terms if not in_q)
    in_guide = [(lp, site) for _, lp, site, in_q in terms if in_q]
    log_q = sum(reduced(lp, site, layout, rank) for lp, site in in_guide) if in_guide else None
    width = rank + layout.max_plate_nesting + 1
    guide_dims = [width + site["infer"]["_enumerate_dim"] for _, site in in_guide]
    return summed_out(joint, log_q, guide_dims, rank, mode).expand(shape)


def closed_form_kl(q, p) -> torch.Tensor | None:
    """KL(q ‖ p) in closed form where torch registers one, else None (estimate it by sampling,
    as Pyro's TraceMeanField_ELBO does)."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return None


def _scale_value_grads(guide_trace, layout: PlateLayout, particles, holder: list) -> None:
    """Give every guide value a fresh alias whose incoming gradient is scaled by ``holder[0]``.

    Only the uses downstream of the alias (the model and log q) are scaled; the guide's own
    use of a value (say, z2 feeding q(z1 | z2)) happened before and keeps its gradient.
    """
    rank = layout.max_plate_nesting + 1

    def scale(grad, event_dim):
        w = particles.flat(holder[0])
        batch = grad.dim() - event_dim
        shape = [1] * batch
        shape[batch + layout.data_dim] = w.shape[1]
        if particles.vectorized:
            shape[batch - rank] = w.shape[0]
        return grad * w.reshape(shape + [1] * event_dim)

    for site in sample_sites(guide_trace):
        value = site["value"]
        if not (torch.is_tensor(value) and value.requires_grad):
            continue
        alias = value.view_as(value)
        event_dim = site["fn"].event_dim
        alias.register_hook(lambda g, e=event_dim: scale(g, e))
        site["value"] = alias


def _detached(d):
    """The same distribution with its learned parameters held fixed: every parameter tensor it
    holds, and every network parameter and input its transforms read, is detached, while the
    value given to ``log_prob`` keeps its gradient path (the doubly reparameterized log q).

    Distributions are rebuilt from their ``arg_constraints``; transformed distributions (flows)
    keep their structure with frozen copies of their transforms. A flow's frozen copy has no
    cached inverse, so ``log_prob`` runs the flow backwards (one pass per dimension for an
    autoregressive flow).
    """
    if isinstance(d, torch.distributions.Independent):
        return type(d)(_detached(d.base_dist), d.reinterpreted_batch_ndims)
    if isinstance(d, torch.distributions.TransformedDistribution):
        frozen = [_frozen(t) for t in d.transforms]
        return type(d)(_detached(d.base_dist), frozen, validate_args=False)
    params = {}
    for name in d.arg_constraints:
        if name in d.__dict__ and torch.is_tensor(d.__dict__[name]):
            params[name] = d.__dict__[name].detach()
    for one_of in (("logits", "probs"), ("scale_tril", "covariance_matrix", "precision_matrix")):
        present = [n for n in one_of if n in params]
        for extra in present[1:]:  # lazily cached twins: pass only the first
            del params[extra]
    try:
        return type(d)(**params, validate_args=False)
    except TypeError:
        raise ModelGuideError(
            f"cannot hold the parameters of a {type(d).__name__} guide distribution fixed, as "
            f"objective 'iwae_dreg' needs; use objective 'iwae'"
        ) from None


def _frozen(obj):
    """A copy of a transform, network or partial call whose parameters and tensors are
    detached; buffers (masks, orderings) are shared, caches (a transform's cached inverse and
    last input/output) are left behind, and methods bound to the original are bound to the copy
    (Pyro stores the stable flows' ``_call``/``_inverse`` as bound methods)."""
    if torch.is_tensor(obj):
        return obj.detach()
    if isinstance(obj, list | tuple):
        return type(obj)(_frozen(o) for o in obj)
    if isinstance(obj, functools.partial):  # e.g. a flow's network bound to its context
        func = _frozen(obj.func)
        frozen = functools.partial(
            func, *_frozen(obj.args), **{k: _frozen(v) for k, v in obj.keywords.items()}
        )
        frozen.__dict__.update({k: _rebound(v, obj.func, func) for k, v in vars(obj).items()})
        return frozen
    if not isinstance(obj, nn.Module | torch.distributions.Transform):
        return obj
    frozen = copy.copy(obj)
    for name, value in vars(obj).items():
        if name in _CACHES:
            frozen.__dict__[name] = _CACHES[name]
        elif name not in ("_parameters", "_modules", "_buffers"):
            frozen.__dict__[name] = _rebound(_frozen(value), obj, frozen)
    if isinstance(obj, nn.Module):
        frozen.__dict__["_parameters"] = {k: _frozen(v) for k, v in obj._parameters.items()}
        frozen.__dict__["_modules"] = {k: _frozen(m) for k, m in obj._modules.items()}
    return frozen


#: torch Transform caches and what a fresh transform holds instead.
_CACHES = {"_inv": None, "_cached_x_y": (None, None)}


def _rebound(value, old, new):
    """``value``, or, if it is a method bound to ``old``, the same method bound to ``new``."""
    if isinstance(value, types.MethodType) and value.__self__ is old:
        return types.MethodType(value.__func__, new)
    return value

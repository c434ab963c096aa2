"""Per-datapoint importance weights of any Pyro model/guide pair, vectorized over samples.

For each datapoint x_n and K samples z_{n,k} ~ q(z | x_n) the log weights are

.. math:: \\log w_{n,k} = \\log p(x_n, z_{n,k}) - \\log q(z_{n,k} \\mid x_n),

computed in one pass with the samples as an outer plate ``"particles"`` to the left of the
model's plates (the layout of Pyro's ``vectorize_particles``), so the model and guide run once
per chunk of samples, not once per sample. Every site must sit in ``pyro.plate("data")``; each
site's log density is summed over all its other dimensions, leaving a ``(K, N)`` tensor.
"""

from __future__ import annotations

import copy
import functools
import types
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions.util import is_identically_zero
from pyro.poutine.subsample_messenger import _Subsample
from torch import nn
from torch.distributions import constraints, kl_divergence

from ..errors import ModelGuideError
from ..results.choices import Proposal
from ..results.estimand import LOG_PX, Estimand
from .estimand import estimand

DATA_PLATE = "data"


@dataclass(frozen=True)
class PlateLayout:
    """Where the data plate sits, how many plates the model nests, and what the pair estimates
    (found by one trace)."""

    max_plate_nesting: int
    data_dim: int
    num_data: int
    estimand: Estimand = LOG_PX

    @property
    def particle_dim(self) -> int:
        return -self.max_plate_nesting - 1


def _sample_sites(trace):
    # Plates record their subsample indices as sample sites; those carry no density.
    return [
        s
        for s in trace.nodes.values()
        if s["type"] == "sample" and not isinstance(s["fn"], _Subsample)
    ]


def _data_frame(site):
    return next((f for f in site["cond_indep_stack"] if f.name == DATA_PLATE), None)


def inspect_pair(
    model, guide, args=(), kwargs=None, proposal: str = "guide", require_rsample: bool = False
) -> PlateLayout:
    """Trace ``model`` and ``guide`` once and check what per-datapoint weights need.

    Raises :class:`ModelGuideError` when there is no ``pyro.plate("data")``, when a latent sits
    outside it (a global latent: p(x) does not factorize over datapoints), when a site is
    enumerated, or when the guide's sites and the model's latents differ.
    """
    kwargs = kwargs or {}
    proposal = Proposal.of(proposal)
    # Pyro's argument and support checks run here, once (the passes that follow skip them);
    # fork_rng: inspecting must not shift the caller's random stream.
    with poutine.block(), torch.no_grad(), torch.random.fork_rng(), pyro.validation_enabled():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        model_sites, guide_sites = _sample_sites(model_trace), _sample_sites(guide_trace)
        for site in model_sites:
            _check_observed_support(site)
        guide_trace.compute_log_prob()
        model_trace.compute_log_prob()
    frames = [f for s in model_sites + guide_sites for f in s["cond_indep_stack"]]
    data = [f for f in frames if f.name == DATA_PLATE]
    if not data:
        raise ModelGuideError(
            "the model has no pyro.plate('data', N) around its sites; per-datapoint weights "
            "need the batch in a plate named 'data'"
        )
    for site in model_sites + guide_sites:
        _check_site(site)
    if proposal.uses_guide:
        _check_guide_covers(model_sites, guide_sites)
    if require_rsample:
        _check_reparameterized(guide_sites)
    dims = [f.dim for f in frames if f.dim is not None]
    return PlateLayout(
        max_plate_nesting=max(-d for d in dims),
        data_dim=data[0].dim,
        num_data=data[0].size,
        estimand=estimand(model, guide_trace, model_sites, args, kwargs, data[0].size),
    )


def _check_observed_support(site) -> None:
    """An observed value outside its distribution's support (grey-level pixels under a
    Bernoulli, say) as one line that names the site and the fix, not Pyro's dump of the data."""
    if not site["is_observed"] or not torch.is_tensor(site["value"]):
        return
    support = site["fn"].support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    value = site["value"]
    try:
        outside = ~support.check(value)
    except (RuntimeError, ValueError, NotImplementedError):
        return  # a constraint that cannot judge these values: Pyro's own check follows
    if not outside.any():
        return
    example = value[outside.expand(value.shape)].flatten()[0].item()
    binary = support is constraints.boolean
    fix = (
        "binarize grey-level data first: (x > 0.5).float(), torch.bernoulli(x), or "
        "pv.load_dataset(name, binarization='static'); or give the pair a likelihood of values "
        "in [0, 1] (continuous_bernoulli)"
        if binary
        else "give the pair data its likelihood can produce"
    )
    raise ModelGuideError(
        f"observed site '{site['name']}' ({type(site['fn']).__name__}) takes values in "
        f"{'{0, 1}' if binary else support}, but {int(outside.sum())} of the values given lie "
        f"outside, e.g. {example:g}; {fix}"
    )


def _check_site(site) -> None:
    """A site per-datapoint weights can use: in the data plate, unscaled, sampled."""
    name = site["name"]
    if _data_frame(site) is None and site["is_observed"]:
        raise ModelGuideError(
            f"observed site '{name}' is outside pyro.plate('data'); put the data in the plate "
            f"so each datapoint gets its own estimate"
        )
    if _data_frame(site) is None:
        raise ModelGuideError(
            f"latent site '{name}' is outside pyro.plate('data'): a global latent makes "
            f"log p(x) not factorize per datapoint"
        )
    scale = site["scale"]
    if not (isinstance(scale, int | float) and scale == 1.0):
        raise ModelGuideError(
            f"site '{name}' is scaled (a subsampled plate or poutine.scale); pass the "
            f"datapoints to evaluate as the whole plate, unscaled"
        )
    if site["infer"].get("is_auxiliary"):
        raise ModelGuideError(f"guide site '{name}' is auxiliary; not supported")
    if site["infer"].get("enumerate"):
        raise ModelGuideError(
            f"site '{name}' is enumerated; importance sampling needs every latent sampled by "
            f"the guide"
        )


def _check_guide_covers(model_sites, guide_sites) -> None:
    latents = {s["name"] for s in model_sites if not s["is_observed"]}
    guided = {s["name"] for s in guide_sites}
    if latents - guided:
        raise ModelGuideError(f"model latents without a guide site: {sorted(latents - guided)}")
    if guided - latents:
        raise ModelGuideError(f"guide sites that are not model latents: {sorted(guided - latents)}")


def _check_reparameterized(guide_sites) -> None:
    for site in guide_sites:
        if not site["fn"].has_rsample:
            raise ModelGuideError(
                f"guide site '{site['name']}' is not reparameterizable; importance-weighted "
                f"objectives here have no score-function term"
            )


def _site_device(sites) -> torch.device:
    """The device the pair computes on: that of its first tensor-valued site."""
    for site in sites:
        if torch.is_tensor(site["value"]):
            return site["value"].device
    return torch.device("cpu")


def _per_datapoint(log_prob: torch.Tensor, site, layout: PlateLayout, shape) -> torch.Tensor:
    """Sum a site's log density over every dim but the particle and data dims: (K, N)."""
    mask = site["mask"]
    if mask is not None and not isinstance(mask, bool):
        log_prob = log_prob * mask
    elif mask is False:
        log_prob = torch.zeros_like(log_prob)
    rank = layout.max_plate_nesting + 1
    if log_prob.dim() > rank:
        raise ModelGuideError(f"site '{site['name']}' has more batch dims than the model's plates")
    log_prob = log_prob.reshape((1,) * (rank - log_prob.dim()) + log_prob.shape)
    keep = (0, rank + layout.data_dim)
    other = [d for d in range(rank) if d not in keep]
    if other:
        log_prob = log_prob.sum(other)
    return log_prob.expand(shape)


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
    """
    kwargs = kwargs or {}
    from_guide = Proposal.of(proposal).uses_guide
    with pyro.plate("particles", num_samples, dim=layout.particle_dim):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs) if from_guide else None
        if guide_trace is not None and path_grad_scale is not None:
            _scale_value_grads(guide_trace, layout, path_grad_scale)
        model_trace = poutine.trace(
            poutine.replay(model, trace=guide_trace) if from_guide else model
        ).get_trace(*args, **kwargs)
    sites = _sample_sites(model_trace)
    # The batch may differ from the one inspected (say, the last batch of an epoch).
    shape = (num_samples, _data_frame(sites[0]).size)
    total = torch.zeros(shape, device=_site_device(sites))
    for site in sites:
        if not site["is_observed"] and not from_guide:
            continue  # log p(z) − log q(z) = 0 when q is the prior
        if not site["is_observed"] and analytic_kl:
            guide_site = guide_trace.nodes[site["name"]]
            kl = closed_form_kl(guide_site["fn"], site["fn"])
            if kl is not None:
                total = total - _per_datapoint(kl, site, layout, shape)
                guide_site["analytic"] = True
                continue
        log_p = site["fn"].log_prob(site["value"])
        if not is_identically_zero(log_p):
            total = total + _per_datapoint(log_p, site, layout, shape)
    for site in _sample_sites(guide_trace) if guide_trace is not None else ():
        if not site.get("analytic"):
            fn = _detached(site["fn"]) if detach_guide_params else site["fn"]
            total = total - _per_datapoint(fn.log_prob(site["value"]), site, layout, shape)
    return total


def owner_method(model, guide, name: str, args: tuple, kwargs: dict):
    """The method ``name`` of the object whose methods ``model`` and ``guide`` both are, when
    the pair is called with one positional argument (the data) — a spec-built
    :class:`~pyro_vae.LatentModel` offers fast paths this way — else None."""
    owner = getattr(model, "__self__", None)
    if owner is None or getattr(guide, "__self__", None) is not owner:
        return None
    if len(args) != 1 or kwargs:
        return None
    return getattr(owner, name, None)


def closed_form_kl(q, p) -> torch.Tensor | None:
    """KL(q ‖ p) in closed form where torch registers one, else None (estimate it by sampling,
    as Pyro's TraceMeanField_ELBO does)."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return None


def _scale_value_grads(guide_trace, layout: PlateLayout, holder: list) -> None:
    """Give every guide value a fresh alias whose incoming gradient is scaled by ``holder[0]``.

    Only the uses downstream of the alias (the model and log q) are scaled; the guide's own
    use of a value (say, z2 feeding q(z1 | z2)) happened before and keeps its gradient.
    """
    rank = layout.max_plate_nesting + 1
    data_axis = rank + layout.data_dim

    def scale(grad, event_dim):
        w = holder[0]
        shape = [1] * rank
        shape[0], shape[data_axis] = w.shape
        return grad * w.reshape(shape + [1] * event_dim)

    for site in _sample_sites(guide_trace):
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

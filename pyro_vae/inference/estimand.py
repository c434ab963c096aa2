"""What a pair, called with these arguments, lets us estimate: derived from one trace of its
model (:class:`~pyro_vae.results.estimand.Estimand`).

- **observed**: the arguments whose values the observed sites take (``obs=x``, or a view of it
  such as ``x[:, t]``), named as the model's signature names them; an observed site whose value
  is no argument is named by itself.
- **given**: the other tensor arguments with one row per datapoint: inputs the model conditions
  on without modelling them (the estimate is then log p(observed | given)).
- **prior_given**: the given inputs the prior reads, found by differentiating the latent sites'
  log densities with respect to them (latents held at the guide's values); an input that cannot
  be differentiated (integer, boolean) is taken to be read, the cautious reading.
"""

from __future__ import annotations

import inspect

import pyro.poutine as poutine
import torch

from ..results.estimand import Estimand


def named_arguments(program, args: tuple, kwargs: dict) -> list[tuple[str, object]]:
    """``(name, value)`` of every argument of a call of ``program``: the parameter names of its
    signature (``args[i]`` for a ``*args`` or a signature that cannot be read)."""
    try:
        signature = inspect.signature(program)
        bound = signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return [(f"args[{i}]", a) for i, a in enumerate(args)] + list(kwargs.items())
    named = []
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            named += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        elif kind is inspect.Parameter.VAR_KEYWORD:
            named += list(value.items())
        else:
            named.append((name, value))
    return named


def _shares_storage(value, argument) -> bool:
    """Whether the tensor ``value`` is ``argument`` or a view of it."""
    if not (torch.is_tensor(value) and torch.is_tensor(argument)) or not argument.numel():
        return False
    return value.untyped_storage().data_ptr() == argument.untyped_storage().data_ptr()


def estimand(model, guide_trace, sites, args, kwargs, num_data: int | None) -> Estimand:
    """The estimand of ``model`` called with ``args``/``kwargs``, from the sample sites of its
    trace replayed on the guide's (``sites``, plates' subsample sites left out); ``num_data``:
    the data plate's size."""
    named = [(n, v) for n, v in named_arguments(model, args, kwargs) if torch.is_tensor(v)]
    observed, latents = [], []
    for site in sites:
        if not site["is_observed"]:
            latents.append(site["name"])
            continue
        source = next((n for n, v in named if _shares_storage(site["value"], v)), site["name"])
        if source not in observed:
            observed.append(source)
    given = [
        (n, v)
        for n, v in named
        if n not in observed and v.dim() and (num_data is None or v.shape[0] == num_data)
    ]
    prior_given = _read_by_prior(model, guide_trace, args, kwargs, given, latents)
    return Estimand(tuple(observed), tuple(n for n, _ in given), tuple(latents), prior_given)


def _read_by_prior(model, guide_trace, args, kwargs, given, latents) -> tuple[str, ...]:
    """The names of the ``given`` inputs the densities of the model's ``latents`` depend on."""
    if not given or not latents:
        return ()
    leaves = {id(v): v.detach().clone().requires_grad_() for _, v in given if v.is_floating_point()}
    swap = lambda v: leaves.get(id(v), v)  # noqa: E731
    with poutine.block(), torch.random.fork_rng(), torch.enable_grad():
        trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *map(swap, args), **{k: swap(v) for k, v in kwargs.items()}
        )
        log_prior = sum(
            trace.nodes[name]["fn"].log_prob(trace.nodes[name]["value"]).sum() for name in latents
        )
        inputs = list(leaves.values())
        grads = []
        if inputs and torch.is_tensor(log_prior) and log_prior.requires_grad:
            grads = torch.autograd.grad(log_prior, inputs, allow_unused=True)
    read = {id(leaf) for leaf, g in zip(inputs, grads, strict=False) if g is not None}
    return tuple(n for n, v in given if not v.is_floating_point() or id(leaves[id(v)]) in read)

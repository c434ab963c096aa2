"""What a pair, called with these arguments, lets us estimate: derived from one trace of its
model (:class:`~pyro_vae.results.estimand.Estimand`).

- **observed**: the arguments whose values the observed sites take (``obs=x``, or a view of it
  such as ``x[:, t]``), named as the model's signature names them; an observed site whose value
  is no argument is named by itself.
- **given**: the other arguments with one row per datapoint that the model reads: inputs it
  conditions on without modelling them (the estimate is then log p(observed | given)). Read
  means: changing the argument changes the model's log densities (latents held at the guide's
  values), so the reversed copy of the data that only the guide's RNN sees is not read, and a
  mask the model applies is.
- **prior_given**: the given inputs the prior reads, found the same way from the latent sites'
  log densities alone. A change that breaks the model counts as read, by both.
"""

from __future__ import annotations

import inspect

import pyro.poutine as poutine
import torch
from pyro.poutine.subsample_messenger import _Subsample
from torch.nn.utils.rnn import PackedSequence

from ..results.estimand import Estimand
from .arguments import rows_of


def sample_sites(trace) -> list:
    """The sample sites of a trace, without the plates' subsample sites and ``pyro.deterministic``
    values (no density)."""
    return [
        s
        for s in trace.nodes.values()
        if s["type"] == "sample"
        and not isinstance(s["fn"], _Subsample)
        and not s["infer"].get("_deterministic")
    ]


def named_arguments(program, args: tuple, kwargs: dict) -> list[tuple[str, object]]:
    """``(name, value)`` of every argument of a call of ``program``: the parameter names of its
    signature (``args[i]`` for a ``*args`` or a signature that cannot be read), or the
    ``argument_names`` of the object ``program`` is a method of, where it has them (a
    spec-built model takes ``model(x, *data)``, its data nodes by name)."""
    names = getattr(getattr(program, "__self__", None), "argument_names", None)
    if isinstance(names, tuple) and not kwargs and len(args) <= len(names):
        return list(zip(names, args, strict=False))
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
    named = named_arguments(model, args, kwargs)
    observed, latents = [], []
    for site in sites:
        if not site["is_observed"]:
            latents.append(site["name"])
            continue
        source = next((n for n, v in named if _shares_storage(site["value"], v)), site["name"])
        if source not in observed:
            observed.append(source)
    # Arguments in the order they were passed, then the sites that are no argument.
    order = [n for n, _ in named]
    observed.sort(key=lambda n: order.index(n) if n in order else len(order))
    candidates = [
        (n, v)
        for n, v in named
        if n not in observed and rows_of(v) is not None and rows_of(v) == (num_data or rows_of(v))
    ]
    read, by_prior = _read(model, guide_trace, args, kwargs, candidates, latents)
    return Estimand(tuple(observed), read, tuple(latents), by_prior)


def _perturbed(value):
    """``value`` changed everywhere: its floats scaled and shifted (a 0/1 mask too), its integers
    moved by one, its booleans flipped; the elements of a PackedSequence, tuple or list alike."""
    if torch.is_tensor(value):
        if value.dtype == torch.bool:
            return ~value
        return value * -1.7 + 0.3 if value.is_floating_point() else value + 1
    if isinstance(value, PackedSequence):
        return value._replace(data=_perturbed(value.data))
    if isinstance(value, list | tuple):
        return type(value)(_perturbed(v) for v in value)
    return value


def _densities(model, guide_trace, args, kwargs, latents):
    """The sums of all the model's log densities and of its latents', latents at the guide's
    values; None where the model fails on these arguments."""

    try:
        with poutine.block(), torch.random.fork_rng(), torch.no_grad():
            trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
                *args, **kwargs
            )
            terms = {
                s["name"]: s["fn"].log_prob(s["value"]).double().sum() for s in sample_sites(trace)
            }
    except Exception:  # the change broke the model: it reads the argument
        return None
    zero = torch.zeros((), dtype=torch.float64)
    return sum(terms.values(), zero), sum((terms.get(n, zero) for n in latents), zero)


def _read(model, guide_trace, args, kwargs, candidates, latents) -> tuple[tuple, tuple]:
    """The names of the ``candidates`` the model's log densities depend on, and of those the
    densities of its ``latents`` (the prior) depend on: each argument is changed in turn
    (:func:`_perturbed`) and the densities, latents held at the guide's values, compared."""
    base = _densities(model, guide_trace, args, kwargs, latents)
    read, by_prior = [], []
    for name, value in candidates:
        swap = lambda v, value=value: _perturbed(v) if v is value else v  # noqa: E731
        moved = _densities(
            model,
            guide_trace,
            tuple(map(swap, args)),
            {k: swap(v) for k, v in kwargs.items()},
            latents,
        )
        changed = (
            [True, True]
            if base is None or moved is None
            else [
                not torch.allclose(a, b, equal_nan=True) for a, b in zip(base, moved, strict=True)
            ]
        )
        if changed[0]:
            read.append(name)
        if changed[1] and latents:
            by_prior.append(name)
    return tuple(read), tuple(by_prior)

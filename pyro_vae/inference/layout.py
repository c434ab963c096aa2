"""What per-datapoint estimates need of a Pyro pair, found by tracing it once: the data plate
(of any name, with or without a size, subsampled or not), the number of datapoints, how many
plates the model nests, and what the pair estimates (:class:`PlateLayout`).

The **data plate** is the outermost plate around every observed site: ``pyro.plate("data", N)``
as the spec-built pairs write it, ``pyro.plate("data")`` without a size (N is then read from the
observed values), ``pyro.plate("z_minibatch", len(batch))``, or a plate with ``subsample=``
indices. Where several plates enclose every observed site, the outermost is taken, or the one
named by ``data_plate=``. Every latent must sit in it too (a latent outside it is global, and
log p(x) does not factorize per datapoint). A site's scale (a subsampled plate's
``size / subsample size``, ``poutine.scale``) is left out of every estimate: they are of the
log densities of the datapoints given.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass, replace

import pyro
import pyro.poutine as poutine
import torch
from torch.distributions import constraints

from ..errors import ModelGuideError
from ..results.choices import Proposal
from ..results.estimand import LOG_PX, Estimand
from .estimand import estimand, sample_sites

#: The plate the spec-built pairs put their data in, and the particles plate's name.
DATA_PLATE = "data"
PARTICLES = "particles"


@dataclass(frozen=True)
class PlateLayout:
    """Where the data plate sits (its name and dim), how many datapoints it holds, how many
    plates the model nests, and what the pair estimates (found by one trace)."""

    max_plate_nesting: int
    data_dim: int
    num_data: int
    estimand: Estimand = LOG_PX
    data_plate: str = DATA_PLATE
    #: What fails when the pair runs with a leading particle dimension ("" where nothing does;
    #: else its particles are replicated data rows, :mod:`~pyro_vae.inference.particles`).
    not_vectorized: str = ""
    #: The discrete latents summed out exactly (parallel enumeration, in the guide or in the
    #: model alone; :mod:`~pyro_vae.inference.enumeration`).
    enumerated: tuple[str, ...] = ()
    #: How many joint values the enumerated latents take: the factor by which enumeration
    #: multiplies the rows a pass computes (work is blocked by it).
    enumerated_values: int = 1

    @property
    def vectorized(self) -> bool:
        """Whether the pair runs with a leading particle dimension."""
        return not self.not_vectorized

    @property
    def particle_dim(self) -> int:
        return -self.max_plate_nesting - 1

    def data_frame(self, site):
        """The data plate's frame around ``site`` (None where the site is outside it)."""
        return next((f for f in site["cond_indep_stack"] if f.name == self.data_plate), None)

    def batch_size(self, sites) -> int:
        """The number of datapoints of a run of the pair (its batch may differ from the one
        inspected): the data plate's size, or for a plate without one, the length of the
        sites' batch shapes along its dim."""
        inside = [s for s in sites if self.data_frame(s) is not None]
        for site in inside:
            if self.data_frame(site).size > 0:
                return self.data_frame(site).size
        lengths = [
            s["fn"].batch_shape[self.data_dim]
            for s in inside
            if len(s["fn"].batch_shape) >= -self.data_dim
        ]
        return max(lengths, default=1)


def inspect_pair(
    model,
    guide,
    args=(),
    kwargs=None,
    proposal: str = "guide",
    require_rsample: bool = False,
    data_plate: str | None = None,
) -> PlateLayout:
    """Trace ``model`` and ``guide`` once and check what per-datapoint weights need.

    :param data_plate: the name of the data plate, where several plates enclose every observed
        site and the outermost is not it.
    :raises ModelGuideError: no plate around every observed site (naming the plates seen), a
        latent outside the data plate (a global latent), a plate that subsamples at random, an
        enumerated site, observed values outside their support, or guide sites that are not
        the model's latents.
    """
    kwargs = kwargs or {}
    proposal = Proposal.of(proposal)
    guide_trace, model_trace = _traced(model, guide, args, kwargs)
    model_sites, guide_sites = sample_sites(model_trace), sample_sites(guide_trace)
    plate = data_plate_name(model_sites, data_plate)
    for site in model_sites + guide_sites:
        _check_site(site, plate)
    if proposal.uses_guide:
        _check_guide_covers(model_sites, guide_sites)
    if require_rsample:
        _check_reparameterized(guide_sites)
    frames = [f for s in model_sites + guide_sites for f in s["cond_indep_stack"]]
    frame = next(f for f in frames if f.name == plate)
    if frame.size > 0 and frame.full_size not in (None, frame.size):
        _check_fixed_subsample(model, args, kwargs, plate)
    nesting = max(-f.dim for f in frames if f.dim is not None)
    layout = PlateLayout(nesting, frame.dim, 0, data_plate=plate)
    num_data = layout.batch_size(model_sites)
    found = estimand(model, guide_trace, model_sites, args, kwargs, num_data)
    failure = _particle_failure(model, guide, args, kwargs, layout.particle_dim, proposal)
    if failure:
        _announce(model, failure)
    return replace(
        layout,
        num_data=num_data,
        estimand=found,
        not_vectorized=failure,
        enumerated=_enumerated(guide_sites + model_sites),
        enumerated_values=_enumerated_values(guide_sites + model_sites),
    )


def is_enumerated(site) -> bool:
    """Whether a site takes all its values at once (parallel enumeration)."""
    return site["infer"].get("enumerate") == "parallel"


def takes_particles(model, guide, args=(), kwargs=None) -> bool:
    """Whether the pair runs with a leading particle dimension (:attr:`PlateLayout.vectorized`);
    a pair :func:`inspect_pair` cannot inspect (an enumerated mixture, say) is taken to."""
    try:
        return inspect_pair(model, guide, args, kwargs).vectorized
    except ModelGuideError:
        return True


def _enumerated_values(sites) -> int:
    """The product of the numbers of values of the latents enumerated in parallel."""
    sizes = {
        s["name"]: len(s["fn"].enumerate_support(expand=False))
        for s in sites
        if is_enumerated(s) and not s["is_observed"]
    }
    return math.prod(sizes.values())


def _enumerated(sites) -> tuple[str, ...]:
    """The latents enumerated in parallel, in the guide or in the model alone."""
    names = [s["name"] for s in sites if is_enumerated(s) and not s["is_observed"]]
    return tuple(dict.fromkeys(names))


def _announce(model, failure: str) -> None:
    """One line, once per process and model function: its particles will be replicated data
    rows."""
    program = _announced_as(model)
    if program in _ANNOUNCED:
        return
    _ANNOUNCED.add(program)
    warnings.warn(
        f"the model does not run with a particle dimension ({failure}); its K particles are "
        "drawn as K copies of the data rows instead: the same estimates in distribution, "
        "more passes",
        stacklevel=4,
    )


def _announced_as(model):
    """What the record of announcements keeps of ``model``: the function itself (a bound
    method's, so that a class's instances are one model) or the callable object, or its class
    where it cannot be held by a weak reference."""
    program = getattr(model, "__func__", model)
    try:
        hash(weakref.ref(program))
    except TypeError:
        return type(program)
    return program


#: The model functions whose replicated particles were announced in this process.
_ANNOUNCED: weakref.WeakSet = weakref.WeakSet()


def _particle_failure(model, guide, args, kwargs, dim: int, proposal: Proposal) -> str:
    """What goes wrong when the pair runs inside a particles plate of size 2 ("" where
    nothing does): the check that decides between vectorized and replicated particles."""
    try:
        with (
            poutine.block(),
            torch.no_grad(),
            torch.random.fork_rng(),
            pyro.plate(PARTICLES, 2, dim=dim),
        ):
            traces = []
            if proposal.uses_guide:
                traces.append(poutine.trace(guide).get_trace(*args, **kwargs))
            replayed = poutine.replay(model, trace=traces[0]) if traces else model
            traces.append(poutine.trace(replayed).get_trace(*args, **kwargs))
            for trace in traces:
                trace.compute_log_prob()
    except Exception as e:  # whatever the model raises: it cannot broadcast
        lines = str(e).strip().splitlines() or [""]
        return f"{type(e).__name__}: {lines[0][:200]}"
    return ""


def _check_observed_support(site) -> None:
    """An observed value outside its distribution's support (grey-level pixels under a
    Bernoulli, say) as one line that names the site and the fix, not Pyro's dump of the data."""
    if not site["is_observed"] or not torch.is_tensor(site["value"]):
        return
    base = site["fn"]
    while isinstance(base, torch.distributions.Independent):
        base = base.base_dist
    if getattr(base, "_validate_args", None) is False:
        return  # the model asked for values outside the support (relaxed Bernoulli pixels)
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


def _check_site(site, plate: str) -> None:
    """A site per-datapoint weights can use: in the data plate, sampled."""
    name = site["name"]
    if all(f.name != plate for f in site["cond_indep_stack"]):
        raise ModelGuideError(
            f"latent site '{name}' is outside the data plate '{plate}': a global latent makes "
            f"log p(x) not factorize per datapoint"
        )
    if site["infer"].get("is_auxiliary"):
        raise ModelGuideError(f"guide site '{name}' is auxiliary; not supported")
    if site["infer"].get("enumerate") not in (None, "parallel"):
        raise ModelGuideError(
            f"site '{name}' is enumerated {site['infer']['enumerate']!r}ly; the estimators sum "
            f"out latents enumerated in parallel (infer={{'enumerate': 'parallel'}})"
        )


def _check_guide_covers(model_sites, guide_sites) -> None:
    """Every latent of the model has a guide site, but those the model enumerates itself."""
    guided = {s["name"] for s in guide_sites}
    latents = {
        s["name"]
        for s in model_sites
        if not s["is_observed"] and (s["name"] in guided or not is_enumerated(s))
    }
    if latents - guided:
        raise ModelGuideError(f"model latents without a guide site: {sorted(latents - guided)}")
    if guided - latents:
        raise ModelGuideError(f"guide sites that are not model latents: {sorted(guided - latents)}")


def _check_reparameterized(guide_sites) -> None:
    """Every sampled guide site reparameterized (an enumerated one is summed out exactly)."""
    for site in guide_sites:
        if not site["fn"].has_rsample and not is_enumerated(site):
            raise ModelGuideError(
                f"guide site '{site['name']}' is not reparameterizable; importance-weighted "
                f"objectives here have no score-function term"
            )


def owner_method(model, guide, name: str, args: tuple, kwargs: dict):
    """The method ``name`` of the object whose methods ``model`` and ``guide`` both are, when
    the pair is called with one positional argument (the data) and the owner does not say
    its fast paths miss something (``has_fast_paths``) — a spec-built
    :class:`~pyro_vae.LatentModel` offers them this way — else None."""
    owner = getattr(model, "__self__", None)
    if owner is None or getattr(guide, "__self__", None) is not owner:
        return None
    if len(args) != 1 or kwargs or not getattr(owner, "has_fast_paths", True):
        return None
    return getattr(owner, name, None)


def traced_pair(model, guide, args=(), kwargs=None):
    """The traces of one run of the guide and of the model replayed on it, without gradients;
    the caller's random stream is left as it was."""
    kwargs = kwargs or {}
    with poutine.block(), torch.no_grad(), torch.random.fork_rng():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    return guide_trace, model_trace


def _traced(model, guide, args, kwargs):
    """:func:`traced_pair` with Pyro's checks (the passes that follow skip them) and the
    observed values checked against their support."""
    with pyro.validation_enabled():
        guide_trace, model_trace = traced_pair(model, guide, args, kwargs)
        with torch.no_grad():
            for site in sample_sites(model_trace):
                _check_observed_support(site)
            guide_trace.compute_log_prob()
            model_trace.compute_log_prob()
    return guide_trace, model_trace


def data_plate_name(model_sites, wanted: str | None) -> str:
    """The name of the outermost plate around every observed site, or ``wanted``'s."""
    observed = [s for s in model_sites if s["is_observed"]]
    stacks = [[f.name for f in s["cond_indep_stack"] if f.name != PARTICLES] for s in observed]
    common = [name for name in stacks[0] if all(name in st for st in stacks)] if stacks else []
    seen = sorted({name for stack in stacks for name in stack})
    if wanted is not None:
        if wanted not in common:
            raise ModelGuideError(
                f"data_plate={wanted!r} does not enclose every observed site; plates around "
                f"them: {_listed(common)}"
            )
        return wanted
    if not common:
        sites = ", ".join(f"'{s['name']}'" for s in observed) or "none"
        raise ModelGuideError(
            f"no plate encloses every observed site ({sites}); plates seen: {_listed(seen)}. "
            "Per-datapoint estimates need the batch in a plate, e.g. pyro.plate('data', N)"
        )
    return common[0]


def _listed(names) -> str:
    return ", ".join(f"'{n}'" for n in names) or "none"


def _check_fixed_subsample(model, args, kwargs, plate: str) -> None:
    """A subsampled data plate must be given its indices: one that draws them at random gives
    each run other datapoints."""
    draws = []
    for seed in (0, 1):
        with poutine.block(), torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(seed)
            draws.append(poutine.trace(model).get_trace(*args, **kwargs).nodes[plate]["value"])
    if not torch.equal(*draws):
        raise ModelGuideError(
            f"plate '{plate}' subsamples at random: each run would score other datapoints. "
            f"Give it the rows to score (subsample=indices) or pass those rows as the batch"
        )

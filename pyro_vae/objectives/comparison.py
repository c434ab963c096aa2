"""Compare ELBO estimators at fixed parameters: value, bias, variance, gradient signal, time.

For each estimator :math:`\\hat{\\mathcal{L}}` (an objective with its settings, see
:class:`~pyro_vae.objectives.registry.ObjectiveChoice`) and the same data x of N datapoints,
:func:`compare_estimators` draws R independent estimates and their gradients
:math:`g_r = \\nabla \\hat{\\mathcal{L}}_r / N` and reports

- the mean value per datapoint and its standard deviation over the R repetitions;
- its bias against a reference log p(x): exact when given, else ``log_likelihood`` with many
  samples (an IWAE bound with large K is itself slightly low, so this "bias" is an upper bound
  on the true one for lower bounds);
- separately for the guide's (encoder's) and the model's (decoder's) parameters, the mean
  per-coordinate gradient variance, and the signal-to-noise ratio
  :math:`\\mathrm{SNR}_i = |\\mathbb{E}[g_i]| / \\sigma[g_i]` averaged over coordinates
  (Rainforth et al. 2018, "Tighter Variational Bounds are Not Necessarily Better"), with the
  whole-vector ratio :math:`\\lVert\\mathbb{E} g\\rVert / \\sqrt{\\mathbb{E}\\lVert g -
  \\mathbb{E} g\\rVert^2}` beside it;
- the wall time of one gradient (loss plus backward).

Where the exact ELBO gradient exists (every guide latent discrete, with an enumerable
support of at most :data:`EXACT_MAX_VALUES` joint values per datapoint), it is computed once by
enumeration (Pyro's ``TraceEnum_ELBO`` over the guide's values) and each group's statistics add
the gradient's bias against it, :math:`\\lVert\\bar g - \\nabla\\mathcal L\\rVert /
\\lVert\\nabla\\mathcal L\\rVert` beside the floor the R draws' noise alone gives it, and the
SNR against the exact gradient, :math:`|\\nabla_i\\mathcal L| / \\sigma[g_i]`. The estimators
of the ELBO itself should sit at the floor; the others target other bounds.

With R repetitions an SNR below about :math:`1/\\sqrt{R}` cannot be told from zero. A program
without parameters (no ``pyro.param`` site, no module) has no gradient statistics: they are None,
the result says why in its ``notes``, and for a pair with no parameters at all the time is that
of the estimate alone.
"""

from __future__ import annotations

import inspect
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import config_enumerate
from tqdm.auto import tqdm

from ..errors import ModelGuideError, PyroVaeError, SpecError
from ..inference.estimand import sample_sites
from ..inference.layout import inspect_pair, takes_particles, traced_pair
from ..inference.log_likelihood import log_likelihood
from ..model.latent_model import LatentModel
from ..results.comparisons import GROUPS
from ..results.estimand import LOG_PX, Estimand
from ..results.result import Result
from .registry import ObjectiveChoice

DEFAULT_ESTIMATORS = (
    "trace",
    "trace_mean_field",
    "trace_graph",
    "iwae:k=5",
    "iwae:k=10",
    "iwae:k=50",
    "iwae_dreg:k=5",
    "iwae_dreg:k=10",
    "iwae_dreg:k=50",
    "renyi:k=10,alpha=0.5",
)


class _Moments:
    """Streaming mean and variance (Welford) of a vector, in float64."""

    def __init__(self, size: int):
        self.count = 0
        self.mean = torch.zeros(size, dtype=torch.float64)
        self.m2 = torch.zeros(size, dtype=torch.float64)

    def add(self, value: torch.Tensor) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    @property
    def var(self) -> torch.Tensor:
        return self.m2 / max(self.count - 1, 1)


@dataclass(frozen=True, repr=False, eq=False)
class GradientStats(Result):
    """Gradients of one parameter group over R repetitions (per-datapoint objective), and the
    exact ELBO gradient where the pair has one (None elsewhere)."""

    names: list[str]
    mean: torch.Tensor  # per coordinate, all parameters of the group flattened in order
    var: torch.Tensor
    repeats: int
    exact: torch.Tensor | None = None

    @property
    def relative_bias(self) -> float | None:
        """‖mean − exact‖ / ‖exact‖ (None without an exact gradient)."""
        if self.exact is None or not self.exact.norm() > 0:
            return None
        return ((self.mean - self.exact).norm() / self.exact.norm()).item()

    @property
    def bias_floor(self) -> float | None:
        """What :attr:`relative_bias` is from the repetitions' noise alone, √Σ stderr² / ‖exact‖:
        an unbiased estimator's bias sits near it."""
        if self.exact is None or not self.exact.norm() > 0:
            return None
        return (self.stderr.norm() / self.exact.norm()).item()

    @property
    def exact_snr(self) -> float | None:
        """Mean over coordinates of |exact_i| / σ(g_i), over the coordinates that vary."""
        if self.exact is None:
            return None
        std, moving = self._moving()
        return (self.exact[moving].abs() / std[moving]).mean().item() if moving.any() else None

    @property
    def stderr(self) -> torch.Tensor:
        return (self.var / self.repeats).sqrt()

    @property
    def variance(self) -> float:
        """Mean per-coordinate variance."""
        return self.var.mean().item()

    @property
    def snr(self) -> float:
        """Mean over coordinates of |E g_i| / σ(g_i), over the coordinates that vary (σ above
        float32 rounding: :meth:`_moving`)."""
        std, moving = self._moving()
        return (self.mean[moving].abs() / std[moving]).mean().item() if moving.any() else math.nan

    def _moving(self) -> tuple[torch.Tensor, torch.Tensor]:
        """σ per coordinate, and which coordinates vary: σ above the float32 rounding of the
        group's gradients. A coordinate held fixed by the estimator (RWS's and TVO's guide
        terms at fixed draws, say) varies only by rounding, and |mean| / rounding would be an
        SNR of 10⁵ that says nothing."""
        std = self.var.sqrt()
        scale = (
            torch.maximum(self.mean.abs().max(), std.max()) if std.numel() else std.new_zeros(())
        )
        return std, std > ROUNDING * scale

    @property
    def snr_norm(self) -> float:
        """‖E g‖ / sqrt(E‖g − E g‖²): the signal-to-noise ratio of the whole vector."""
        noise = self.var.sum().sqrt()
        return (self.mean.norm() / noise).item() if noise > 0 else math.nan


@dataclass(frozen=True, repr=False, eq=False)
class EstimatorResult(Result):
    """One estimator's statistics; ``gradients`` has no entry for a group without parameters."""

    label: str
    value: float = math.nan  # mean over repetitions, per datapoint
    value_std: float = math.nan  # standard deviation over repetitions
    bias: float | None = None  # value − reference
    bias_stderr: float | None = None
    seconds_per_step: float = math.nan
    gradients: dict[str, GradientStats] = field(default_factory=dict)
    skipped: str | None = None  # why the estimator does not apply to this pair
    num_particles: int = 1


@dataclass(frozen=True, repr=False, eq=False)
class Comparison(Result):
    """The estimators' results on one batch, with the reference they are measured against (an
    estimate of what ``estimand`` names).

    ``differentiated`` is False when neither program has parameters (no gradient statistics
    at all); ``notes`` says which group has none.
    """

    results: list[EstimatorResult]
    num_data: int
    repeats: int
    reference: float | None
    reference_stderr: float | None
    reference_kind: str
    reference_khat_above_0_7: int | None = None  # datapoints where the reference is unreliable
    differentiated: bool = True
    notes: list[str] = field(default_factory=list)
    estimand: Estimand = LOG_PX
    #: How the exact ELBO gradient was found, or why there is none.
    exact_gradient: str = "none"

    def __getitem__(self, label: str) -> EstimatorResult:
        return next(r for r in self.results if r.label == label)


def spec_built(model, guide) -> LatentModel | None:
    """The :class:`LatentModel` whose ``.model`` and ``.guide`` these are, or None."""
    vae = getattr(model, "__self__", None)
    if isinstance(vae, LatentModel) and getattr(guide, "__self__", None) is vae:
        return vae
    return None


def parameter_groups(model, guide, *args, **kwargs) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """The leaf tensors each program optimizes: ``guide`` (encoder) and ``model`` (decoder).

    A :class:`LatentModel`'s modules are used directly; for any other pair, the parameter sites
    of one run of each program (unconstrained values, as the optimizer sees them).
    """
    vae = spec_built(model, guide)
    if vae is not None:
        return {
            "guide": [(f"guide.{n}", p) for n, p in vae.inference.named_parameters()],
            "model": [(f"model.{n}", p) for n, p in vae.generative.named_parameters()],
        }
    with torch.random.fork_rng(), poutine.block():
        guide_trace = poutine.trace(guide, param_only=True).get_trace(*args, **kwargs)
        model_trace = poutine.trace(model, param_only=True).get_trace(*args, **kwargs)
    groups = {"guide": [], "model": []}
    for group, trace in (("guide", guide_trace), ("model", model_trace)):
        for name, site in trace.nodes.items():
            seen = any(name == n for g in groups.values() for n, _ in g)
            if site["type"] == "param" and not seen:
                groups[group].append((name, site["value"].unconstrained()))
    return groups


@dataclass
class _Pair:
    """The model/guide pair being compared, its arguments, and its parameter groups."""

    model: Callable
    guide: Callable
    args: tuple
    kwargs: dict
    groups: dict[str, list[tuple[str, torch.Tensor]]]
    num_data: int
    vectorized: bool = True  # whether the pair takes a particle dimension
    exact: dict[str, torch.Tensor] | None = None  # the exact ELBO gradient of each group

    def loss(self, elbo) -> torch.Tensor:
        return elbo.differentiable_loss(self.model, self.guide, *self.args, **self.kwargs)


def _build(choice: ObjectiveChoice, pair: _Pair):
    """The estimator, or the reason it cannot serve this pair (from the objective's check)."""
    try:
        return choice.build(spec_built(pair.model, pair.guide), pair.vectorized), None
    except SpecError as e:
        return None, e.message


@dataclass(frozen=True)
class _Reference:
    """The reference log p(x) the estimators' biases are measured against: its mean, Monte Carlo
    stderr, a description, how many datapoints have Pareto k̂ > 0.7 (where an importance-sampled
    reference is itself unreliable), what it estimates, and whether the pair took a particle
    dimension as it ran (None: no reference ran)."""

    value: float | None = None
    stderr: float | None = None
    kind: str = "none"
    unreliable: int | None = None
    estimand: Estimand = LOG_PX
    vectorized: bool | None = None

    @classmethod
    def of(cls, model, guide, args, kwargs, exact, num_samples, seed) -> _Reference:
        if exact is not None:
            return cls(torch.as_tensor(exact, dtype=torch.float64).mean().item(), 0.0, "exact", 0)
        if not num_samples:
            return cls()
        try:
            with torch.random.fork_rng():
                pyro.set_rng_seed(seed)
                ll = log_likelihood(model, guide, *args, num_samples=num_samples, **kwargs)
        except ModelGuideError as e:  # e.g. an enumerated model: compare without a bias column
            return cls(kind=f"none ({str(e).splitlines()[0]})")
        kind = f"log_likelihood K={num_samples}"
        vectorized = ll.particles == "vectorized"
        return cls(ll.mean, ll.mean_stderr, kind, ll.khat_counts.above, ll.estimand, vectorized)

    def measured(self, result: EstimatorResult, repeats: int) -> EstimatorResult:
        """``result`` with its bias against this reference (none without a reference)."""
        if self.value is None or result.skipped:
            return result
        mc = result.value_std / math.sqrt(repeats)
        bias_stderr = math.hypot(mc, self.stderr)
        return replace(result, bias=result.value - self.value, bias_stderr=bias_stderr)


def compare_estimators(
    model,
    guide,
    *args,
    estimators: Sequence[str | ObjectiveChoice] = DEFAULT_ESTIMATORS,
    repeats: int = 100,
    exact: torch.Tensor | None = None,
    reference_samples: int | None = 5000,
    seed: int = 0,
    progress: bool | None = None,
    **kwargs,
) -> Comparison:
    """Draw ``repeats`` estimates and gradients of each estimator at the current parameters.

    :param estimators: objective names with settings, e.g. ``"iwae:k=50"`` or
        ``"renyi:k=5,alpha=0.5"``; those that do not suit the pair are reported as skipped.
    :param exact: exact per-datapoint log p(x), when the model has one; otherwise the reference
        is ``log_likelihood`` with ``reference_samples`` samples (None or 0: no bias column).
    :param seed: every estimator starts from this seed, so results do not depend on the order.
    """
    if repeats < 2:
        raise PyroVaeError(f"repeats must be >= 2 to estimate a spread, got {repeats}")
    taken = sorted(set(kwargs) & set(inspect.signature(log_likelihood).parameters))
    if taken:  # keywords go to the pair; these would also reach the reference's estimator
        raise PyroVaeError(
            f"compare_estimators: keyword {taken[0]!r} is not one of its options (estimators, "
            f"repeats, exact, reference_samples, seed, progress); other keywords go to the "
            f"pair, and this one is also the reference log_likelihood's"
        )
    choices = [ObjectiveChoice.of(e) for e in estimators]
    num_data = _num_data(args)
    reference = _Reference.of(model, guide, args, kwargs, exact, reference_samples, seed)
    groups = parameter_groups(model, guide, *args, **kwargs)
    vectorized = _takes_particles(model, guide, args, kwargs, reference)
    pair = _Pair(model, guide, args, kwargs, groups, num_data, vectorized)
    pair.exact, exact_kind = exact_elbo_gradient(pair)
    differentiated, notes = _parameter_notes(pair.groups)
    bar = tqdm(total=repeats * len(choices), disable=None if progress is None else not progress)
    with bar:
        results = [
            reference.measured(_estimator_result(choice, pair, repeats, seed, bar), repeats)
            for choice in choices
        ]
    return Comparison(
        results,
        num_data,
        repeats,
        reference.value,
        reference.stderr,
        reference.kind,
        reference.unreliable,
        differentiated,
        notes,
        reference.estimand,
        exact_kind,
    )


def _estimator_result(choice, pair: _Pair, repeats: int, seed: int, bar) -> EstimatorResult:
    """The measurements of one estimator, or why it was skipped."""
    elbo, skipped = _build(choice, pair)
    if elbo is None:
        bar.update(repeats)
        return EstimatorResult(choice.label, skipped=skipped, num_particles=choice.num_particles)
    return replace(
        _measure(choice, elbo, pair, repeats, seed, bar), num_particles=choice.num_particles
    )


def _takes_particles(model, guide, args, kwargs, reference: _Reference) -> bool:
    """Whether the pair runs with a particle dimension: as it ran for the reference, else as
    :func:`~pyro_vae.inference.layout.takes_particles` finds."""
    if reference.vectorized is not None:
        return reference.vectorized
    return takes_particles(model, guide, args, kwargs)


def _parameter_notes(groups: dict[str, list[tuple[str, torch.Tensor]]]) -> tuple[bool, list[str]]:
    """Whether the pair has any parameter to differentiate, and what its results leave out."""
    empty = [g for g in GROUPS if not any(p.numel() for _, p in groups.get(g, ()))]
    if len(empty) == len(GROUPS):
        return False, [
            "no parameters to differentiate (neither program has a pyro.param site or a "
            "module): no gradient statistics; ms/step times the estimate alone"
        ]
    return True, [f"the {g} has no parameters: its gradient statistics are left out" for g in empty]


def _num_data(args) -> int:
    data = next((a for a in args if torch.is_tensor(a)), None)
    return 1 if data is None or data.dim() == 0 else data.shape[0]


def _measure(choice: ObjectiveChoice, elbo, pair: _Pair, repeats: int, seed: int, bar):
    """``repeats`` values and gradients of ``elbo``, from ``seed``: per-datapoint value, its
    spread, per-group gradient moments and the median time of one gradient (of one estimate,
    for a pair without parameters)."""
    params = [p for members in pair.groups.values() for _, p in members]
    sizes = {g: sum(p.numel() for _, p in ps) for g, ps in pair.groups.items()}
    moments = {g: _Moments(n) for g, n in sizes.items()}
    values, seconds = [], []
    with torch.random.fork_rng():
        pyro.set_rng_seed(seed)
        # One checked, untimed call: Pyro's validation and any lazy set-up happen here; an
        # estimator with a state of its own (NVIL's baseline) fits it to the pair first.
        with pyro.validation_enabled(True):
            pair.loss(elbo)
        if hasattr(elbo, "prepare"):
            elbo.prepare(pair.model, pair.guide, *pair.args, **pair.kwargs)
        with pyro.validation_enabled(False):
            for _ in range(repeats):
                start = time.perf_counter()
                loss = pair.loss(elbo)
                # autograd refuses an empty list of inputs, and a loss that depends on no
                # parameter; both have nothing to report (gradients of zero where unused).
                if params and loss.requires_grad:
                    grads = torch.autograd.grad(loss, params, allow_unused=True)
                else:
                    grads = [None] * len(params)
                seconds.append(time.perf_counter() - start)
                values.append(-loss.item() / pair.num_data)
                for group, vector in _group_vectors(pair, params, grads).items():
                    moments[group].add(vector)
                bar.update()
    exact = pair.exact or {}
    return EstimatorResult(
        choice.label,
        value=statistics.fmean(values),
        value_std=statistics.stdev(values),
        seconds_per_step=statistics.median(seconds),
        gradients={
            g: GradientStats([n for n, _ in pair.groups[g]], m.mean, m.var, repeats, exact.get(g))
            for g, m in moments.items()
            if sizes[g]
        },
    )


def _group_vectors(pair: _Pair, params: list, grads) -> dict[str, torch.Tensor]:
    """Each group's gradient of the per-datapoint objective (−loss / N, from ``grads`` of the
    loss), flattened in float64; zeros where a parameter got none."""
    flat = iter(
        p.new_zeros(p.numel()) if g is None else g.reshape(-1)
        for p, g in zip(params, grads, strict=True)
    )
    vectors = {}
    for group, members in pair.groups.items():
        vector = [next(flat) for _ in members]
        vectors[group] = (
            -torch.cat(vector).cpu().double() / pair.num_data
            if vector
            else torch.zeros(0, dtype=torch.float64)
        )
    return vectors


#: The relative size of float32 rounding: a coordinate whose spread is below it does not vary.
ROUNDING = float(torch.finfo(torch.float32).eps)

#: The most joint values of the guide's latents per datapoint the exact gradient enumerates.
EXACT_MAX_VALUES = 4096


def exact_elbo_gradient(pair: _Pair) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The exact gradient of the per-datapoint ELBO in each group, by enumerating the guide's
    discrete latents, with how it was found; ``(None, why not)`` where it cannot be."""
    try:
        layout = inspect_pair(pair.model, pair.guide, pair.args, pair.kwargs)
    except ModelGuideError as e:
        return None, f"none ({str(e).splitlines()[0]})"
    guide_trace, _ = traced_pair(pair.model, pair.guide, pair.args, pair.kwargs)
    latents = [s for s in sample_sites(guide_trace) if not s["is_observed"]]
    if not latents or not all(s["fn"].has_enumerate_support for s in latents):
        return None, "none (the guide has latents without an enumerable support)"
    values = math.prod(len(s["fn"].enumerate_support(expand=False)) for s in latents)
    if values > EXACT_MAX_VALUES:
        return None, f"none ({values:,} joint values per datapoint, above {EXACT_MAX_VALUES:,})"
    params = [p for members in pair.groups.values() for _, p in members]
    if not params:
        return None, "none (no parameters)"
    enumerated = config_enumerate(pair.guide, "parallel")
    elbo = pyro.infer.TraceEnum_ELBO(max_plate_nesting=layout.max_plate_nesting)
    with torch.random.fork_rng():
        loss = elbo.differentiable_loss(pair.model, enumerated, *pair.args, **pair.kwargs)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    how = f"exact ELBO gradient by enumeration ({values} joint values of the guide's latents)"
    return _group_vectors(pair, params, grads), how

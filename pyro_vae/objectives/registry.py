"""Training objectives: a registry from names to Pyro ELBO estimators.

``trace``
    :class:`~pyro.infer.Trace_ELBO`: the Monte Carlo ELBO
    E_q[log p(x, z) − log q(z | x)], with score-function terms for non-reparameterizable latents.
``trace_mean_field``
    :class:`~pyro.infer.TraceMeanField_ELBO`: the same ELBO with each KL(q(z_i | ·) ‖ p(z_i | ·))
    computed analytically where a closed form exists (sampled otherwise).
``iwae``
    :class:`~pyro_vae.objectives.iwae.IWAE_ELBO`: the K-sample importance-weighted bound,
    K = num_particles.
``iwae_dreg``
    :class:`~pyro_vae.objectives.dreg.IWAE_DReG`: the same bound with doubly reparameterized
    gradients.
``stl``
    :class:`~pyro_vae.objectives.stl.STL_ELBO`: the ELBO with the sticking-the-landing gradient
    (log q's score term dropped), averaged over K = num_particles draws.
``vimco``
    :class:`~pyro_vae.objectives.vimco.VIMCO`: the K-sample bound with per-sample leave-one-out
    baselines for guide sites drawn without reparameterization (discrete latents), K ≥ 2.
``rws``
    :class:`~pyro_vae.objectives.rws.ReweightedWakeSleep`: the K-sample bound's gradient for the
    model (wake-θ), the self-normalized wake-φ update for the guide, no gradient through the
    draws; K ≥ 2.
``tvo``
    :class:`~pyro_vae.objectives.tvo.TVO`: the thermodynamic variational objective, a left
    Riemann sum over ``partitions`` points of β from the ELBO (one partition) toward log p(x),
    with covariance gradients at fixed draws (discrete latents too).
``relaxed``
    :class:`~pyro_vae.objectives.relaxed.RelaxedELBO`: the ELBO of the pair with its Bernoulli
    and categorical latents relaxed (Gumbel-softmax / Concrete) at ``temperature`` (default
    0.5): reparameterized gradients, biased for the discrete ELBO.
``renyi``
    :class:`~pyro_vae.objectives.renyi.RenyiBound`: the variational Rényi bound of order ``alpha``
    (default 0.5) with K = num_particles samples; IWAE at α = 0, the ELBO as α → 1.
``trace_graph``
    :class:`TraceGraph_ELBO`: the ELBO with Rao-Blackwellized score-function terms (each
    non-reparameterized site is weighted by its downstream cost only); same value and, for
    reparameterized guides, the same gradient as ``trace``. ``trace_graph:baseline=nn``
    subtracts NVIL's learned baselines from those terms (:mod:`~pyro_vae.objectives.nvil`;
    ``baseline=mean``: the running mean alone).
``trace_enum``
    :class:`~pyro.infer.TraceEnum_ELBO`: discrete latents whose guide family is ``enumerate``
    are summed out exactly (for a mixture, the ELBO is then log p(x) itself); guide sites with
    ``enumerate = "parallel"`` are summed out under q.

The ELBO estimators (``trace``, ``trace_mean_field``, ``trace_graph``, ``trace_enum``) take the
setting ``classify = α``: the classification term of partially observed nodes
(:mod:`pyro_vae.objectives.classify`), e.g. ``trace_enum:classify=50``.

Particles are vectorized as an outer plate (``vectorize_particles=True``), never a Python loop.
An objective with its settings is one value, :class:`ObjectiveChoice`; building it for a
spec-built model first runs the objective's ``check``, which refuses combinations that would
silently give wrong gradients (see :mod:`pyro_vae.objectives.checks`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import pyro.infer
from torch import nn

from ..errors import PyroVaeError, SpecError, shown
from ..model.latent_model import MAX_PLATE_NESTING, LatentModel
from ..model.sequence_model import SequenceModel
from ..registry import Registry
from ..spec.options import Option
from .checks import (
    check_baseline,
    check_dreg,
    check_mean_field,
    check_relaxable,
    check_reparameterized,
    no_enumeration,
)
from .classify import CLASSIFY, Classified, classification_weight
from .dreg import IWAE_DReG
from .free_bits import FreeBitsELBO
from .fused import FusedELBO, fused_elbo
from .fused_sequence import FusedSequenceELBO
from .iwae import IWAE_ELBO
from .nvil import BASELINES, NVIL_ELBO, baseline_module
from .relaxed import RelaxedELBO
from .renyi import RenyiBound
from .rws import ReweightedWakeSleep
from .stl import STL_ELBO
from .trace_graph import TraceGraph_ELBO
from .tvo import TVO
from .vimco import VIMCO


@dataclass(frozen=True)
class Objective:
    """A registered objective.

    :param build: ``build(num_particles, vectorize=True, **options)`` returns the Pyro ELBO.
    :param check: ``check(vae)`` raises :class:`~pyro_vae.errors.SpecError` for a spec-built pair
        the estimator would train wrongly; None where every pair works.
    :param options: the keyword options ``build`` takes, with their checks and defaults.
    :param fused: ``fused(vae)`` builds the equivalent trace-free single-particle step
        (:mod:`pyro_vae.objectives.fused`), or returns None where ``vae`` has none; None for
        objectives without one.
    :param kl_weight: whether a weight on the KL term is defined for it (the ELBO estimators;
        see :mod:`pyro_vae.objectives.kl_weight`).
    :param free_bits_kl: for the ELBOs with a KL term per latent, how free bits
        (:mod:`pyro_vae.objectives.free_bits`) computes that KL: ``"closed_form"`` where torch
        has one, or ``"sampled"``; None where free bits is undefined.
    :param description: one line on what it estimates (``print(pv.OBJECTIVES)`` lists them).
    :param check_settings: ``check_settings(vae, options)``, a check of the pair that depends on
        the settings (a baseline needs a score-function term to act on).
    :param state: ``state(options, model, guide, args)`` builds the objective's own trained
        module (NVIL's baseline net) from one batch, or returns None where its settings need
        none; ``build`` then takes it as ``state=``.
    """

    build: Callable[..., pyro.infer.ELBO]
    check: Callable[[LatentModel], None] | None = None
    options: dict[str, Option] = field(default_factory=dict)
    fused: Callable[[LatentModel], FusedELBO | None] | None = None
    kl_weight: bool = False
    free_bits_kl: str | None = None
    description: str = ""
    min_particles: int = 1  # VIMCO's baselines come from the other samples: at least 2
    check_settings: Callable[[LatentModel, dict], None] | None = None
    state: Callable[..., nn.Module | None] | None = None


OBJECTIVES: Registry[Objective] = Registry("objective")


def _fused(vae, analytic_kl: bool) -> FusedELBO | None:
    """The trace-free step of ``vae``: a sequence model's (its model terms of all steps at
    once), or a spec-built pair's where its fast paths cover it."""
    if isinstance(vae, SequenceModel):
        node = vae.inference[vae.chain]
        return FusedSequenceELBO(vae, analytic_kl) if node.family.reparameterized else None
    return fused_elbo(vae, analytic_kl) if vae.has_fast_paths else None


def _particles(num_particles: int, vectorize: bool = True) -> dict:
    """Pyro's estimators' particle settings: an outer plate of particles, or (``vectorize``
    False, for a pair that cannot take one) a loop over them."""
    return dict(
        num_particles=num_particles,
        vectorize_particles=vectorize and num_particles > 1,
        max_plate_nesting=MAX_PLATE_NESTING,
    )


def _elbo(estimator):
    """The build of one of Pyro's ELBO estimators; ``classify`` is added by
    :meth:`ObjectiveChoice.build`, which knows the model."""
    return lambda k, vectorize=True, classify=None: estimator(**_particles(k, vectorize))


#: The settings of the ELBO estimators: the classification term of partially observed nodes.
ELBO_OPTIONS = {
    CLASSIFY: Option(
        classification_weight,
        None,
        "α: weight of −log q(y | x) on the labelled rows (Kingma et al. 2014); unset: none",
    )
}


def renyi_order(value) -> float:
    """α of the Rényi bound: a finite number other than 1 (α = 1 is the ELBO itself)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    if value == 1:
        raise ValueError("alpha = 1 is the ELBO; use objective 'trace'")
    return float(value)


def baseline_kind(value) -> str:
    """The baseline of ``trace_graph``'s score-function terms: a word of :data:`BASELINES`."""
    if value not in BASELINES:
        raise ValueError(f"must be one of {', '.join(BASELINES)}, got {shown(value)}")
    return value


def _trace_graph(k, vectorize=True, classify=None, baseline=None, state=None):
    """TraceGraph_ELBO, with NVIL's baselines where ``baseline`` is set (``state``: their
    module, trained with the pair; None: built on the first batch)."""
    if baseline is None:
        return TraceGraph_ELBO(**_particles(k, vectorize))
    return NVIL_ELBO(state, baseline, **_particles(k, vectorize))


def _baseline_state(options: dict, model, guide, args) -> nn.Module | None:
    """The baseline module ``trace_graph`` trains with the pair (None without a baseline)."""
    kind = options.get("baseline")
    return None if kind is None else baseline_module(kind, model, guide, args)


def relaxation_temperature(value) -> float:
    """τ of the relaxation: a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {shown(value)}")
    if value <= 0:
        raise ValueError(f"must be > 0, got {value:g}")
    return float(value)


def partition_count(value) -> int:
    """P of the TVO: a whole number from 1 to 1000 (written ``partitions=10``, read as 10.0)."""
    whole = isinstance(value, int | float) and math.isfinite(value) and value == int(value)
    if isinstance(value, bool) or not whole:
        raise ValueError(f"must be a whole number, got {value!r}")
    if not 1 <= value <= 1000:
        raise ValueError(f"must be from 1 to 1000, got {int(value)}")
    return int(value)


OBJECTIVES.register("trace")(
    Objective(
        _elbo(pyro.infer.Trace_ELBO),
        no_enumeration,
        options=ELBO_OPTIONS,
        fused=partial(_fused, analytic_kl=False),
        kl_weight=True,
        free_bits_kl="sampled",
        description="Trace_ELBO: the Monte Carlo ELBO (score-function terms where needed)",
    )
)
OBJECTIVES.register("trace_mean_field")(
    Objective(
        _elbo(pyro.infer.TraceMeanField_ELBO),
        check_mean_field,
        options=ELBO_OPTIONS,
        fused=partial(_fused, analytic_kl=True),
        kl_weight=True,
        free_bits_kl="closed_form",
        description="TraceMeanField_ELBO: the ELBO with each KL in closed form where one exists",
    )
)
OBJECTIVES.register("trace_graph")(
    Objective(
        _trace_graph,
        no_enumeration,
        options={
            **ELBO_OPTIONS,
            "baseline": Option(
                baseline_kind,
                None,
                "the score terms' baseline: mean (a running mean) or nn (NVIL's learned net "
                "of x, with the running mean); unset: none",
            ),
        },
        kl_weight=True,
        description="TraceGraph_ELBO: Rao-Blackwellized score-function terms; baseline=nn: "
        "NVIL's learned baselines (Mnih & Gregor 2014)",
        check_settings=check_baseline,
        state=_baseline_state,
    )
)
OBJECTIVES.register("trace_enum")(
    Objective(
        _elbo(pyro.infer.TraceEnum_ELBO),
        options=ELBO_OPTIONS,
        description="TraceEnum_ELBO: enumerated discrete latents summed out exactly",
    )
)
OBJECTIVES.register("iwae")(
    Objective(
        lambda k, vectorize=True: IWAE_ELBO(num_particles=k),
        partial(check_reparameterized, objective="iwae"),
        description="the K-sample importance-weighted bound (Burda et al. 2016); k=K",
    )
)
OBJECTIVES.register("iwae_dreg")(
    Objective(
        lambda k, vectorize=True: IWAE_DReG(num_particles=k),
        check_dreg,
        description="the IWAE bound with doubly reparameterized gradients (Tucker et al. 2019)",
    )
)
OBJECTIVES.register("renyi")(
    Objective(
        lambda k, alpha, vectorize=True: RenyiBound(num_particles=k, alpha=alpha),
        partial(check_reparameterized, objective="renyi"),
        {"alpha": Option(renyi_order, 0.5, "the order α of the bound, a number other than 1")},
        description="the variational Rényi bound of order alpha (Li & Turner 2016); k=K",
    )
)

OBJECTIVES.register("stl")(
    Objective(
        lambda k, vectorize=True: STL_ELBO(num_particles=k),
        partial(check_dreg, objective="stl"),
        description="the ELBO with the sticking-the-landing gradient (Roeder et al. 2017); "
        "k=K draws averaged",
    )
)
OBJECTIVES.register("vimco")(
    Objective(
        lambda k, vectorize=True: VIMCO(num_particles=k),
        no_enumeration,
        min_particles=2,
        description="the K-sample bound with VIMCO's per-sample baselines for discrete latents "
        "(Mnih & Rezende 2016); k=K >= 2",
    )
)
OBJECTIVES.register("rws")(
    Objective(
        lambda k, vectorize=True: ReweightedWakeSleep(num_particles=k),
        no_enumeration,
        min_particles=2,
        description="reweighted wake-sleep (Bornschein & Bengio 2015): the K-sample bound for "
        "the model, wake-phi for the guide; k=K >= 2",
    )
)
OBJECTIVES.register("tvo")(
    Objective(
        lambda k, partitions, vectorize=True: TVO(num_particles=k, partitions=partitions),
        no_enumeration,
        {"partitions": Option(partition_count, 10, "P: terms of the Riemann sum over β, 1-1000")},
        description="the thermodynamic variational objective (Masrani et al. 2019): a P-term "
        "Riemann sum from the ELBO (P=1) toward log p(x); k=K draws",
    )
)
OBJECTIVES.register("relaxed")(
    Objective(
        lambda k, temperature, vectorize=True: RelaxedELBO(temperature, **_particles(k, vectorize)),
        check_relaxable,
        {"temperature": Option(relaxation_temperature, 0.5, "τ of the relaxation, > 0")},
        description="the ELBO with Bernoulli and categorical latents relaxed to "
        "Gumbel-softmax/Concrete ones (Jang et al. 2017; Maddison et al. 2017); k=K draws",
    )
)


#: The most particles an objective may take. A bound on the setting alone, against typos
#: (``k=99999999999`` would ask for an 800 GB tensor); whether a step with this many fits the
#: device is estimated at train time, per batch, by :mod:`pyro_vae.runs.memory`.
MAX_PARTICLES = 100_000

#: A setting's value as written: a whole number for ``k``, a decimal number for the others
#: (ASCII digits only: Python's ``int`` would also take ``1_000`` and Arabic-Indic digits).
_WHOLE = re.compile(r"[+-]?[0-9]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DECIMAL = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|nan|inf|infinity)", re.IGNORECASE
)


@dataclass(frozen=True)
class ObjectiveChoice:
    """An objective with its settings, written ``name[:k=K[,option=value...]]``, e.g.
    ``iwae:k=50`` or ``renyi:k=5,alpha=0.5``; ``k`` is the number of particles.

    Constructing one checks the settings and completes ``options`` with the defaults.
    """

    name: str
    num_particles: int = 1
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise PyroVaeError(f"objective: expected a name, got {shown(self.name)}")
        if self.name not in OBJECTIVES:
            raise PyroVaeError(OBJECTIVES.unknown_message(shown(self.name)[1:-1]))
        k, least = self.num_particles, OBJECTIVES.get(self.name).min_particles
        whole = f"a whole number from {least} to {MAX_PARTICLES:,}"
        if isinstance(k, bool) or not isinstance(k, int):
            raise PyroVaeError(f"objective '{self.name}': k must be {whole}, got {shown(k)}")
        if not least <= k <= MAX_PARTICLES:
            bound = f"k must be >= {least}" if k < least else f"k must be <= {MAX_PARTICLES:,}"
            raise PyroVaeError(f"objective '{self.name}': {bound}, got {shown(k)} ({whole})")
        if not isinstance(self.options, dict):
            raise PyroVaeError(
                f"objective '{self.name}': options must be a table, got {shown(self.options)}"
            )
        object.__setattr__(self, "options", self._complete(dict(self.options)))

    def _complete(self, options: dict) -> dict:
        known = OBJECTIVES.get(self.name).options
        unknown = sorted(map(str, set(options) - set(known)))
        if unknown:
            names = ", ".join(known) or "none"
            raise PyroVaeError(
                f"objective '{self.name}' has no option {shown(unknown[0])} (options: {names})"
            )
        complete = {}
        for key, option in known.items():
            if key not in options and option.default is None:  # an optional setting, unset
                continue
            try:
                complete[key] = option.check(options.get(key, option.default))
            except ValueError as e:
                raise PyroVaeError(f"objective '{self.name}': option {_name(key)}: {e}") from None
        return complete

    @classmethod
    def parse(
        cls, text: str, *, num_particles: int | None = None, options: dict | None = None
    ) -> ObjectiveChoice:
        """Read ``name[:k=K,option=value,...]``. ``num_particles`` and ``options`` given apart
        (pv.train's keywords, the CLI's --num-particles) join in, unless ``text`` sets them too.

        :raises PyroVaeError: one line naming the setting at fault.
        """
        if not isinstance(text, str):
            raise PyroVaeError(f"objective: expected a name, got {shown(text)}")
        name, colon, rest = text.strip().partition(":")
        name = name.strip()
        if not name:
            raise PyroVaeError(f"objective {shown(text)}: no name before the settings")
        if colon and not rest.strip():
            raise PyroVaeError(f"objective {shown(text)}: nothing after ':'; write name:k=K")
        settings: dict = {}
        for pair in rest.split(",") if colon else ():
            key, value = _setting(text, pair)
            if key in settings:
                raise PyroVaeError(f"objective {shown(text)}: sets {_name(key)} twice")
            settings[key] = value
        if "k" in settings and num_particles is not None:
            raise PyroVaeError(
                f"objective {shown(text)} sets k; do not also give the number of particles"
            )
        if options and set(settings) - {"k"}:
            raise PyroVaeError(
                f"objective {shown(text)} sets its options; do not also give them apart"
            )
        k = settings.pop("k", 1 if num_particles is None else num_particles)
        return cls(name, k, {**settings, **(options or {})})

    @classmethod
    def of(cls, choice: str | ObjectiveChoice) -> ObjectiveChoice:
        return choice if isinstance(choice, ObjectiveChoice) else cls.parse(choice)

    @property
    def label(self) -> str:
        extra = [f"K={self.num_particles}"] if self.num_particles > 1 else []
        extra += [f"{k}={setting_text(v)}" for k, v in self.options.items()]
        return f"{self.name}({', '.join(extra)})" if extra else self.name

    def build(self, vae=None, vectorize: bool = True, state: nn.Module | None = None):
        """The estimator; for a spec-built ``vae``, after the objective's check of the pair
        (other Pyro pairs are checked by the estimator itself as it runs). ``vectorize``
        False: Pyro's estimators loop over their particles (a pair that cannot take a
        particle dimension; ours replicate its rows themselves). ``state``: the objective's
        own trained module, from :meth:`state_module`."""
        objective = OBJECTIVES.get(self.name)
        if isinstance(vae, LatentModel) and objective.check is not None:
            objective.check(vae)
        if isinstance(vae, LatentModel) and objective.check_settings is not None:
            objective.check_settings(vae, self.options)
        extra = {} if objective.state is None else {"state": state}
        elbo = objective.build(self.num_particles, vectorize=vectorize, **self.options, **extra)
        weight = self.options.get(CLASSIFY)
        if not weight:
            return elbo
        if not isinstance(vae, LatentModel):
            raise PyroVaeError(f"objective setting {CLASSIFY}: only for a spec-built model")
        return Classified(elbo, vae, weight)

    def state_module(self, pair, args: tuple) -> nn.Module | None:
        """The objective's own module to train with ``pair`` (a LatentModel or a hand-written
        pair), built from the batch ``args``; None where it has none."""
        make = OBJECTIVES.get(self.name).state
        return None if make is None else make(self.options, pair.model, pair.guide, args)

    def fused_step(self, vae: LatentModel) -> FusedELBO | None:
        """The trace-free step equal to this estimator on ``vae``, or None where there is none
        (objectives without one, several particles, or a pair it does not cover)."""
        fused = OBJECTIVES.get(self.name).fused
        if fused is None or self.num_particles != 1 or not isinstance(vae, LatentModel):
            return None
        if self.options.get(CLASSIFY):
            return None
        return fused(vae)

    def check_kl_weight(self, kl_weight: float, kl_warmup: int) -> None:
        """Refuse a KL weight other than 1, or a warm-up, where it is undefined."""
        if (kl_weight != 1 or kl_warmup) and not OBJECTIVES.get(self.name).kl_weight:
            weighted = ", ".join(n for n in OBJECTIVES.names() if OBJECTIVES.get(n).kl_weight)
            raise PyroVaeError(
                f"objective '{self.name}': a KL weight (--kl-weight, --kl-warmup) is undefined "
                f"for it, the KL is not a term of its bound; use one of {weighted}"
            )

    def free_bits(self, vae, free_bits: float, per: str = "site") -> FreeBitsELBO:
        """The free-bits objective with this estimator's KL terms, after its check of a
        spec-built ``vae``; refused for objectives without a KL term per latent."""
        self.check_free_bits()
        if self.options.get(CLASSIFY):
            raise PyroVaeError(f"objective setting {CLASSIFY}: not combined with free bits")
        self.build(vae)  # the objective's own check of the pair
        form = OBJECTIVES.get(self.name).free_bits_kl
        return FreeBitsELBO(free_bits, per, form == "closed_form", self.num_particles)

    def check_free_bits(self) -> None:
        """Refuse free bits where the objective has no KL term per latent."""
        if OBJECTIVES.get(self.name).free_bits_kl is None:
            usable = ", ".join(n for n in OBJECTIVES.names() if OBJECTIVES.get(n).free_bits_kl)
            raise PyroVaeError(
                f"objective '{self.name}': free bits (--free-bits) floors each latent's KL "
                f"term, which it has none of; use one of {usable}"
            )

    def usable_with(self, vae: LatentModel) -> bool:
        """Whether the objective's check accepts ``vae``."""
        try:
            self.build(vae)
        except SpecError:
            return False
        return True


def _setting(text: str, pair: str) -> tuple[str, int | float | str]:
    """One ``key=value`` of the settings in ``text``: ``k`` a whole number, the others numbers
    or words (``baseline=nn``; their values are checked by the objective's options)."""
    key, sep, value = (part.strip() for part in pair.partition("="))
    expected = f"objective {shown(text)}: expected name:k=K,option=value, got {shown(pair.strip())}"
    if not key:
        raise PyroVaeError(expected + " (an empty setting)")
    if not sep or not value:
        raise PyroVaeError(expected + f" ({_name(key)} has no value)")
    if key == "k":
        if not _WHOLE.fullmatch(value):
            raise PyroVaeError(
                expected + f" (k must be a whole number from 1 to {MAX_PARTICLES:,})"
            )
        if len(value) > 20:  # beyond any bound, and int() refuses 4,301 digits and more
            raise PyroVaeError(expected + f" (k must be <= {MAX_PARTICLES:,})")
        return key, int(value)
    if _DECIMAL.fullmatch(value):
        return key, float(value)
    if _WORD.fullmatch(value):
        return key, value
    raise PyroVaeError(expected + f" ({_name(key)} must be a number or a word)")


def setting_text(value) -> str:
    """A setting's value as written: a word as it is, a number in its shortest form."""
    return value if isinstance(value, str) else f"{value:g}"


def default_objective(vae: LatentModel) -> str:
    """The model spec's ``default_objective`` where it sets one; ``trace_enum`` with
    enumerated latents, else ``trace_mean_field`` where it is valid
    (analytic KL: lower variance), else ``trace``; ``trace`` for pairs not built from specs,
    which no spec check can vouch for."""
    if not isinstance(vae, LatentModel):
        return "trace"
    spec = vae.model_spec
    if spec.default_objective is not None:
        try:
            ObjectiveChoice.parse(spec.default_objective).build(vae)
        except PyroVaeError as e:
            raise SpecError(spec.path, "default_objective", str(e)) from None
        return spec.default_objective
    if vae.enumerated or vae.guide_enumerated:
        return "trace_enum"
    return "trace_mean_field" if ObjectiveChoice("trace_mean_field").usable_with(vae) else "trace"


def _name(key: str) -> str:
    """A setting's name as typed, quoted (and escaped) only if it is not a plain identifier, so
    that a stray control character cannot break the one-line message."""
    return key if key.isidentifier() else shown(key)

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
``renyi``
    :class:`~pyro_vae.objectives.renyi.RenyiBound`: the variational Rényi bound of order ``alpha``
    (default 0.5) with K = num_particles samples; IWAE at α = 0, the ELBO as α → 1.
``trace_graph``
    :class:`TraceGraph_ELBO`: the ELBO with Rao-Blackwellized score-function terms (each
    non-reparameterized site is weighted by its downstream cost only); same value and, for
    reparameterized guides, the same gradient as ``trace``.
``trace_enum``
    :class:`~pyro.infer.TraceEnum_ELBO`: discrete latents whose guide family is ``enumerate``
    are summed out exactly (for a mixture, the ELBO is then log p(x) itself).

Particles are vectorized as an outer plate (``vectorize_particles=True``), never a Python loop.
Before training, each objective's ``check`` (run by :func:`make_objective`) refuses
combinations that would silently give wrong gradients (see the check functions' docstrings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyro.infer

from ..errors import PyroVaeError
from ..model.latent_model import MAX_PLATE_NESTING, LatentModel
from ..registry import Registry
from .checks import (
    check_dreg,
    check_enumeration,
    check_mean_field,
    check_reparameterized,
    no_enumeration,
)
from .dreg import IWAE_DReG
from .iwae import IWAE_ELBO
from .renyi import RenyiBound
from .trace_graph import TraceGraph_ELBO


@dataclass(frozen=True)
class Objective:
    """``build(num_particles, **options)`` returns a Pyro ELBO; ``check(vae)`` raises if it
    cannot work; ``options`` names the keyword options ``build`` takes, with their defaults."""

    build: Callable[..., pyro.infer.ELBO]
    check: Callable[[LatentModel], None]
    doc: str = ""
    options: dict = field(default_factory=dict)


OBJECTIVES: Registry[Objective] = Registry("objective")


def _particles(num_particles: int) -> dict:
    return dict(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=MAX_PLATE_NESTING,
    )


OBJECTIVES.register("trace")(
    Objective(lambda k: pyro.infer.Trace_ELBO(**_particles(k)), no_enumeration, "Monte Carlo ELBO")
)
OBJECTIVES.register("iwae")(
    Objective(
        lambda k: IWAE_ELBO(num_particles=k),
        lambda vae: check_reparameterized(vae, "iwae"),
        "importance-weighted bound, K = num_particles",
    )
)
OBJECTIVES.register("iwae_dreg")(
    Objective(lambda k: IWAE_DReG(num_particles=k), check_dreg, "IWAE with DReG gradients")
)
OBJECTIVES.register("renyi")(
    Objective(
        lambda k, alpha: RenyiBound(num_particles=k, alpha=alpha),
        lambda vae: check_reparameterized(vae, "renyi"),
        "variational Rényi bound of order alpha, K = num_particles",
        {"alpha": 0.5},
    )
)
OBJECTIVES.register("trace_graph")(
    Objective(
        lambda k: TraceGraph_ELBO(**_particles(k)),
        no_enumeration,
        "Monte Carlo ELBO, Rao-Blackwellized score-function terms",
    )
)
OBJECTIVES.register("trace_enum")(
    Objective(
        lambda k: pyro.infer.TraceEnum_ELBO(**_particles(k)),
        check_enumeration,
        "ELBO with enumerated discrete latents summed out exactly",
    )
)
OBJECTIVES.register("trace_mean_field")(
    Objective(
        lambda k: pyro.infer.TraceMeanField_ELBO(**_particles(k)),
        check_mean_field,
        "ELBO with analytic KL terms",
    )
)


def objective_options(name: str, options: dict | None) -> dict:
    """``options`` completed with the objective's defaults; unknown or invalid ones refused."""
    if name not in OBJECTIVES:
        raise PyroVaeError(OBJECTIVES.unknown_message(name))
    objective = OBJECTIVES.get(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(objective.options))
    if unknown:
        known = ", ".join(objective.options) or "none"
        raise PyroVaeError(f"objective '{name}' has no option {unknown[0]!r} (options: {known})")
    merged = {**objective.options, **options}
    for key, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PyroVaeError(f"objective '{name}': option {key} must be a number, got {value!r}")
    if name == "renyi" and merged["alpha"] == 1:
        raise PyroVaeError("objective 'renyi': alpha = 1 is the ELBO; use objective 'trace'")
    return merged


def make_objective(
    name: str, vae: LatentModel, num_particles: int = 1, **options
) -> pyro.infer.ELBO:
    """Look up ``name``, check it suits ``vae``, and build the estimator."""
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    objective = OBJECTIVES.get(name)
    options = objective_options(name, options)
    objective.check(vae)
    return objective.build(num_particles, **options)


@dataclass(frozen=True)
class ObjectiveChoice:
    """An objective with its settings, written ``name[:k=K[,option=value...]]``, e.g.
    ``iwae:k=50`` or ``renyi:k=5,alpha=0.5``; ``k`` is the number of particles."""

    name: str
    num_particles: int = 1
    options: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> ObjectiveChoice:
        name, _, rest = text.strip().partition(":")
        if name not in OBJECTIVES:
            raise PyroVaeError(OBJECTIVES.unknown_message(name))
        settings: dict = {}
        for pair in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = pair.partition("=")
            try:
                if not sep:
                    raise ValueError
                settings[key.strip()] = float(value) if key.strip() != "k" else int(value)
            except ValueError:
                raise PyroVaeError(
                    f"objective {text!r}: expected name:k=K,option=value, got {pair!r}"
                ) from None
        k = settings.pop("k", 1)
        if k < 1:
            raise PyroVaeError(f"objective {text!r}: k must be >= 1, got {k}")
        return cls(name, k, objective_options(name, settings))

    @classmethod
    def of(cls, choice: str | ObjectiveChoice) -> ObjectiveChoice:
        return choice if isinstance(choice, ObjectiveChoice) else cls.parse(choice)

    @property
    def label(self) -> str:
        extra = [f"K={self.num_particles}"] if self.num_particles > 1 else []
        extra += [f"{k}={v:g}" for k, v in self.options.items()]
        return f"{self.name}({', '.join(extra)})" if extra else self.name

    def build(self, vae: LatentModel) -> pyro.infer.ELBO:
        return make_objective(self.name, vae, self.num_particles, **self.options)


def default_objective(vae: LatentModel) -> str:
    """``trace_enum`` with enumerated latents, else ``trace_mean_field`` where it is valid
    (analytic KL: lower variance), else ``trace``."""
    if vae.enumerated:
        return "trace_enum"
    try:
        check_mean_field(vae)
    except PyroVaeError:
        return "trace"
    return "trace_mean_field"

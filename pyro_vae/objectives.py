"""Training objectives: a registry from names to Pyro ELBO estimators.

``trace``
    :class:`~pyro.infer.Trace_ELBO`: the Monte Carlo ELBO
    E_q[log p(x, z) − log q(z | x)], with score-function terms for non-reparameterizable latents.
``trace_mean_field``
    :class:`~pyro.infer.TraceMeanField_ELBO`: the same ELBO with each KL(q(z_i | ·) ‖ p(z_i | ·))
    computed analytically where a closed form exists (sampled otherwise).
``iwae``
    :class:`~pyro_vae.iwae.IWAE_ELBO`: the K-sample importance-weighted bound, K = num_particles.
``iwae_dreg``
    :class:`~pyro_vae.iwae.IWAE_DReG`: the same bound with doubly reparameterized gradients.
``renyi``
    :class:`~pyro_vae.iwae.RenyiBound`: the variational Rényi bound of order ``alpha``
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
import torch
from pyro.infer.util import torch_item

from .errors import PyroVaeError, SpecError
from .iwae import IWAE_ELBO, IWAE_DReG, RenyiBound
from .latent_model import MAX_PLATE_NESTING, LatentModel
from .registry import Registry


@dataclass(frozen=True)
class Objective:
    """``build(num_particles, **options)`` returns a Pyro ELBO; ``check(vae)`` raises if it
    cannot work; ``options`` names the keyword options ``build`` takes, with their defaults."""

    build: Callable[..., pyro.infer.ELBO]
    check: Callable[[LatentModel], None]
    doc: str = ""
    options: dict = field(default_factory=dict)


class TraceGraph_ELBO(pyro.infer.TraceGraph_ELBO):
    """Pyro's TraceGraph_ELBO with a ``differentiable_loss``: its value is −ELBO, its gradient
    that of Pyro's Rao-Blackwellized surrogate (Schulman et al. 2015, "Gradient Estimation Using
    Stochastic Computation Graphs")."""

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        elbo, surrogate = self._loss_and_surrogate_loss(model, guide, args, kwargs)
        return -torch_item(elbo) + (surrogate - surrogate.detach())


OBJECTIVES: Registry[Objective] = Registry("objective")


def _particles(num_particles: int) -> dict:
    return dict(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=MAX_PLATE_NESTING,
    )


def no_enumeration(vae: LatentModel) -> None:
    """Trace_ELBO-style estimators need a guide site for every latent."""
    if vae.enumerated:
        name = sorted(vae.enumerated)[0]
        raise SpecError(
            vae.guide_spec.path,
            f"latent.{name}.family",
            "an enumerated latent is summed out exactly; train with objective 'trace_enum'",
        )


def check_enumeration(vae: LatentModel) -> None:
    """TraceEnum_ELBO sums enumerated latents out; sampled guide sites must be reparameterized
    or are handled by its score-function terms, so any guide works."""


def check_reparameterized(vae: LatentModel, objective: str) -> None:
    """Objectives without a score-function term need every guide site reparameterizable."""
    no_enumeration(vae)
    for name, node in vae.inference.items():
        if not node.family.reparameterized:
            raise SpecError(
                vae.guide_spec.path,
                f"latent.{name}.family",
                f"objective '{objective}' needs reparameterizable guide sites, but "
                f"'{name}' is {vae.guide_spec.latents[name].family}; use objective 'trace'",
            )


def check_dreg(vae: LatentModel) -> None:
    """DReG holds log q's parameters fixed, which is exact only if guide sites see x alone."""
    check_reparameterized(vae, "iwae_dreg")
    for name, node in vae.guide_spec.latents.items():
        latents = [p for p in node.given if p != "x"]
        if latents:
            raise SpecError(
                vae.guide_spec.path,
                f"latent.{name}.given",
                f"objective 'iwae_dreg' supports guides conditioned on x only, but '{name}' "
                f"also sees {latents}; use objective 'iwae'",
            )


def check_mean_field(vae: LatentModel) -> None:
    """Refuse what makes TraceMeanField_ELBO's gradients wrong.

    1. It has no score-function term, so every guide site must be reparameterizable
       (a categorical guide would get biased gradients without any warning).
    2. The analytic KL(q(z | ·) ‖ p(z | parents)) integrates z out while the model parents of z
       stay at their sampled values. That is unbiased only if those parents are not sampled
       *from* z in the guide, i.e. no model parent of z is a guide descendant of z.
    """
    check_reparameterized(vae, "trace_mean_field")
    guide = vae.guide_spec
    children = {n: [m for m, s in guide.latents.items() if n in s.given] for n in guide.latents}
    for name in guide.latents:
        descendants, stack = set(), list(children[name])
        while stack:
            d = stack.pop()
            if d not in descendants:
                descendants.add(d)
                stack.extend(children[d])
        for parent in vae.model_spec.latents[name].given:
            if parent in descendants:
                raise SpecError(
                    guide.path,
                    f"latent.{parent}.given",
                    f"objective 'trace_mean_field' needs the guide to sample '{parent}' before "
                    f"'{name}' (its model parent) without depending on it; order the guide like "
                    f"the model, or use objective 'trace'",
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

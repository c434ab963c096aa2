"""What each objective needs of a model/guide pair: checks that refuse silently wrong gradients.

Each check takes a :class:`~pyro_vae.model.latent_model.LatentModel` and raises
:class:`~pyro_vae.errors.SpecError`, naming the guide file and key, for a pair the objective
cannot train correctly.
"""

from __future__ import annotations

from ..errors import SpecError
from ..model.latent_model import LatentModel


def no_enumeration(vae: LatentModel) -> None:
    """Trace_ELBO-style estimators need a guide site for every latent."""
    if vae.enumerated:
        name = sorted(vae.enumerated)[0]
        raise SpecError(
            vae.guide_spec.path,
            f"latent.{name}.family",
            "an enumerated latent is summed out exactly; train with objective 'trace_enum'",
        )


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


def check_dreg(vae: LatentModel, objective: str = "iwae_dreg") -> None:
    """DReG and STL hold log q's parameters fixed, which keeps every path term only if guide
    sites see x alone (a latent parent's path runs through those parameters)."""
    check_reparameterized(vae, objective=objective)
    for name, node in vae.guide_spec.latents.items():
        latents = [p for p in node.given if p != "x"]
        if latents:
            instead = "iwae" if objective == "iwae_dreg" else "trace"
            raise SpecError(
                vae.guide_spec.path,
                f"latent.{name}.given",
                f"objective '{objective}' supports guides conditioned on x only, but '{name}' "
                f"also sees {latents}; use objective '{instead}'",
            )


def check_mean_field(vae: LatentModel) -> None:
    """Refuse what makes TraceMeanField_ELBO's gradients wrong.

    1. It has no score-function term, so every guide site must be reparameterizable
       (a categorical guide would get biased gradients without any warning).
    2. The analytic KL(q(z | ·) ‖ p(z | parents)) integrates z out while the model parents of z
       stay at their sampled values. That is unbiased only if those parents are not sampled
       *from* z in the guide, i.e. no model parent of z is a guide descendant of z.
    """
    check_reparameterized(vae, objective="trace_mean_field")
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


def check_baseline(vae: LatentModel, options: dict) -> None:
    """A baseline acts on score-function terms: refused where every guide site is
    reparameterized (there are none)."""
    name = _all_reparameterized(vae)
    if options.get("baseline") is not None and name is not None:
        raise SpecError(
            vae.guide_spec.path,
            f"latent.{name}.family",
            "objective 'trace_graph' setting baseline: every guide site is reparameterized, so "
            "there is no score-function term to subtract a baseline from; leave it out",
        )


def check_relaxable(vae: LatentModel) -> None:
    """A relaxation replaces the latents drawn without reparameterization: refused where the
    guide has none (the objective would be ``trace`` under another name)."""
    no_enumeration(vae)
    name = _all_reparameterized(vae)
    if name is not None:
        raise SpecError(
            vae.guide_spec.path,
            f"latent.{name}.family",
            "objective 'relaxed' relaxes discrete latents, and every guide site is "
            "reparameterized already; use objective 'trace'",
        )


def _all_reparameterized(vae: LatentModel) -> str | None:
    """The guide's first latent, where every guide site is drawn by reparameterization (a
    key to name in a refusal); None where some site has a score-function term."""
    if all(node.family.reparameterized for node in vae.inference.values()):
        return next(iter(vae.guide_spec.latents))
    return None

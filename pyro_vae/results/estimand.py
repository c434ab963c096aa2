"""What a number estimates, as a small value every result carries.

A pair called as ``model(x)`` estimates log p(x); called with a label it also observes,
``model(x, y)``, log p(x, y); called with an input it conditions on but never models (a
conditional VAE's ``model(c, y)``), log p(y | c). The KL terms name their densities the same way:
the gap is KL(q(z | x) ‖ p(z | x)), and ELBO surgery's KL is taken against the prior p(z), or
p(z | c) where the prior reads a conditioning input. :func:`pyro_vae.inference.estimand.estimand`
derives the value from a pair's trace and the arguments it was called with; the views print it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The combining circumflex of p̂: an estimate of p.
HAT = "\u0302"

#: Latent names written out in full up to this many; more are shortened to ``first, …, last``.
MAX_NAMES = 3


def short_names(names) -> str:
    """``a, b, c``: the names in full, up to :data:`MAX_NAMES`; more as ``first, …, last``."""
    if len(names) > MAX_NAMES:
        return f"{names[0]}, …, {names[-1]}"
    return ", ".join(names)


@dataclass(frozen=True)
class Estimand:
    """The observed quantities, the conditioning inputs, the latents, and which conditioning
    inputs the prior reads (``prior_given``; none: the prior is unconditional).

    Each quantity is named by the argument it was passed as (its parameter name in the model's
    signature) or, for an observed site whose value is not an argument, by the site's name.
    """

    observed: tuple[str, ...] = ("x",)
    given: tuple[str, ...] = ()
    latents: tuple[str, ...] = ("z",)
    prior_given: tuple[str, ...] = ()

    @property
    def conditional_prior(self) -> bool:
        return bool(self.prior_given)

    def _of(self, names: tuple[str, ...], given: tuple[str, ...]) -> str:
        return short_names(names) + (f" | {short_names(given)}" if given else "")

    def log_p(self, hat: bool = False) -> str:
        """``log p(x)``, ``log p(x, y)``, ``log p(y | c)``; ``log p̂(…)`` with ``hat``."""
        return f"log p{HAT if hat else ''}({self._of(self.observed, self.given)})"

    @property
    def log_p_hat(self) -> str:
        return self.log_p(hat=True)

    @property
    def guide(self) -> str:
        """``q(z|x)``: the guide's density of the latents given all it is called with."""
        return f"q({short_names(self.latents)}|{short_names(self.observed + self.given)})"

    @property
    def posterior_kl(self) -> str:
        """``KL(q(z|x) ‖ p(z|x))``: what the gap log p(x) − ELBO is."""
        posterior = f"p({short_names(self.latents)}|{short_names(self.observed + self.given)})"
        return f"KL({self.guide} ‖ {posterior})"

    @property
    def prior(self) -> str:
        """``p(z)``, or ``p(z|c)`` for a conditional prior."""
        given = f"|{short_names(self.prior_given)}" if self.prior_given else ""
        return f"p({short_names(self.latents)}{given})"

    @property
    def information(self) -> str:
        """``I[x; z]``: the mutual information between the data and the latents under q."""
        return f"I[{short_names(self.observed + self.given)}; {short_names(self.latents)}]"

    @property
    def aggregate_kl(self) -> str:
        """``KL(q̄(z) ‖ p(z))``: the aggregate posterior against the prior."""
        return f"KL(q̄({short_names(self.latents)}) ‖ {self.prior})"

    @property
    def prior_kl(self) -> str:
        """``KL(q(z|x) ‖ p(z))``: the KL term of the ELBO, against the (conditional) prior."""
        return f"KL({self.guide} ‖ {self.prior})"

    def to_dict(self) -> dict:
        return {
            "log_p": self.log_p(),
            "observed": list(self.observed),
            "given": list(self.given),
            "latents": list(self.latents),
            "prior_given": list(self.prior_given),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Estimand:
        return cls(*(tuple(d[k]) for k in ("observed", "given", "latents", "prior_given")))


#: What a spec-built pair ``model(x)`` with one latent ``z`` estimates; results assembled by
#: hand, without a pair, default to it.
LOG_PX = Estimand()

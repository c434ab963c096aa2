"""The choices an estimator takes, as values: where the samples come from (:class:`Proposal`) and
how log p(x) is estimated (:class:`Method`).

Each is a string enum, so ``proposal="prior"`` and ``method="ais"`` keep working and JSON keeps
the plain strings, while what a choice means (which program draws the latents, what a draw is
called) is a field of the value, read in one place instead of compared in many.
"""

from __future__ import annotations

from enum import StrEnum


class _Choice(StrEnum):
    """A string enum; :meth:`of` checks a user's value."""

    @classmethod
    def of(cls, value):
        """The member named ``value`` (a member or its string), or a ValueError listing them."""
        try:
            return cls(value)
        except ValueError:
            names = tuple(m.value for m in cls)
            label = cls.__name__.lower()
            raise ValueError(f"{label} must be one of {names}, got {value!r}") from None


class Proposal(_Choice):
    """What the latents are drawn from: the guide q(z | x), or the prior p(z) (the naive Monte
    Carlo estimator, whose weights are then just p(x | z))."""

    GUIDE = "guide"
    PRIOR = "prior"

    @property
    def uses_guide(self) -> bool:
        return self is Proposal.GUIDE

    @property
    def description(self) -> str:
        return _PROPOSAL_DESCRIPTIONS[self]

    def program(self, model, guide):
        """The program whose sample sites draw the latents."""
        return guide if self.uses_guide else model


_PROPOSAL_DESCRIPTIONS = {
    Proposal.GUIDE: "samples from the guide",
    Proposal.PRIOR: "samples from the prior (naive Monte Carlo)",
}


class Method(_Choice):
    """How log p(x) is estimated: importance sampling, or annealed importance sampling."""

    IS = "is"
    AIS = "ais"

    @property
    def title(self) -> str:
        return _METHOD_FIELDS[self][0]

    @property
    def draws(self) -> str:
        """What one of its K draws per datapoint is called."""
        return _METHOD_FIELDS[self][1]


_METHOD_FIELDS = {
    Method.IS: ("importance sampling", "samples"),
    Method.AIS: ("annealed importance sampling", "chains"),
}

"""A weight on the KL term of the ELBO: the β-VAE objective and KL warm-up.

With β the weight,

.. math:: \\mathcal L_\\beta = \\mathbb E_{q(z \\mid x)}[\\log p(x \\mid z)]
          - \\beta \\, \\mathrm{KL}\\big(q(z \\mid x) \\,\\|\\, p(z)\\big)
        = \\mathbb E_q\\big[\\log p(x \\mid z) + \\beta\\,(\\log p(z) - \\log q(z \\mid x))\\big],

which is the ELBO at β = 1. β > 1 (Higgins et al. 2017, "β-VAE") trades reconstruction for a
posterior closer to the prior; a ramp of β from 0 to its value over the first epochs (KL
warm-up: Bowman et al. 2016; Sønderby et al. 2016) lets the decoder learn to use z before the KL
term can push q onto the prior (posterior collapse).

:class:`KLWeight` puts β on every latent site of a model and its guide, so any ELBO estimator
whose terms are per-site log densities (``Trace_ELBO``, ``TraceMeanField_ELBO`` with its
analytic KLs, ``TraceGraph_ELBO``) computes :math:`\\mathcal L_\\beta`. For the
importance-weighted bounds the KL is not a separate term and a weight on it is undefined.
"""

from __future__ import annotations

from pyro.poutine.messenger import Messenger


class KLWeight(Messenger):
    """Multiplies the log density of every latent (unobserved) sample site by ``weight``;
    change ``weight`` between steps for a warm-up."""

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def _pyro_sample(self, msg):
        if not msg["is_observed"]:
            msg["scale"] = msg["scale"] * self.weight


def warmup_weight(kl_weight: float, warmup_steps: int, step: int) -> float:
    """β at training step ``step`` (0-based): a linear ramp from 0 reaching ``kl_weight`` after
    ``warmup_steps`` steps, constant after (no ramp when ``warmup_steps`` is 0)."""
    if warmup_steps <= 0:
        return kl_weight
    return kl_weight * min(1.0, step / warmup_steps)


class KLWeighted:
    """A Pyro ELBO estimator computing :math:`\\mathcal L_\\beta`: it runs the model and guide
    under :class:`KLWeight`. ``kl_weight`` may change between steps (a warm-up), as the fused
    step's (:class:`~pyro_vae.objectives.fused.FusedELBO`) does."""

    def __init__(self, elbo, kl_weight: float = 1.0):
        self.elbo, self._messenger = elbo, KLWeight(kl_weight)

    @property
    def kl_weight(self) -> float:
        return self._messenger.weight

    @kl_weight.setter
    def kl_weight(self, value: float) -> None:
        self._messenger.weight = value

    def __getattr__(self, name):  # what the estimator it weighs records (classification_total)
        if name == "elbo":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.elbo, name)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        weighted = self._messenger
        return self.elbo.differentiable_loss(weighted(model), weighted(guide), *args, **kwargs)

    def loss(self, model, guide, *args, **kwargs) -> float:
        weighted = self._messenger
        return self.elbo.loss(weighted(model), weighted(guide), *args, **kwargs)

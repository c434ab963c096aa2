"""The classification term of a partially observed node: Kingma et al. (2014), "Semi-Supervised
Learning with Deep Generative Models", eq. (9).

In M2 the guide's q(y | x) is a classifier, but the ELBO of a labelled row does not train it:
there y is observed and q(y | x) never appears. Kingma et al. add, on the labelled rows,

.. math:: \\mathcal J^\\alpha = \\mathcal J + \\alpha \\, \\mathbb E_{(x, y) \\sim \\tilde p_l}
          \\left[-\\log q_\\phi(y \\mid x)\\right],

with α = 0.1 · N in their experiments. :class:`Classified` is any ELBO estimator with that term
added to its loss (the ``classify = α`` setting of the ELBO objectives); the term is summed over
the labelled rows of a call, as the ELBO's terms are summed over its rows.
"""

from __future__ import annotations

import math

import torch

from ..errors import PyroVaeError

#: The setting's name on the ELBO objectives.
CLASSIFY = "classify"


def classification_weight(value) -> float:
    """α ≥ 0, finite."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"must be >= 0, got {value!r}")
    return float(value)


class Classified:
    """``elbo`` with α · (−log q(y | x)) added on the labelled rows of ``vae``'s partially
    observed nodes (:meth:`~pyro_vae.LatentModel.classification_log_prob`)."""

    def __init__(self, elbo, vae, weight: float):
        if not vae.classifiers:
            raise PyroVaeError(
                f"objective setting {CLASSIFY}={weight:g}: the model has no partially observed "
                f"node whose guide gives q(y | data) (a guide node given only data nodes)"
            )
        self.elbo, self.vae, self.weight = elbo, vae, weight
        #: The classification terms added by :meth:`differentiable_loss` so far, summed: the
        #: training loop takes them out of the ELBO it reports.
        self.classification_total = 0.0

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        loss = self.elbo.differentiable_loss(model, guide, *args, **kwargs)
        term = -self.weight * self.vae.classification_log_prob(*args, **kwargs)
        self.classification_total += float(term.detach())
        return loss + term

    def loss(self, model, guide, *args, **kwargs) -> float:
        loss = self.elbo.loss(model, guide, *args, **kwargs)
        with torch.no_grad():
            return loss - self.weight * float(self.vae.classification_log_prob(*args, **kwargs))

    def __getattr__(self, name):  # num_particles, max_plate_nesting, … of the estimator
        return getattr(self.elbo, name)

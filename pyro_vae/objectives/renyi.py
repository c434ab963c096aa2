"""The variational Rényi bound (Li & Turner 2016, "Rényi Divergence Variational Inference").

``RenyiBound`` generalizes IWAE's bound with an order α ≠ 1:

.. math:: \\mathcal{L}_{\\alpha,K} = \\mathbb{E}\\Big[\\frac{1}{1-\\alpha}
          \\log \\frac{1}{K}\\sum_{k=1}^K w_k^{1-\\alpha}\\Big],

which is IWAE's bound at α = 0 and tends to the ELBO as α → 1; for 0 < α < 1 it lies between
the two. Unlike :class:`pyro.infer.RenyiELBO`, which weights the whole mini-batch jointly, it is
computed per datapoint, so it bounds each log p(x_n) and sums over the batch.
"""

from __future__ import annotations

from .iwae import IWAE_ELBO


class RenyiBound(IWAE_ELBO):
    """The per-datapoint variational Rényi bound of order ``alpha`` (α ≠ 1) with K samples.

    Its reparameterized gradient weights sample k by the normalized w_k^(1−α): α = 0 is IWAE,
    α → 1 the ELBO's uniform weights.
    """

    def __init__(self, num_particles: int = 5, alpha: float = 0.5, **kwargs):
        if alpha == 1:
            raise ValueError("alpha = 1 is the ELBO; use objective 'trace'")
        super().__init__(num_particles=num_particles, **kwargs)
        self.alpha = float(alpha)

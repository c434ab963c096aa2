r"""The single-particle ELBO of a sequence model, with the model's terms of all steps at once.

Why this exists
---------------
Under Pyro's estimators a state-space pair runs as it is written: the guide samples
:math:`z_t \sim q(z_t \mid z_{t-1}, h_t)` step by step, and the model is replayed step by step,
its transition and emission nets called once per step on a batch of N rows, each site traced
and scored on its own. Only the guide has to be sequential (z_t needs z_{t−1}); given the
guide's draws, every model term is known. So after the guide's loop the transition net runs
once on all of :math:`z_{0:T-1}` (N·T rows), the emission net once on all of
:math:`z_{1:T}`, and every density is one batched call: the matrix products are T times larger
and T times fewer, and no site is traced.

What it computes
----------------
For sequences :math:`x_{1:T}` with lengths :math:`L_n` and one draw per step from the guide,

.. math::

    -\sum_n \sum_{t \le L_n} \Big[ \log p(x_{n,t} \mid z_{n,t})
        + \beta \big( \log p(z_{n,t} \mid z_{n,t-1}) - \log q(z_{n,t} \mid z_{n,t-1}, h_{n,t})
        \big) \Big],

(Pyro's ``Trace_ELBO``), or with each step's latent terms replaced by
:math:`-\beta\,\mathrm{KL}(q(z_t \mid \cdot) \,\|\, p(z_t \mid z_{t-1}))` where a closed form is
registered (``TraceMeanField_ELBO``). The guide's draws are the same random numbers in the same
order as under Pyro's estimators, so the loss and gradients equal theirs up to float rounding;
training checks that on one batch before using it
(:func:`~pyro_vae.objectives.fused.checked_step`).
"""

from __future__ import annotations

import torch

from ..inference.importance import closed_form_kl
from ..model.sequence_model import step_mask
from ..spec.parse import DATA
from .fused import FusedELBO


class FusedSequenceELBO(FusedELBO):
    """−ELBO of a :class:`~pyro_vae.model.sequence_model.SequenceModel` summed over a batch of
    sequences, as ``Trace_ELBO`` (``analytic_kl=False``) or ``TraceMeanField_ELBO`` compute
    it with one particle; ``kl_weight`` β weighs the latent terms."""

    def differentiable_loss(self, model, guide, x: torch.Tensor, lengths=None) -> torch.Tensor:
        """Drop-in for ``differentiable_loss(vae.model, vae.guide, x, lengths)`` of Pyro's."""
        if model != self.vae.model or guide != self.vae.guide:
            raise ValueError(
                "FusedSequenceELBO computes the loss of its own vae.model and vae.guide"
            )
        return self.negative_elbo(x, lengths)

    def negative_elbo(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        vae = self.vae
        zs, guide = self._guide(x, lengths)
        chain, emission = vae.generative[vae.chain], vae.generative[DATA]
        first = chain.initial.expand(x.shape[0], 1, -1)
        previous = torch.cat([first, zs[:, :-1]], dim=1)
        raw = chain.raw({vae.chain: previous})  # the transition of every step in one call
        log_px = emission({vae.chain: zs}).log_prob(x)  # (N, T)
        latent = self._latent_terms(chain.family, raw, guide, zs)  # (N, T)
        total = log_px + latent
        mask = step_mask(lengths, x)
        if mask is not None:
            total = total * mask
        return -total.sum()

    def _guide(self, x, lengths) -> tuple[torch.Tensor, list]:
        """The guide's draws ``(N, T, Dz)``, step by step as the guide makes them, and each
        step's q."""
        vae = self.vae
        node = vae.inference[vae.chain]
        full = torch.full(x.shape[:1], x.shape[1], device=x.device)
        states = node.states(x, full if lengths is None else lengths)
        z, zs, guide = node.initial, [], []
        for t in range(x.shape[1]):
            q = node({vae.chain: z, DATA: states[:, t]})
            if q.batch_shape != x.shape[:1]:
                q = q.expand(x.shape[:1])
            z = q.rsample()
            zs.append(z)
            guide.append(q)
        return torch.stack(zs, dim=1), guide

    def _latent_terms(self, family, raw, guide: list, zs) -> torch.Tensor:
        """Per sequence and step: β (log p(z_t | z_{t−1}) − log q(z_t | ·)), or −β KL where
        ``analytic_kl`` and a closed form exist."""
        if not self.analytic_kl:
            log_q = torch.stack([q.log_prob(zs[:, t]) for t, q in enumerate(guide)], dim=1)
            return self._weighted(family(raw).log_prob(zs) - log_q)
        terms = []
        for t, q in enumerate(guide):  # KL needs each step's q and p as distributions
            p = family(raw[:, t])
            kl = closed_form_kl(q, p)
            terms.append(q.log_prob(zs[:, t]) - p.log_prob(zs[:, t]) if kl is None else kl)
        return -self._weighted(torch.stack(terms, dim=1))

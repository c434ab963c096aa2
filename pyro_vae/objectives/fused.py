r"""The single-particle ELBO of a spec-built model, computed straight from its modules.

Why this exists
---------------
A training step with Pyro's estimators runs ``model`` and ``guide`` under poutine messengers:
every site is traced, broadcast by ``pyro.plate``, replayed, and scored by
``compute_log_prob``, and ``pyro.module`` re-registers every parameter in the param store. For
a 784-400-50 VAE on a CPU that bookkeeping costs about 4 ms of a 14 ms step, while the
arithmetic it orchestrates is the same as a hand-written PyTorch step's. A
:class:`~pyro_vae.LatentModel` has a fixed structure known from its specs, so the same loss can
be computed without any trace: run the guide's nodes, then the model's, and add up.

What it computes
----------------
For a batch :math:`x_{1:N}`, with one sample :math:`z_n \sim q(z \mid x_n)` drawn by
reparameterization (:math:`z = \mu + \sigma \odot \varepsilon`) in the guide's sampling
order, the negative ELBO summed over the batch,

.. math::

    -\sum_n \Big[ \log p(x_n \mid z_n)
        + \sum_i \big( \log p(z_{n,i} \mid \mathrm{pa}_i) - \log q(z_{n,i} \mid \cdot) \big)
    \Big]

(``analytic_kl=False``: Pyro's ``Trace_ELBO``), or, with each latent's sampled term replaced by
:math:`-\mathrm{KL}\big(q(z_i \mid \cdot) \,\|\, p(z_i \mid \mathrm{pa}_i)\big)` where
``torch.distributions.kl_divergence`` knows a closed form (``analytic_kl=True``: Pyro's
``TraceMeanField_ELBO``, which falls back to the sampled term in exactly the same way). Values
and gradients equal ``differentiable_loss`` of those estimators at ``num_particles=1``, up to
float rounding, and the random stream is consumed identically (same draws, same order), so a
run can switch between the two. Training checks that agreement on one batch before using it
(:func:`checked_step`).

It applies only where that equality is simple to guarantee: one particle, no enumerated
latents, and reparameterizable guide sites (no score-function terms); see :func:`fused_elbo`.
Which objectives have a fused step is a field of their registry entry
(:attr:`pyro_vae.objectives.registry.Objective.fused`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from pyro.distributions.util import sum_rightmost
from torch.distributions import Independent
from torch.distributions.kl import _dispatch_kl

from ..devices import fork_rng, rng_state, set_rng_state
from ..inference.importance import closed_form_kl
from ..model.compiling import compiling
from ..model.latent_model import LatentModel
from ..spec.parse import DATA

#: How closely the fused loss and each parameter's gradient must match Pyro's on the checked
#: batch, relative to the loss and to the gradient's largest entry (they agree to ~1e-7).
FUSED_RTOL = 1e-4


class FusedELBO:
    """−ELBO of ``vae`` summed over a batch, as Pyro's ``Trace_ELBO`` (``analytic_kl=False``)
    or ``TraceMeanField_ELBO`` (``analytic_kl=True``) compute it with one particle.

    ``kl_weight`` β weighs the latents' terms (the KL): the β-weighted ELBO, as those
    estimators compute it under :class:`~pyro_vae.objectives.kl_weight.KLWeight`.
    """

    def __init__(self, vae: LatentModel, analytic_kl: bool, kl_weight: float = 1.0):
        self.vae, self.analytic_kl, self.kl_weight = vae, analytic_kl, kl_weight
        self._compiled = None  # the loss through torch.compile, once compile() was called
        self._beta = None  # β as a tensor for the compiled loss: a new β is not a new graph
        self._kl_plans: dict[str, KLPlan] = {}  # per latent, its KL for the compiled loss

    def compile(self, enabled: bool = True) -> None:
        """Compute the loss, forward and backward, through ``torch.compile``: TorchInductor
        fuses each stretch of elementwise work between the products. The draws stay
        PyTorch's own (inductor's random operations fall back to them: the same stream, the
        same values), so :func:`checked_step` still compares the compiled loss and gradients
        with Pyro's on the same latents. Data-parallel shards (``rows``) stay uncompiled.
        ``enabled=False``: back to the uncompiled loss."""
        self._compiled = torch.compile(self._negative_elbo, dynamic=False) if enabled else None

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def differentiable_loss(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        """Drop-in for a Pyro estimator's ``differentiable_loss(vae.model, vae.guide, x)``."""
        if model != self.vae.model or guide != self.vae.guide:
            raise ValueError("FusedELBO computes the loss of its own vae.model and vae.guide")
        return self.negative_elbo(x)

    def negative_elbo(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """−ELBO summed over the batch ``x``; with ``rows``, over those rows only, the latents
        of every row still drawn as for the whole batch: data-parallel training, where each
        process scores its shard of the batch and all draw what one process would
        (:mod:`pyro_vae.runs.distributed`)."""
        if self._compiled is None or rows is not None:
            return self._negative_elbo(x, rows)
        if self._beta is None or self._beta.device != x.device:
            self._beta = torch.ones((), device=x.device)
        self._beta.fill_(self.kl_weight)
        if self.analytic_kl and len(self._kl_plans) < len(self.vae.prior):
            with fork_rng(x.device), torch.no_grad():  # an eager pass finds each latent's KL
                self._negative_elbo(x)
        from torch._inductor import config as inductor_config  # imported where compiling

        with inductor_config.patch(fallback_random=True):
            return self._compiled(x)

    def _negative_elbo(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        batch = x.shape[:1]

        def mine(t):  # this process's rows (without a slice op when it has them all)
            return t if rows is None else t[rows]

        values: dict[str, torch.Tensor] = {DATA: x}
        guide: dict[str, torch.distributions.Distribution] = {}
        for name, node in self.vae.inference.items():  # the guide's order: same random draws
            q = node(values) if rows is None else self._padded(node, values, rows, batch)
            if q.batch_shape != batch:  # a node without parents: pyro.plate expands it
                q = q.expand(batch)
            values[name] = q.rsample()
            guide[name] = q

        # Pyro's order of summation (model sites in model order, then the guide's), so that the
        # two agree to the last few bits, not just in value.
        model_terms = [
            mine(self._latent_term(node.name, node(values), guide[node.name], values)).sum()
            for node in self.vae.prior
        ]
        scored = values if rows is None else {k: v[rows] for k, v in values.items()}
        model_terms.append(self.vae.likelihood(scored).log_prob(mine(x)).sum())
        elbo = sum(model_terms[1:], model_terms[0])
        if not self.analytic_kl:
            for name, q in guide.items():
                elbo = elbo - mine(self._weighted(q.log_prob(values[name]))).sum()
        return -elbo

    @staticmethod
    def _padded(node, values, rows: slice, batch: torch.Size):
        """q(· | x) of the whole batch with the net run on ``rows`` only: the other rows get the
        family's value at raw parameters 0, which only their (discarded) draws see. A node
        with latent parents runs on the whole batch, whose draws every process has."""
        if node.net is None or tuple(node.given) != (DATA,):
            return node(values)
        raw = node.raw({DATA: values[DATA][rows]})
        before = raw.new_zeros(rows.start, *raw.shape[1:])
        after = raw.new_zeros(batch[0] - rows.stop, *raw.shape[1:])
        return node.family(torch.cat([before, raw, after]))

    def _weighted(self, log_density: torch.Tensor) -> torch.Tensor:
        """A latent's per-datapoint term times β, before summing, as Pyro scales a site."""
        if compiling():  # β read from a tensor: changing it does not recompile
            return log_density * self._beta
        return log_density if self.kl_weight == 1 else log_density * self.kl_weight

    def _latent_term(self, name: str, p, q, values) -> torch.Tensor:
        """This latent's part of the ELBO per datapoint, less log q for the sampled estimator."""
        z = values[name]
        if self.analytic_kl:
            # As TraceMeanField_ELBO: −KL(q‖p) where a closed form is registered, else sampled.
            kl = self._closed_form_kl(name, q, p)
            if kl is None:
                return self._weighted(p.log_prob(z)) - self._weighted(q.log_prob(z))
            if not torch.is_tensor(kl):
                kl = torch.as_tensor(kl)
            return -self._weighted(kl.expand(q.batch_shape))
        return self._weighted(p.log_prob(z))  # log q(z) is subtracted after the model's

    def _closed_form_kl(self, name: str, q, p):
        """KL(q ‖ p) of latent ``name`` in closed form, or None; while compiling, by the
        function an eager call found for it (torch's lookup of a KL cannot be traced)."""
        if not compiling():
            if self._compiled is not None:
                self._kl_plans[name] = KLPlan.of(q, p)
            return closed_form_kl(q, p)
        return self._kl_plans[name](q, p)


@dataclass(frozen=True)
class KLPlan:
    """How to compute KL(q ‖ p) of a pair of distributions inside a compiled graph: the
    registered function of the pair's types, applied under ``levels`` layers of matching
    ``Independent`` wrappers and summed over the ``dims`` dimensions they reinterpret (what
    Pyro's KL of two Independents does, without a second lookup); ``function`` None: no
    closed form."""

    function: object
    levels: int = 0
    dims: int = 0

    @classmethod
    def of(cls, q, p) -> KLPlan:
        levels, dims, base_q, base_p = 0, 0, q, p
        while (
            isinstance(base_q, Independent)
            and isinstance(base_p, Independent)
            and base_q.reinterpreted_batch_ndims == base_p.reinterpreted_batch_ndims
        ):
            levels, dims = levels + 1, dims + base_q.reinterpreted_batch_ndims
            base_q, base_p = base_q.base_dist, base_p.base_dist
        function = _dispatch_kl(type(base_q), type(base_p))
        if function is NotImplemented:  # then only the wrapped pair may have one
            levels, dims, function = 0, 0, _dispatch_kl(type(q), type(p))
        return cls(None if function is NotImplemented else function, levels, dims)

    def __call__(self, q, p):
        if self.function is None:
            return None
        for _ in range(self.levels):
            q, p = q.base_dist, p.base_dist
        return sum_rightmost(self.function(q, p), self.dims)


def fused_elbo(vae: LatentModel, analytic_kl: bool) -> FusedELBO | None:
    """The fused single-particle ELBO of ``vae``, or None where it would not equal Pyro's:
    enumerated latents, or a guide site without ``rsample`` (which would need Pyro's
    score-function terms)."""
    if vae.enumerated or not all(n.family.reparameterized for n in vae.inference.values()):
        return None
    return FusedELBO(vae, analytic_kl=analytic_kl)


def checked_step(vae: LatentModel, elbo, fused: FusedELBO, batch: torch.Tensor):
    """``fused`` if its loss and gradients on ``batch`` equal ``elbo``'s, drawn from the same
    random state (the same latents), else ``elbo``, with a warning that says what differed.

    Runs inside a forked random state, so the check does not shift the caller's stream.
    """
    device = _batch_device(batch)
    with fork_rng(device):
        state = rng_state(device)
        expected = _loss_and_gradients(vae, elbo, batch)
        set_rng_state(device, state)
        got = _fused_loss_and_gradients(vae, fused, batch, state)
    disagreement = _disagreement(expected, got)
    if disagreement is None:
        return fused
    warnings.warn(
        f"the fused training step disagrees with Pyro's {type(elbo).__name__} on one batch "
        f"({disagreement}); training with Pyro's estimator",
        stacklevel=3,
    )
    return elbo


def _fused_loss_and_gradients(vae: LatentModel, fused: FusedELBO, batch, state):
    """The fused step's loss and gradients from the random ``state``; where its compilation
    fails, the uncompiled step's, with a warning."""
    try:
        return _loss_and_gradients(vae, fused, batch)  # non-finite here: a disagreement
    except Exception as error:  # noqa: BLE001 -- any failure to compile falls back
        if not fused.compiled:
            raise
        lines = str(error).strip().splitlines() or [type(error).__name__]
        warnings.warn(
            f"torch.compile failed ({lines[0]}); training with the uncompiled fused step",
            stacklevel=4,
        )
    fused.compile(False)
    set_rng_state(_batch_device(batch), state)
    return _loss_and_gradients(vae, fused, batch)


def _loss_and_gradients(vae: LatentModel, elbo, batch) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and the gradient of every parameter (zeros where it has none; no gradients for
    a non-finite loss, where Pyro's NaN hooks would only warn); leaves ``.grad`` alone."""
    args = batch if isinstance(batch, tuple) else (batch,)  # a sequence model's (x, lengths)
    loss = elbo.differentiable_loss(vae.model, vae.guide, *args)
    if not torch.isfinite(loss):
        return loss.item(), {}
    params = dict(vae.named_parameters())
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return loss.item(), {
        name: torch.zeros_like(p) if g is None else g
        for (name, p), g in zip(params.items(), grads, strict=True)
    }


def _batch_device(batch) -> torch.device:
    """The device of a batch: a tensor, or a tuple of them (a sequence model's)."""
    return (batch[0] if isinstance(batch, tuple) else batch).device


def _disagreement(expected, got) -> str | None:
    """What differs beyond :data:`FUSED_RTOL` between two ``(loss, gradients)``, or None."""
    (loss, grads), (fused_loss, fused_grads) = expected, got
    if not math.isclose(fused_loss, loss, rel_tol=FUSED_RTOL):
        return f"loss {fused_loss} instead of {loss}"
    for name, g in grads.items():
        error = (fused_grads[name] - g).abs().max().item()
        if not error <= FUSED_RTOL * g.abs().max().item():  # also catches NaN
            return f"gradient of {name} off by up to {error:.3g}"
    return None

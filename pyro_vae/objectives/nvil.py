"""Score-function gradients with learned baselines: NVIL (Mnih & Gregor 2014, "Neural Variational
Inference and Learning in Belief Networks").

For a guide site :math:`z_s` drawn without reparameterization, TraceGraph_ELBO's gradient term is
:math:`\\ell_s \\nabla \\log q(z_s \\mid \\cdot)`, with :math:`\\ell_s` the site's learning
signal: the terms of :math:`\\log p(x, z) - \\log q(z \\mid x)` downstream of :math:`z_s`
(Rao-Blackwellized, per datapoint). Its variance falls when a baseline that does not depend on
:math:`z_s` is subtracted,

.. math:: (\\ell_s - b_s(x)) \\nabla \\log q(z_s \\mid \\cdot), \\qquad
          b_s(x) = c_s + f_s(x),

which leaves the expectation unchanged because :math:`\\mathbb E_q[\\nabla \\log q] = 0`.
:math:`c_s` is a running mean of :math:`\\ell_s` (decay 0.9, the input-independent baseline) and
:math:`f` a net of the data (one tanh layer of 100 units, one output per site; NVIL's
input-dependent baseline), trained with the model by minimizing
:math:`\\mathbb E[(\\ell_s - b_s(x))^2]`. ``baseline=mean`` keeps :math:`c_s` alone. NVIL's
variance normalization (dividing the centred signal by a running standard deviation) is left
out: it rescales the gradient, so the estimate would no longer be unbiased for the ELBO's.

The baseline sees x as the model's observed values in the data plate, each datapoint's
flattened and joined, so it works for any Pyro pair; its weights are trained by the run's
optimizer and kept in its checkpoints (:func:`baseline_module`).
"""

from __future__ import annotations

import torch
from pyro.infer.util import MultiFrameTensor
from pyro.ops.provenance import detach_provenance, get_provenance
from torch import nn

from ..errors import PyroVaeError
from ..inference.estimand import sample_sites
from ..inference.layout import inspect_pair, traced_pair
from .trace_graph import TraceGraph_ELBO

#: The baseline settings: the running mean alone, or with NVIL's net of the data.
BASELINES = ("mean", "nn")
HIDDEN = 100
DECAY = 0.9
#: Steps (and Adam's learning rate) that fit a baseline to a pair held fixed, before the
#: estimator is measured there (:meth:`NVIL_ELBO.prepare`).
PREPARE_STEPS, PREPARE_LR = 300, 1e-2


class Baseline(nn.Module):
    """:math:`b_s(x) = c_s + f_s(x)` for the guide sites ``sites``; without a net (``width``
    None) :math:`c_s` alone. ``data_dim`` is where the data plate sits in the pair's tensors."""

    def __init__(self, sites: tuple[str, ...], data_dim: int, width: int | None = None):
        super().__init__()
        self.sites, self.data_dim, self.width = tuple(sites), data_dim, width
        self.net = None
        if width is not None:
            self.net = nn.Sequential(
                nn.Linear(width, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, len(sites))
            )
            nn.init.zeros_(self.net[-1].weight)  # it starts as the running mean alone
            nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("centers", torch.zeros(len(sites)))
        self.register_buffer("started", torch.zeros(len(sites), dtype=torch.bool))

    def forward(self, model_trace) -> torch.Tensor | None:
        """``(N, S)``: :math:`f(x)` of the trace's datapoints (None without a net)."""
        if self.net is None:
            return None
        rows = observed_rows(model_trace, self.data_dim)
        if rows.shape[1] != self.width:
            raise PyroVaeError(
                f"baseline=nn: each datapoint's observed values must keep one size; the baseline "
                f"was built for {self.width} values, this batch has {rows.shape[1]}"
            )
        return self.net(rows.to(self.net[0].weight.dtype))

    @torch.no_grad()
    def follow(self, index: int, signal: torch.Tensor) -> None:
        """Move :math:`c_s` toward the mean of a batch's learning signals (set on the first)."""
        mean = signal.mean()
        old = self.centers[index]
        self.centers[index] = torch.where(
            self.started[index], DECAY * old + (1 - DECAY) * mean, mean
        )
        self.started[index] = True


def observed_rows(model_trace, data_dim: int) -> torch.Tensor:
    """``(N, F)``: each datapoint's observed values, flattened and joined across the observed
    sites in the data plate (``data_dim``); a particle dimension, where the values have one,
    is dropped (they are the same data in every particle)."""
    parts = []
    for site in sample_sites(model_trace):
        value = site["value"]
        at = data_dim - len(site["fn"].event_shape)  # the data plate's dim in the value
        if not site["is_observed"] or value.dim() < -at:
            continue
        rows = value.movedim(at, 0)
        rows = rows[(slice(None),) + (0,) * (value.dim() + at)]  # dims left of the data dim
        parts.append(rows.reshape(rows.shape[0], -1).float())
    if not parts:
        raise PyroVaeError("baseline=nn: the model observes nothing in its data plate")
    return torch.cat(parts, 1)


def scored_sites(guide_trace) -> tuple[str, ...]:
    """The guide's sample sites drawn without reparameterization: those with a score term."""
    return tuple(
        s["name"]
        for s in sample_sites(guide_trace)
        if not s["is_observed"] and not getattr(s["fn"], "has_rsample", False)
    )


def baseline_module(kind: str, model, guide, args, kwargs=None) -> Baseline:
    """The baseline of ``model``/``guide`` (``kind`` one of :data:`BASELINES`), sized by one run
    of the pair on ``args``; its net's weights come from the torch stream, left as it was.

    :raises PyroVaeError: where the guide draws every latent by reparameterization.
    """
    layout = inspect_pair(model, guide, args, kwargs)
    guide_trace, model_trace = traced_pair(model, guide, args, kwargs)
    sites = scored_sites(guide_trace)
    if not sites:
        raise PyroVaeError(
            "trace_graph: baseline: the guide draws every latent by reparameterization, so "
            "there is no score-function term to subtract a baseline from; leave it out"
        )
    width = observed_rows(model_trace, layout.data_dim).shape[1] if kind == "nn" else None
    with torch.random.fork_rng():
        return Baseline(sites, layout.data_dim, width)


class NVIL_ELBO(TraceGraph_ELBO):
    """TraceGraph_ELBO with a learned baseline for each score-function term: its value is the
    ELBO's, its gradient NVIL's, plus the gradient of the baseline's squared error for the
    baseline's own weights.

    :param baseline: from :func:`baseline_module`; None: built from the first batch (its net
        then trains only where its parameters reach an optimizer, as in :func:`~pyro_vae.train`).
    """

    def __init__(self, baseline: Baseline | None = None, kind: str = "nn", **kwargs):
        super().__init__(**kwargs)
        self.baseline, self.kind = baseline, kind

    def _built(self, model, guide, args, kwargs) -> Baseline:
        """The baseline, built from this call's arguments where none was given."""
        if self.baseline is None:
            self.baseline = baseline_module(self.kind, model, guide, args, kwargs)
        return self.baseline

    def _loss_and_surrogate_loss(self, model, guide, args, kwargs):
        self._built(model, guide, args, kwargs)
        return super()._loss_and_surrogate_loss(model, guide, args, kwargs)

    def prepare(self, model, guide, *args, **kwargs) -> None:
        """Fit the baseline to the pair as it is now (its own Adam, :data:`PREPARE_STEPS`
        steps), then hold it: :func:`~pyro_vae.compare_estimators` measures the estimator with
        the baseline it would have converged to, not a fresh one. Draws from the torch stream.
        """
        weights = list(self._built(model, guide, args, kwargs).parameters())
        optimizer = torch.optim.Adam(weights, lr=PREPARE_LR) if weights else None
        self.baseline.train()
        for _ in range(PREPARE_STEPS):
            with torch.set_grad_enabled(optimizer is not None):
                loss = self.differentiable_loss(model, guide, *args, **kwargs)
            if optimizer is not None:
                optimizer.zero_grad()
                for weight, grad in zip(weights, torch.autograd.grad(loss, weights), strict=True):
                    weight.grad = grad
                optimizer.step()
        self.baseline.eval()

    def _loss_and_surrogate_loss_particle(self, model_trace, guide_trace):
        signals = learning_signals(model_trace, guide_trace, self.baseline.sites)
        elbo, surrogate_loss = super()._loss_and_surrogate_loss_particle(model_trace, guide_trace)
        learned = self.baseline(model_trace)
        for index, name in enumerate(self.baseline.sites):
            if name not in signals:  # a site this run of the guide did not draw
                continue
            signal = signals[name]
            value = self.baseline.centers[index].clone()  # the update below is in place
            if learned is not None:
                value = value + _placed(learned[:, index], signal, self.baseline.data_dim)
            value = torch.broadcast_to(value, signal.shape)
            score = detach_provenance(guide_trace.nodes[name]["score_parts"].score_function)
            # Pyro's surrogate has ℓ_s ∇ log q; this subtracts b_s ∇ log q and adds b's error.
            surrogate_loss = surrogate_loss + (score * value.detach()).sum()
            surrogate_loss = surrogate_loss + (signal.detach() - value).pow(2).sum()
            if self.baseline.training:  # held (eval) while an estimator is being measured
                self.baseline.follow(index, signal.detach())
        return elbo, surrogate_loss


def learning_signals(model_trace, guide_trace, sites: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Each site's learning signal :math:`\\ell_s`: the log-density terms of both traces whose
    provenance includes it (downstream of it), summed to its plates."""
    costs = {name: MultiFrameTensor() for name in sites}
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in sample_sites(trace):
            for name in get_provenance(site["log_prob_sum"]) & costs.keys():
                costs[name].add((site["cond_indep_stack"], sign * site["log_prob"]))
    return {
        name: detach_provenance(
            torch.as_tensor(cost.sum_to(guide_trace.nodes[name]["cond_indep_stack"]))
        )
        for name, cost in costs.items()
        if name in guide_trace.nodes
    }


def _placed(per_datapoint: torch.Tensor, signal: torch.Tensor, data_dim: int) -> torch.Tensor:
    """``per_datapoint`` (N,) along ``signal``'s data dim, to broadcast against it; 0 where the
    signal has no such dim (a site outside the data plate keeps the running mean alone)."""
    if signal.dim() < -data_dim or signal.shape[data_dim] != per_datapoint.shape[0]:
        return per_datapoint.new_zeros(())
    return per_datapoint.reshape((-1,) + (1,) * (-data_dim - 1))

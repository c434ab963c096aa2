"""Reweighted wake-sleep (pyro_vae.objectives.rws) on the two-bit pair, against exact
enumeration: wake-θ is unbiased for the K-sample bound's gradient in the model's parameters;
wake-φ is unbiased for its own expectation (the self-normalized update), which differs from
the bound's gradient in the guide's parameters; no gradient flows through the draws."""

import math

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.inference.importance import log_weight_terms
from pyro_vae.inference.layout import inspect_pair
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.objectives.rws import ReweightedWakeSleep
from tests.objectives.two_bit_pair import (
    X,
    exact_bound,
    flat_gradient,
    gradient_draws,
    guide,
    joint_draws,
    model,
    params,
)

K = 3
MODEL_PARAMS = slice(0, 4)  # w and prior_logits, two entries each; then a and b


def exact_wake_phi(x: torch.Tensor, k: int) -> torch.Tensor:
    """E over k codes per datapoint of Σ_k w̃_k log q(z_k), its weights held fixed: the
    expectation of wake-φ's surrogate, whose gradient in φ the update estimates."""
    log_q, lw = joint_draws(x, k)
    probability = log_q.sum(-1).exp().detach()
    normalized = torch.softmax(lw.detach(), -1)
    return (probability * (normalized * log_q).sum(-1)).sum()


def test_wake_theta_and_wake_phi_are_unbiased_for_what_they_estimate():
    params()
    bound_gradient = flat_gradient(exact_bound(X, K))
    phi_gradient = flat_gradient(exact_wake_phi(X, K))
    rws = ReweightedWakeSleep(num_particles=K)
    pyro.set_rng_seed(0)
    draws = gradient_draws(lambda: rws.differentiable_loss(model, guide, X), 2000)
    mean, stderr = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    theta = MODEL_PARAMS
    assert ((mean[theta] - bound_gradient[theta]).abs() < 4 * stderr[theta]).all()
    phi = slice(4, None)
    assert ((mean[phi] - phi_gradient[phi]).abs() < 4 * stderr[phi]).all()
    # wake-φ is not the bound's gradient in φ: the check above tells the two apart
    assert ((mean[phi] - bound_gradient[phi]).abs() > 6 * stderr[phi]).any()


def test_its_value_is_the_k_sample_bound():
    params()
    rws = ReweightedWakeSleep(num_particles=K)
    pyro.set_rng_seed(1)
    values = torch.tensor([-rws.loss(model, guide, X) for _ in range(2000)])
    exact = exact_bound(X, K).item()
    assert abs(values.mean().item() - exact) < 4 * values.std().item() / math.sqrt(len(values))


def test_no_gradient_flows_through_reparameterized_draws(ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    layout = inspect_pair(vae.model, vae.guide, (x,), {})
    guide_params = list(vae.inference.parameters())
    for fixed in (False, True):
        terms = log_weight_terms(
            vae.model, vae.guide, (x,), {}, num_samples=4, layout=layout, fixed_draws=fixed
        )
        log_p = sum(t.value for t in terms if not t.in_guide).sum()
        reached = torch.autograd.grad(log_p, guide_params, allow_unused=True)
        # drawn by reparameterization, z carries the guide's gradient into log p; fixed, not
        assert all(g is None for g in reached) == fixed
    with pytest.raises(pv.PyroVaeError, match="'rws': k must be >= 2"):
        ObjectiveChoice.parse("rws:k=1")


def test_rws_trains_a_categorical_guide():
    vae = pv.load("mixture_1d", "mixture_1d", data_shape=(1,), seed=0)
    result = pv.train(vae, "mixture-1d", objective="rws:k=5", epochs=3, progress=False)
    elbos = [r["train_elbo"] for r in result.history]
    assert all(math.isfinite(e) for e in elbos) and elbos[-1] > elbos[0]

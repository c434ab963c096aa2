"""Sticking the landing (pyro_vae.objectives.stl): the ELBO's value, a gradient with the same
expectation as the reparameterized one, and no variance at all where the guide is the exact
posterior (probabilistic PCA, whose posterior is known)."""

import math

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.objectives.registry import ObjectiveChoice


def _guide_gradients(vae, elbo, x, draws: int) -> torch.Tensor:
    """``(draws, P)``: the gradient of the loss for every guide parameter, one row per draw."""
    params = list(vae.inference.parameters())
    rows = []
    for _ in range(draws):
        loss = elbo.differentiable_loss(vae.model, vae.guide, x)
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


def test_at_the_exact_posterior_the_stl_gradient_is_zero(ppca_exact):
    vae, x, _, _ = ppca_exact
    pyro.set_rng_seed(0)
    stl = _guide_gradients(vae, ObjectiveChoice("stl").build(vae), x, 5)
    trace = _guide_gradients(vae, ObjectiveChoice("trace").build(vae), x, 5)
    assert stl.abs().max() < 1e-3 * trace.abs().max()
    assert trace.abs().max() > 1.0  # the reparameterized gradient is noisy there


def test_the_stl_gradient_has_the_reparameterized_gradients_mean(ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    pyro.set_rng_seed(1)
    stl = _guide_gradients(vae, ObjectiveChoice("stl").build(vae), x[:4], 1500)
    trace = _guide_gradients(vae, ObjectiveChoice("trace").build(vae), x[:4], 1500)
    difference = stl.mean(0) - trace.mean(0)
    stderr = ((stl.var(0) + trace.var(0)) / len(stl)).sqrt()
    assert (difference.abs() < 4 * stderr + 1e-6).all()
    assert stl.var(0).sum() < trace.var(0).sum()  # and, near the posterior, less noise


def test_its_value_is_the_elbo_averaged_over_k_draws(ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    pyro.set_rng_seed(2)
    stl = ObjectiveChoice.parse("stl:k=4").build(vae)
    values = torch.tensor([-stl.loss(vae.model, vae.guide, x) for _ in range(200)])
    trace = ObjectiveChoice("trace_mean_field").build(vae)
    reference = torch.tensor([-trace.loss(vae.model, vae.guide, x) for _ in range(200)])
    spread = math.sqrt(values.var() / 200 + reference.var() / 200)
    assert abs(values.mean().item() - reference.mean().item()) < 4 * spread


def test_stl_refuses_a_guide_whose_sites_see_other_latents():
    vae = pv.load("hierarchical_vae", data_shape=(64,), seed=0)
    with pytest.raises(pv.SpecError, match="'stl' supports guides conditioned on x only"):
        ObjectiveChoice("stl").build(vae)

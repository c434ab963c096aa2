"""VIMCO (pyro_vae.objectives.vimco): its gradient is unbiased for the K-sample bound, checked
against the bound's exact gradient by enumeration on a small discrete pair written by hand
(its own site and plate names); the estimator without its score term is visibly biased there,
so the check can fail; and it trains a spec-built model with a categorical guide."""

import math

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.objectives.vimco import VIMCO, leave_one_out_bounds
from tests.objectives.two_bit_pair import (
    X,
    exact_bound,
    flat_gradient,
    gradient_draws,
    guide,
    model,
    params,
)

K = 3


def test_the_vimco_gradient_is_unbiased_for_the_k_sample_bound():
    params()
    exact = flat_gradient(exact_bound(X, K))
    vimco = VIMCO(num_particles=K)
    pyro.set_rng_seed(0)
    draws = gradient_draws(lambda: vimco.differentiable_loss(model, guide, X), 2000)
    mean, stderr = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    assert ((mean - exact).abs() < 4 * stderr).all(), (mean, exact, stderr)
    # The same draws without the score term (the bound's direct gradient only) are biased for
    # the guide's parameters: the check above has the power to see a missing term.
    pyro.set_rng_seed(0)

    def bound_only():
        lw, _ = vimco._weights(model, guide, (X,), {})
        return -(torch.logsumexp(lw, 0) - math.log(K)).sum()

    biased = gradient_draws(bound_only, 2000)
    b_mean, b_stderr = biased.mean(0), biased.std(0) / math.sqrt(len(biased))
    assert ((b_mean - exact).abs() > 6 * b_stderr).any()


def test_its_value_is_the_k_sample_bound():
    params()
    vimco = VIMCO(num_particles=K)
    pyro.set_rng_seed(1)
    values = torch.tensor([-vimco.loss(model, guide, X) for _ in range(2000)])
    exact = exact_bound(X, K).item()
    assert abs(values.mean().item() - exact) < 4 * values.std().item() / math.sqrt(len(values))


def test_leave_one_out_bounds_replace_each_weight_by_the_geometric_mean_of_the_others():
    lw = torch.tensor([[0.5], [-1.0], [2.0]])
    got = leave_one_out_bounds(lw)[:, 0]
    for k in range(3):
        others = [lw[j, 0] for j in range(3) if j != k]
        replaced = torch.stack([*others, torch.stack(others).mean()])
        assert got[k].item() == pytest.approx(
            (torch.logsumexp(replaced, 0) - math.log(3)).item(), abs=1e-6
        )


def test_vimco_needs_two_samples_and_trains_a_categorical_guide():
    with pytest.raises(pv.PyroVaeError, match="'vimco': k must be >= 2, got 1"):
        ObjectiveChoice.parse("vimco")
    vae = pv.load("mixture_1d", "mixture_1d", data_shape=(1,), seed=0)
    result = pv.train(
        vae, "mixture-1d", objective="vimco:k=5", epochs=3, batch_size=100, progress=False
    )
    elbos = [r["train_elbo"] for r in result.history]
    assert all(math.isfinite(e) for e in elbos) and result.final["step"] == "pyro"
    assert elbos[-1] > elbos[0]  # the bound rises from the initial weights

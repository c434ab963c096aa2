"""The thermodynamic variational objective (pyro_vae.objectives.tvo): with one partition its
value is the ELBO; with more it lies between the ELBO and log p(x) (probabilistic PCA, where
both are known); its gradient estimate has, draw for draw, the expectation its formula gives
(enumerated exactly on the two-bit pair)."""

import math

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.objectives.tvo import TVO
from tests.objectives.two_bit_pair import (
    X,
    flat_gradient,
    gradient_draws,
    guide,
    joint_draws,
    model,
    params,
)


def _values(elbo, vae, x, draws: int) -> torch.Tensor:
    return torch.tensor([-elbo.loss(vae.model, vae.guide, x) for _ in range(draws)])


@pytest.mark.parametrize("k", [1, 5])
def test_with_one_partition_the_tvo_is_the_elbo(ppca_perturbed, k):
    vae, x, log_px, kl = ppca_perturbed
    exact_elbo = (log_px - kl).sum().item()
    pyro.set_rng_seed(k)
    values = _values(ObjectiveChoice.parse(f"tvo:k={k},partitions=1").build(vae), vae, x, 400)
    assert abs(values.mean().item() - exact_elbo) < 4 * values.std().item() / math.sqrt(400)


def test_more_partitions_lie_between_the_elbo_and_log_p_x(ppca_perturbed):
    vae, x, log_px, kl = ppca_perturbed
    pyro.set_rng_seed(3)
    values = _values(ObjectiveChoice.parse("tvo:k=200,partitions=20").build(vae), vae, x, 100)
    mean, stderr = values.mean().item(), values.std().item() / math.sqrt(100)
    assert mean > (log_px - kl).sum().item() + 4 * stderr  # above the ELBO
    assert mean < log_px.sum().item() + 4 * stderr  # a lower bound on log p(x)


def exact_expected_gradient(tvo: TVO, k: int) -> torch.Tensor:
    """E over k codes per datapoint of the estimator's gradient, every joint value of the k
    codes enumerated, each weighted by its probability under q."""
    log_q, lw = joint_draws(X, k)  # (N, C, k)
    probability = log_q.sum(-1).exp().detach()
    total = lw.new_zeros(())
    for n in range(lw.shape[0]):
        for c in range(lw.shape[1]):
            _, surrogate = tvo._bound_and_surrogate(lw[n, c, :, None], log_q[n, c, :, None])
            total = total + probability[n, c] * surrogate
    return flat_gradient(total)


def test_the_gradient_estimate_has_the_expectation_of_its_formula():
    params()
    tvo = TVO(num_particles=3, partitions=4)
    expected = exact_expected_gradient(tvo, 3)
    pyro.set_rng_seed(0)
    draws = gradient_draws(lambda: tvo.differentiable_loss(model, guide, X), 2000)
    mean, stderr = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    assert ((mean - expected).abs() < 4 * stderr + 1e-6).all(), (mean, expected, stderr)
    assert expected[4:].abs().max() > 0.01  # the guide gets a gradient (the covariance term)


def test_tvo_trains_a_categorical_guide_and_refuses_bad_partitions():
    vae = pv.load("mixture_1d", "mixture_1d", data_shape=(1,), seed=0)
    result = pv.train(vae, "mixture-1d", objective="tvo:k=5,partitions=5", epochs=3,
                      progress=False)  # fmt: skip
    elbos = [r["train_elbo"] for r in result.history]
    assert all(math.isfinite(e) for e in elbos) and elbos[-1] > elbos[0]
    for text, message in (("partitions=0", "from 1 to 1000"), ("partitions=2.5", "whole")):
        with pytest.raises(pv.PyroVaeError, match=f"option partitions: must be .*{message}"):
            ObjectiveChoice.parse(f"tvo:{text}")

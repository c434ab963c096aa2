"""Training recovers known generating parameters (slow: each trains a model for ~30-60 s).

Tolerances come from the sample size: four standard errors of the maximum-likelihood
estimate from n datapoints, which training should reach.
"""

import pytest
import torch
import torch.nn.functional as F

import pyro_vae as pv
from pyro_vae.model.families import MIN_SCALE

pytestmark = pytest.mark.slow


def test_linear_gaussian_recovers_the_covariance():
    data = pv.load_dataset("linear-gaussian")
    vae = pv.load("linear_gaussian", data_shape=tuple(data.event_shape), seed=0)
    pv.train(
        vae, "linear-gaussian", epochs=150, batch_size=100, lr=3e-2, lr_decay=0.97, progress=False
    )
    linear = vae.likelihood.net.layers[0]
    W = linear.weight.detach().double()
    sigma2 = vae.likelihood.family.log_scale.exp().detach().double() ** 2
    learned = W @ W.T + sigma2 * torch.eye(len(W), dtype=torch.float64)

    truth = data.truth["covariance"].double()
    n = len(data.train)
    # Standard error of a sample covariance entry: sqrt((Σ_ii Σ_jj + Σ_ij²) / n).
    stderr = ((truth.diag()[:, None] * truth.diag()[None, :] + truth**2) / n).sqrt()
    assert ((learned - truth).abs() < 4 * stderr).all(), (learned - truth) / stderr
    mean_stderr = (truth.diag() / n).sqrt()
    assert ((linear.bias.detach().double() - data.truth["b"]).abs() < 4 * mean_stderr).all()


def test_mixture_recovers_the_components():
    data = pv.load_dataset("mixture-1d")
    # Summing the component out (TraceEnum_ELBO) makes the objective log p(x) itself, so this
    # is maximum likelihood by gradient ascent. Like EM it has local optima (with seed=3 two
    # components merge); the seed is fixed, the tolerances are not tuned to it.
    vae = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    pv.train(
        vae,
        "mixture-1d",
        objective="trace_enum",
        epochs=60,
        batch_size=100,
        lr=5e-2,
        lr_decay=0.95,
        progress=False,
    )
    rows = vae.likelihood.net.rows.detach()
    means, scales = rows[:, 0], F.softplus(rows[:, 1]) + MIN_SCALE
    weights = vae.generative["c"].family.logits.softmax(-1).detach()
    order = means.argsort()  # components are identifiable only up to relabelling

    truth, n = data.truth, len(data.train)
    mean_stderr = truth["scales"] / (n * truth["weights"]).sqrt()
    weight_stderr = (truth["weights"] * (1 - truth["weights"]) / n).sqrt()
    scale_stderr = truth["scales"] / (2 * n * truth["weights"]).sqrt()
    assert ((means[order] - truth["means"]).abs() < 4 * mean_stderr).all(), means[order]
    assert ((weights[order] - truth["weights"]).abs() < 4 * weight_stderr).all(), weights[order]
    assert ((scales[order] - truth["scales"]).abs() < 4 * scale_stderr).all(), scales[order]

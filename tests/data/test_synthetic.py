"""Synthetic sets match their generating truth."""

from __future__ import annotations

import torch

from pyro_vae.data import load_dataset


def test_mixture_1d_matches_its_truth():
    data = load_dataset("mixture-1d", seed=4)
    assert data.train.shape == (2000, 1) and data.test.shape == (1000, 1)
    assert data.image_shape is None and data.source == "synthetic"
    truth = data.truth
    assert all(truth[key].dtype == torch.float32 for key in ("weights", "means", "scales"))
    assert torch.equal(truth["means"], truth["means"].sort().values)
    weights, means, scales = (truth[key].double() for key in ("weights", "means", "scales"))
    mean = (weights * means).sum()
    variance = (weights * (scales**2 + means**2)).sum() - mean**2
    # Exact fourth central moment of the mixture, for the standard error of the sample variance.
    offset = means - mean
    fourth = (weights * (offset**4 + 6 * offset**2 * scales**2 + 3 * scales**4)).sum()
    x = data.train.double().squeeze(-1)
    n = len(x)
    assert abs(x.mean() - mean) < 4 * (variance / n).sqrt()
    assert abs(x.var() - variance) < 4 * ((fourth - variance**2) / n).sqrt()
    assert torch.equal(load_dataset("mixture-1d", seed=4).train, data.train)
    assert not torch.equal(load_dataset("mixture-1d", seed=5).train, data.train)


def test_linear_gaussian_covariance_matches_truth():
    data = load_dataset("linear-gaussian", seed=2)
    truth = data.truth
    assert data.train.shape == (5000, 5) and data.test.shape == (1000, 5)
    assert truth["W"].shape == (5, 2) and truth["b"].shape == (5,) and truth["sigma"].ndim == 0
    covariance = truth["covariance"].double()
    expected = truth["W"].double() @ truth["W"].double().T + 0.25 * torch.eye(
        5, dtype=torch.float64
    )
    assert torch.allclose(covariance, expected, atol=1e-5)
    x = data.train.double()
    n = len(x)
    variances = covariance.diag()
    # Standard error of a Gaussian sample covariance entry: sqrt((S_ii S_jj + S_ij^2) / n).
    standard_error = ((variances[:, None] * variances[None, :] + covariance**2) / n).sqrt()
    assert ((x.T.cov() - covariance).abs() < 4 * standard_error).all()
    assert ((x.mean(0) - truth["b"].double()).abs() < 4 * (variances / n).sqrt()).all()
    small = load_dataset("linear-gaussian", dim=3, latent_dim=1, sigma=0.1, n_train=10)
    assert small.train.shape == (10, 3) and small.truth["W"].shape == (3, 1)

"""``lgssm``: sequences of a linear-Gaussian state-space model match their fixed truth, padded
past their lengths; its Kalman log-likelihood equals the joint Gaussian's, built by unrolling."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

import pyro_vae as pv
from pyro_vae.data import load_dataset
from pyro_vae.data.lgssm import (
    MAX_STEPS,
    PARAMETERS,
    kalman_log_likelihood,
    kalman_log_likelihood_of,
    lgssm_parameters,
)
from tests.helpers import one_line_error


def test_lgssm_shapes_truth_and_seeds():
    data = load_dataset("lgssm", seed=3)
    assert data.train.shape == (2000, 20, 4) and data.test.shape == (500, 20, 4)
    assert data.is_sequence and data.step_shape == (4,) and data.event_shape == (20, 4)
    assert data.image_shape is None and data.source == "synthetic"
    train_lengths, test_lengths = data.columns["lengths"]
    assert train_lengths.dtype == torch.int64 and (train_lengths == 20).all()
    assert test_lengths.shape == (500,) and (test_lengths == 20).all()
    assert sorted(data.truth) == sorted(PARAMETERS)
    assert all(value.dtype == torch.float32 for value in data.truth.values())
    truth = data.truth
    assert truth["A"].shape == (2, 2) and truth["C"].shape == (4, 2)
    assert truth["q"].shape == (2,) and truth["r"].shape == (4,) and truth["d"].shape == (4,)
    radius = torch.linalg.eigvals(truth["A"].double()).abs()
    assert torch.allclose(radius, torch.full((2,), 0.9, dtype=torch.float64))
    assert torch.linalg.cond(truth["C"].double()) < 1.5 and truth["b"].abs().min() > 0
    other = load_dataset("lgssm", seed=4)
    assert all(torch.equal(other.truth[k], truth[k]) for k in PARAMETERS)  # seed: draws only
    assert not torch.equal(other.train, data.train)
    assert torch.equal(load_dataset("lgssm", seed=3).test, data.test)


@pytest.mark.parametrize("latent_dim, dim", [(1, 3), (3, 2), (5, 5)])
def test_lgssm_parameters_of_any_size_are_stable_and_well_conditioned(latent_dim, dim):
    truth = lgssm_parameters(latent_dim, dim)
    radius = torch.linalg.eigvals(truth["A"].double()).abs()
    assert torch.allclose(radius, torch.full((latent_dim,), 0.9, dtype=torch.float64))
    assert truth["C"].shape == (dim, latent_dim)
    assert torch.linalg.matrix_rank(truth["C"]) == min(dim, latent_dim)
    assert torch.linalg.cond(truth["C"].double()) < 1.5


def test_lgssm_first_steps_have_the_true_moments():
    data = load_dataset("lgssm", seed=0, n_train=4000)
    t = data.truth
    x1, x2 = data.train[:, 0].double(), data.train[:, 1].double()
    A, b, C, d = (t[k].double() for k in "AbCd")
    state1 = torch.diag(t["q"].double() ** 2)
    noise = torch.diag(t["r"].double() ** 2)
    n = len(x1)
    for x, mean, state in (
        (x1, C @ b + d, state1),  # z_1 ~ N(b, Q)
        (x2, C @ (A @ b + b) + d, A @ state1 @ A.T + state1),
    ):
        covariance = C @ state @ C.T + noise
        variances = covariance.diag()
        assert ((x.mean(0) - mean).abs() < 4 * (variances / n).sqrt()).all()
        error = ((variances[:, None] * variances[None, :] + covariance**2) / n).sqrt()
        assert ((x.T.cov() - covariance).abs() < 4 * error).all()


def test_lgssm_min_steps_draws_lengths_and_pads_with_zeros():
    data = load_dataset("lgssm", seed=1, n_train=500, n_test=50, steps=8, min_steps=3, dim=2)
    lengths = data.columns["lengths"][0]
    assert int(lengths.min()) == 3 and int(lengths.max()) == 8
    assert len(lengths.unique()) == 6  # every length from 3 to 8 drawn
    inside = torch.arange(8) < lengths[:, None]
    assert (data.train[~inside] == 0).all() and (data.train[inside] != 0).all()
    assert data.columns["lengths"][1].shape == (50,)
    assert load_dataset("lgssm", steps=8, min_steps=8, n_train=5).columns["lengths"][0].eq(8).all()


@pytest.mark.parametrize(
    "options, words",
    [
        ({"min_steps": 0}, "option 'min_steps' must be a whole number from 1 to steps (20)"),
        ({"min_steps": 21}, "got 21"),
        ({"min_steps": 2.5}, "option 'min_steps'"),
        ({"min_steps": True}, "option 'min_steps'"),
        ({"steps": 0}, "option 'steps' must be a positive integer"),
        ({"steps": MAX_STEPS + 1}, "option 'steps' must be at most 100,000"),
        ({"latent_dim": "2"}, "option 'latent_dim' must be a positive integer"),
        ({"n_train": 10**7, "steps": 100}, "ask for"),
    ],
)
def test_bad_lgssm_options_are_named(options, words):
    one_line_error(pv.DataError, lambda: load_dataset("lgssm", **options), "'lgssm'", words)


# -- the Kalman filter -------------------------------------------------------------------------


def _random_parameters(latent_dim: int, dim: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "A": torch.randn(latent_dim, latent_dim, generator=g, dtype=torch.float64) * 0.7,
        "b": torch.randn(latent_dim, generator=g, dtype=torch.float64),
        "q": torch.rand(latent_dim, generator=g, dtype=torch.float64) + 0.3,
        "C": torch.randn(dim, latent_dim, generator=g, dtype=torch.float64),
        "d": torch.randn(dim, generator=g, dtype=torch.float64),
        "r": torch.rand(dim, generator=g, dtype=torch.float64) + 0.2,
    }


def _joint(p: dict, steps: int) -> MultivariateNormal:
    """The Gaussian of ``x_1 .. x_steps`` stacked, by unrolling ``z_t = sum_s A^(t-s)(b + e_s)``."""
    A, b, C, d = p["A"], p["b"], p["C"], p["d"]
    latent_dim, dim = A.shape[0], C.shape[0]
    power = [torch.linalg.matrix_power(A, k) for k in range(steps)]
    state = torch.diag(p["q"] ** 2)
    means, blocks = [], torch.zeros(steps * dim, steps * dim, dtype=torch.float64)
    for t in range(steps):
        means.append(C @ sum(power[t - s] @ b for s in range(t + 1)) + d)
        for u in range(steps):
            cross = sum(power[t - s] @ state @ power[u - s].T for s in range(min(t, u) + 1))
            block = C @ cross @ C.T + (torch.diag(p["r"] ** 2) if t == u else 0)
            blocks[t * dim : (t + 1) * dim, u * dim : (u + 1) * dim] = block
    assert latent_dim == b.shape[0]
    return MultivariateNormal(torch.cat(means), covariance_matrix=blocks)


def test_kalman_log_likelihood_equals_the_unrolled_joint_gaussian():
    p = _random_parameters(latent_dim=2, dim=3, seed=0)
    steps, n = 3, 6
    x = torch.randn(n, steps, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = kalman_log_likelihood(x, torch.full((n,), steps), *(p[k] for k in PARAMETERS))
    expected = _joint(p, steps).log_prob(x.reshape(n, -1))
    assert result.total.dtype == torch.float64 and result.per_step.shape == (n, steps)
    assert torch.allclose(result.total, expected, rtol=0, atol=1e-8)
    assert torch.allclose(result.per_step.sum(-1), result.total, rtol=0, atol=1e-12)
    # The first step alone is x_1's marginal; lengths None means all steps.
    first = _joint(p, 1).log_prob(x[:, 0])
    assert torch.allclose(result.per_step[:, 0], first, rtol=0, atol=1e-8)
    unmasked = kalman_log_likelihood(x, None, *(p[k] for k in PARAMETERS))
    assert torch.equal(unmasked.total, result.total)


def test_kalman_log_likelihood_masks_steps_past_each_length():
    p = _random_parameters(latent_dim=2, dim=2, seed=2)
    x = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lengths = torch.tensor([2, 3, 1, 2])
    result = kalman_log_likelihood(x, lengths, *(p[k] for k in PARAMETERS))
    for n, length in enumerate(lengths.tolist()):
        joint = _joint(p, length).log_prob(x[n, :length].reshape(-1))
        assert abs(float(result.total[n]) - float(joint)) < 1e-8, n
        assert (result.per_step[n, length:] == 0).all()
    # What lies past a length is never read.
    changed = x.clone()
    changed[0, 2] = 1e6
    again = kalman_log_likelihood(changed, lengths, *(p[k] for k in PARAMETERS))
    assert torch.equal(again.total, result.total)
    # Float32 inputs are computed in float64.
    single = kalman_log_likelihood(x.float(), lengths, *(p[k].float() for k in PARAMETERS))
    assert single.total.dtype == torch.float64
    assert torch.allclose(single.total, result.total, atol=1e-4)


def test_kalman_log_likelihood_refuses_shapes_that_do_not_fit():
    p = _random_parameters(latent_dim=2, dim=3, seed=0)
    x = torch.zeros(2, 4, 3)
    args = [p[k] for k in PARAMETERS]
    with pytest.raises(ValueError, match=r"C has shape \(3, 2\), expected \(2, 2\)"):
        kalman_log_likelihood(x[..., :2], None, *args)
    with pytest.raises(ValueError, match=r"x must be \(N, T, D\)"):
        kalman_log_likelihood(x[0], None, *args)
    with pytest.raises(ValueError, match=r"lengths must be in \[1, 4\]"):
        kalman_log_likelihood(x, torch.tensor([0, 4]), *args)
    with pytest.raises(ValueError, match="lengths must be 2 integers"):
        kalman_log_likelihood(x, torch.tensor([2.0, 4.0]), *args)


def test_kalman_log_likelihood_of_an_lgssm_set():
    data = load_dataset("lgssm", seed=5, n_train=2000, n_test=10, steps=10, min_steps=4)
    truth = kalman_log_likelihood_of(data, "train")
    lengths = data.columns["lengths"][0]
    assert (
        truth.total.shape == (2000,)
        and (truth.per_step[~(torch.arange(10) < lengths[:, None])] == 0).all()
    )
    # Each step's log-density is -||w||²/2 + a constant, w the whitened innovation: under the
    # true parameters w ~ N(0, I_D), so the variance across sequences is D / 2 = 2.
    first = truth.per_step[:, 0]
    assert abs(float(first.var()) - 2.0) < 0.3
    # The truth explains its own data better than a perturbed model does.
    wrong = dict(data.truth, A=data.truth["A"].T)
    perturbed = kalman_log_likelihood(data.train, lengths, *(wrong[k] for k in PARAMETERS))
    assert float(truth.total.mean()) > float(perturbed.total.mean()) + 1.0
    assert kalman_log_likelihood_of(data, "test").total.shape == (10,)
    with pytest.raises(pv.DataError, match="'mixture-1d' has no true state-space parameters"):
        kalman_log_likelihood_of(load_dataset("mixture-1d", n_train=5, n_test=5), "test")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        kalman_log_likelihood_of(data, "valid")
    assert math.isfinite(float(truth.total.sum()))

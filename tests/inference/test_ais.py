"""Annealed importance sampling and BDMC against closed forms on linear-Gaussian models and a
hand-written pair."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from tests.helpers import exact_log_px, shift_encoder


def test_ais_recovers_log_px_where_importance_sampling_with_a_poor_guide_cannot(correlated_ppca):
    vae, x, _ = correlated_ppca("linear_gaussian")
    x = x[:20]
    shift_encoder(vae, 2.0)
    exact = exact_log_px(vae, x)
    pyro.set_rng_seed(0)
    ais = pv.log_likelihood(vae.model, vae.guide, x, num_samples=16, method="ais", num_steps=200)
    is_ = pv.log_likelihood(vae.model, vae.guide, x, num_samples=16)
    ais_error, is_error = (ais.log_px - exact).mean().item(), (is_.log_px - exact).mean().item()
    assert abs(ais_error) < 4 * ais.mean_stderr + 0.02
    assert is_error < -1.0 and abs(is_error) > 20 * abs(ais_error)  # IS: nats below, AIS: not
    assert ais.method == "ais" and ais.details["num_steps"] == 200
    assert 0.3 < ais.details["acceptance"].mean() < 1.0  # the step size adapted to the target
    assert ais.ess.shape == (20,) and ais.khat.shape == (20,)


def test_ais_works_on_a_hand_written_pair_and_refuses_a_pair_without_continuous_latents():
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("latent", dist.Normal(0.0, 1.0))
            pyro.sample("obs", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("latent", dist.Normal(0.3 * x, 0.5))

    x = torch.linspace(-3, 3, 9)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).double()
    pyro.set_rng_seed(0)
    ais = pv.log_likelihood(model, guide, x, num_samples=32, method="ais", num_steps=100)
    assert ((ais.log_px - exact).abs() < 4 * ais.stderr + 0.01).all()
    mixture = pv.load("mixture_1d", data_shape=(1,), seed=0)
    # Only a discrete latent: nothing for AIS to move (importance sampling sums it out).
    with pytest.raises(pv.ModelGuideError, match=r"AIS moves continuous latents; .* \(c\)"):
        pv.log_likelihood(mixture.model, mixture.guide, torch.randn(5, 1), method="ais")
    with pytest.raises(
        ValueError, match="record_at, chunk_size, seed and precision are for method='is'"
    ):
        pv.log_likelihood(model, guide, x, method="ais", record_at=[10])


def test_bdmc_bounds_sandwich_the_exact_log_likelihood(correlated_ppca):
    vae, _, _ = correlated_ppca("linear_gaussian")
    shift_encoder(vae, 0.5)
    pyro.set_rng_seed(0)
    b = pv.bdmc(vae.model, vae.guide, num_data=16, num_samples=16, num_steps=300)
    exact = exact_log_px(vae, b.data)
    assert b.data.shape == (16, 5) and b.latents["z"].shape == (16, 2)
    assert (b.lower - exact < 4 * b.lower_stderr + 0.02).all()  # forward AIS: a lower bound
    assert (b.upper - exact > -4 * b.upper_stderr - 0.02).all()  # reverse AIS: an upper bound
    assert 0 < b.gap.mean() < 0.3
    with pytest.raises(ValueError, match="data_shape"):
        pv.bdmc(lambda x: vae.model(x), vae.guide, num_data=4)

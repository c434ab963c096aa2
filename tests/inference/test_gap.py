"""The gap split into its approximation and amortization parts, against closed forms on
linear-Gaussian models and a hand-written pair."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from tests.helpers import exact_log_px, shift_encoder


@pytest.mark.slow
def test_gap_decomposition_matches_the_closed_forms(correlated_ppca, diagonal_gap):
    """With the encoder moved off the posterior: the approximation gap is the diagonal family's
    ½(log det S + Σ log (S⁻¹)ᵢᵢ), the amortization gap KL(q‖post) minus it."""
    vae, x, posterior = correlated_ppca("linear_gaussian")
    x, posterior = (
        x[:32],
        dist.MultivariateNormal(posterior.loc[:32], posterior.covariance_matrix[:32]),
    )
    shift_encoder(vae, 0.7)
    pyro.set_rng_seed(0)
    g = pv.gap_decomposition(
        vae.model, vae.guide, x, num_samples=16, method="ais", num_steps=300, elbo_samples=2000
    )
    q = vae.inference["z"]({"x": x})
    q_full = dist.MultivariateNormal(q.mean, torch.diag_embed(q.variance))
    total = torch.distributions.kl_divergence(q_full, posterior).double()
    approximation = diagonal_gap(posterior)
    assert g.converged.all()
    s = g.summary()
    assert (
        abs(s["log_px"]["mean"] - exact_log_px(vae, x).mean().item())
        < 4 * s["log_px"]["mc_stderr"] + 0.01
    )
    assert (
        abs(s["approximation_gap"]["mean"] - approximation)
        < 4 * s["approximation_gap"]["mc_stderr"] + 0.01
    )
    assert abs(s["amortization_gap"]["mean"] - (total.mean() - approximation).item()) < (
        4 * s["amortization_gap"]["mc_stderr"] + 0.01
    )
    assert s["amortization_gap"]["mean"] > 0.5  # the shift costs this much
    assert "approximation_gap" in str(g)


def test_gap_decomposition_refuses_guides_it_cannot_refine():
    hierarchical = pv.load("hierarchical_vae", data_shape=(64,), seed=0)
    x = torch.rand(5, 64).round()
    with pytest.raises(
        pv.ModelGuideError, match="guide site 'z1' depends on another continuous latent"
    ):
        pv.gap_decomposition(hierarchical.model, hierarchical.guide, x, num_samples=4)
    flow = pv.load("bernoulli_vae", "iaf", data_shape=(64,), seed=0)
    with pytest.raises(pv.ModelGuideError, match="guide site 'z' is a TransformedDistribution"):
        pv.gap_decomposition(flow.model, flow.guide, x, num_samples=4)


def test_gap_decomposition_of_a_hand_written_pair():
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("latent", dist.Normal(0.0, 1.0))
            pyro.sample("obs", dist.Normal(z, 0.5), obs=x)

    def guide(x):  # the right mean, too wide: only an amortization gap (the family is exact)
        with pyro.plate("data", len(x)):
            pyro.sample("latent", dist.Normal(0.8 * x, 0.9))

    x = torch.linspace(-2, 2, 8)
    g = pv.gap_decomposition(model, guide, x, num_samples=2000)
    s = g.summary()
    assert abs(s["approximation_gap"]["mean"]) < 4 * s["approximation_gap"]["mc_stderr"] + 0.01
    # KL(N(0.8x, 0.9²) ‖ N(0.8x, 0.2)) per datapoint, the posterior being N(0.8x, 0.2).
    kl = math.log(math.sqrt(0.2) / 0.9) + 0.9**2 / (2 * 0.2) - 0.5
    assert abs(s["amortization_gap"]["mean"] - kl) < 4 * s["amortization_gap"]["mc_stderr"] + 0.01


def test_an_importance_sampled_log_p_flags_its_unreliable_datapoints(correlated_ppca):
    """On a correlated posterior a diagonal guide gives k̂ > 0.7: those datapoints' log p̂, and
    so their approximation gaps, are too low; they are flagged and left out of the means.
    AIS, the default, has no such flag."""
    vae, x, _ = correlated_ppca("linear_gaussian")
    x = x[:16]
    pyro.set_rng_seed(0)
    d = pv.gap_decomposition(vae.model, vae.guide, x, method="is", num_samples=100, max_steps=100)
    assert d.unreliable.sum() > 0 and not d.usable[d.unreliable].any()
    text = str(d)
    assert f"Pareto k̂ > 0.7 on {int(d.unreliable.sum())} of 16 datapoints" in text
    assert d.to_dict()["unreliable"] == int(d.unreliable.sum())
    default = pv.gap_decomposition(
        vae.model, vae.guide, x, chains=4, num_steps=20, num_samples=100, max_steps=100
    )
    assert default.method == "ais" and default.khat is None and not default.unreliable.any()

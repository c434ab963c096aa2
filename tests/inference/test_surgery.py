"""ELBO surgery (average KL = mutual information + marginal KL) and latent usage (KL per dimension,
active units) against closed forms."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from pyro_vae.inference import surgery


def test_elbo_surgery_splits_the_average_kl_as_closed_forms_say(ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    pyro.set_rng_seed(0)
    s = pv.elbo_surgery(vae.model, vae.guide, x, num_samples=400)
    q = vae.inference["z"]({"x": x})
    prior = dist.Normal(0.0, 1.0).expand([2]).to_event(1)
    kl = torch.distributions.kl_divergence(q, prior).mean().item()
    assert abs(s.average_kl - kl) < 4 * s.average_kl_stderr
    # The aggregate posterior is a mixture of the 20 guide Gaussians: its KL to N(0, I) by
    # brute force on a grid.
    grid = torch.linspace(-7, 7, 701)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 1, 2)
    with torch.no_grad():
        log_agg = torch.logsumexp(q.log_prob(zz), -1) - math.log(len(x))
        integrand = log_agg.exp() * (log_agg - prior.log_prob(zz[:, 0]))
    brute = (integrand.sum() * (grid[1] - grid[0]) ** 2).item()
    assert abs(s.marginal_kl - brute) < 4 * s.marginal_kl_stderr + 0.005
    assert s.mutual_information == pytest.approx(s.average_kl - s.marginal_kl, abs=1e-9)
    assert 0 < s.mutual_information <= math.log(len(x))
    assert "mutual information" in str(s)


def test_latent_usage_counts_active_units_and_the_kl_of_each_dimension(ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    u = pv.latent_usage(vae.model, vae.guide, x)
    q = vae.inference["z"]({"x": x})
    kl = torch.distributions.kl_divergence(q.base_dist, dist.Normal(0.0, 1.0)).mean(0).double()
    assert torch.allclose(u.kl_per_dim["z"], kl, atol=1e-5)
    assert u.active_units == {"z": 2}
    with torch.no_grad():  # the second dimension's mean no longer depends on x: collapsed
        vae.inference["z"].net.layers[0].weight[1] = 0
    collapsed = pv.latent_usage(vae.model, vae.guide, x)
    assert collapsed.active_units == {"z": 1} and collapsed.activity["z"][1] < 1e-12
    flows = pv.latent_usage(*_flow_prior_pair(), torch.rand(6, 64).round())
    assert "z" in flows.notes and "z" not in flows.kl_per_dim  # no Gaussian marginals of p


def _flow_prior_pair():
    vae = pv.load("flow_prior_vae", data_shape=(64,), seed=0)
    return vae.model, vae.guide


# -- the aggregate posterior at scale ----------------------------------------------------------


def _hand_written(full_covariance: bool):
    """A hand-written linear-Gaussian pair (its own site and plate names, a sizeless plate):
    the guide's z | x is a diagonal Gaussian, written as one (the products apply) or as a
    MultivariateNormal with the same diagonal (only the traced densities do)."""
    weight = torch.tensor([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]])

    def model(x):
        with pyro.plate("rows", dim=-1):
            code = pyro.sample("code", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("obs", dist.Normal(code @ weight.T, 0.5).to_event(1), obs=x)

    def guide(x):
        loc, scale = x @ weight / 2, 0.3 + 0.2 * torch.sigmoid(x[..., :2])
        with pyro.plate("rows", dim=-1):
            if full_covariance:
                q = dist.MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))
            else:
                q = dist.Normal(loc, scale).to_event(1)
            pyro.sample("code", q)

    return model, guide


def _data(n: int) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(2)) * 1.5


def test_the_products_of_a_diagonal_guide_give_the_traced_densities():
    x = _data(150)
    found = {}
    for full in (False, True):
        pyro.set_rng_seed(0)
        found[full] = pv.elbo_surgery(*_hand_written(full), x, num_samples=8, components=None)
    diagonal, traced = found[False], found[True]
    assert diagonal.exact and diagonal.components == 150 and diagonal.aggregate_stderr == 0
    assert diagonal.mutual_information == pytest.approx(traced.mutual_information, abs=1e-5)
    assert diagonal.marginal_kl == pytest.approx(traced.marginal_kl, abs=1e-5)


@pytest.mark.parametrize("full_covariance", [False, True])
def test_the_shortcut_errs_by_its_own_standard_error_and_bias(full_covariance):
    x = _data(600)
    pair = _hand_written(full_covariance)
    pyro.set_rng_seed(0)
    exact = pv.elbo_surgery(*pair, x, num_samples=8, components=None)
    pyro.set_rng_seed(0)  # the same draws: the two differ by the shortcut alone
    short = pv.elbo_surgery(*pair, x, num_samples=8, components=24, seed=1)
    assert not short.exact and short.components == 24 and short.aggregate_stderr > 0
    assert short.average_kl == exact.average_kl
    # Few components: the log of the estimate is biased by many standard errors, and once the
    # jackknife's bias is removed it errs by its standard error.
    assert -short.aggregate_bias > 4 * short.aggregate_stderr
    error = short.mutual_information - exact.mutual_information
    assert abs(error) < 4 * short.aggregate_stderr
    assert short.marginal_kl - exact.marginal_kl == pytest.approx(-error, abs=1e-9)
    assert "random components" in str(short)
    pyro.set_rng_seed(0)
    every = pv.elbo_surgery(*pair, x, num_samples=8, components=600)
    assert every.exact and every.mutual_information == pytest.approx(exact.mutual_information)


@pytest.mark.parametrize("bad", [0, 1, 2.5, True, "all"])
def test_a_count_of_components_that_cannot_be_is_refused(bad, ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    with pytest.raises(ValueError, match="components"):
        pv.elbo_surgery(vae.model, vae.guide, x, components=bad)


def test_draws_scored_in_passes_give_the_numbers_of_one_pass(ppca_perturbed, monkeypatch):
    # A whole test set's draws run through the programs a few rows at a time, so memory
    # stays bounded; the passes change nothing but the order of the work.
    vae, x, _, _ = ppca_perturbed
    found = []
    for rows in (1 << 16, 7):
        monkeypatch.setattr(surgery, "ROWS_PER_PASS", rows)
        pyro.set_rng_seed(0)
        s = pv.elbo_surgery(vae.model, vae.guide, x, num_samples=16)
        found.append((s, pv.latent_usage(vae.model, vae.guide, x, num_samples=16)))
    (one, usage_one), (many, usage_many) = found
    assert many.mutual_information == pytest.approx(one.mutual_information, abs=1e-12)
    assert torch.allclose(many.kl_per_datapoint, one.kl_per_datapoint, atol=1e-12)
    assert torch.allclose(usage_many.kl_per_dim["z"], usage_one.kl_per_dim["z"], atol=1e-12)
    assert torch.allclose(usage_many.activity["z"], usage_one.activity["z"], atol=1e-12)

"""ELBO surgery (average KL = mutual information + marginal KL) and latent usage (KL per dimension,
active units) against closed forms."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv


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

"""Importance weights of a pair: the modules' fast path gives the traced weights, and is left when
it disagrees; observed values outside their support (grey levels under a Bernoulli) and
subsampled plates are refused."""

import math

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.inference.log_likelihood import log_likelihood


def test_the_modules_give_the_traced_weights(digits):
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)

    # Wrapping the methods hides the fast path: these go through Pyro's traces.
    def traced_model(x):
        return vae.model(x)

    def traced_guide(x):
        return vae.guide(x)

    for proposal in ("guide", "prior"):
        fast = pv.log_likelihood(
            vae.model, vae.guide, digits, num_samples=300, seed=2, proposal=proposal
        )
        traced = pv.log_likelihood(
            traced_model, traced_guide, digits, num_samples=300, seed=2, proposal=proposal
        )
        assert torch.allclose(fast.log_px, traced.log_px, rtol=0, atol=1e-4)
        # Unseeded, the batch is drawn together; still the same draws on both paths.
        pyro.set_rng_seed(1)
        fast = pv.log_likelihood(vae.model, vae.guide, digits, num_samples=50, proposal=proposal)
        pyro.set_rng_seed(1)
        traced = pv.log_likelihood(
            traced_model, traced_guide, digits, num_samples=50, proposal=proposal
        )
        assert torch.allclose(fast.log_px, traced.log_px, rtol=0, atol=1e-4)


def test_modules_that_disagree_with_the_traces_are_not_used(digits, monkeypatch):
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    expected = pv.log_likelihood(lambda x: vae.model(x), vae.guide, digits, num_samples=40, seed=0)
    real = type(vae).importance_log_weights
    monkeypatch.setattr(
        type(vae), "importance_log_weights", lambda self, *a, **k: real(self, *a, **k) + 1.0
    )
    with pytest.warns(UserWarning, match="disagree with the traced weights; using the traces"):
        got = pv.log_likelihood(vae.model, vae.guide, digits, num_samples=40, seed=0)
    assert torch.equal(got.log_px, expected.log_px)


def test_support_is_checked_once_even_though_chunks_skip_validation():
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    with pytest.raises(pv.ModelGuideError, match="takes values in \\{0, 1\\}"):
        log_likelihood(vae.model, vae.guide, torch.full((3, 64), 0.5), num_samples=10)


def test_a_plate_subsampling_at_random_is_refused_and_given_indices_it_is_not():
    def model(x, rows=None):
        with pyro.plate("data", len(x), subsample_size=2, subsample=rows) as idx:
            z = pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))
            pyro.sample("x", pyro.distributions.Normal(z, 1.0), obs=x[idx])

    def guide(x, rows=None):  # the exact posterior N(x / 2, 1 / 2): every weight is p(x)
        with pyro.plate("data", len(x), subsample_size=2, subsample=rows) as idx:
            pyro.sample("z", pyro.distributions.Normal(x[idx] / 2, 0.5**0.5))

    with pytest.raises(pv.ModelGuideError, match="subsamples at random"):
        pv.log_likelihood(model, guide, torch.zeros(6), num_samples=5)
    # The scale of a subsampled plate (here 3) is left out: log p of the rows given.
    ll = pv.log_likelihood(model, guide, torch.zeros(6), rows=torch.tensor([1, 4]), num_samples=5)
    exact = pyro.distributions.Normal(0.0, 2**0.5).log_prob(torch.zeros(2)).double()
    assert torch.allclose(ll.log_px, exact, atol=1e-6)


def test_grey_level_data_given_to_a_bernoulli_pair_names_the_fix():
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    grey = pv.load_dataset("digits").test[:8]
    for estimate in (pv.log_likelihood, pv.elbo, pv.elbo_gap):
        with pytest.raises(pv.PyroVaeError) as refused:
            estimate(vae.model, vae.guide, grey, num_samples=4)
        message = str(refused.value)
        assert "\n" not in message and "takes values in {0, 1}" in message
        assert "binarize grey-level data first" in message and "binarization='static'" in message
    binary = pv.load_dataset("digits", binarization="static").test[:8]
    assert math.isfinite(pv.log_likelihood(vae.model, vae.guide, binary, num_samples=4).mean)

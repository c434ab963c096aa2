"""Per-datapoint random streams, the modules' fast path of importance sampling, and bf16."""

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_vae as pv
from pyro_vae.inference.streams import datapoint_seeds


class ExampleVAE(nn.Module):
    """Pyro's examples/vae pair in miniature: sites ``latent`` and ``obs``."""

    def __init__(self, z_dim=3, x_dim=64):
        super().__init__()
        self.z_dim = z_dim
        self.decoder = nn.Sequential(nn.Linear(z_dim, 32), nn.Softplus(), nn.Linear(32, x_dim))
        self.encoder = nn.Sequential(nn.Linear(x_dim, 32), nn.Softplus(), nn.Linear(32, 2 * z_dim))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(x.new_zeros(x.shape[0], self.z_dim), 1.0).to_event(1)
            z = pyro.sample("latent", prior)
            pyro.sample("obs", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            raw = self.encoder(x)
            scale = nn.functional.softplus(raw[:, self.z_dim :]) + 1e-3
            pyro.sample("latent", dist.Normal(raw[:, : self.z_dim], scale).to_event(1))


@pytest.fixture
def digits():
    return pv.load_dataset("digits", binarization="static").test[:24]


@pytest.fixture
def example():
    torch.manual_seed(0)
    return ExampleVAE()


def test_stream_seeds_differ_per_datapoint_and_seed():
    seeds = datapoint_seeds(0, range(100)) + datapoint_seeds(1, range(100))
    assert len(set(seeds)) == 200 and all(0 <= s < 2**63 for s in seeds)
    assert datapoint_seeds(0, [7]) == datapoint_seeds(0, [7])
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        datapoint_seeds(-1, [0])


@pytest.mark.parametrize("pair", ["spec", "hand_written"])
def test_seeded_estimates_are_the_same_whatever_the_batch(pair, digits, example):
    if pair == "spec":
        vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
        model, guide = vae.model, vae.guide
    else:
        model, guide = example.model, example.guide
    whole = pv.log_likelihood(model, guide, digits, num_samples=64, seed=5, record_at=[1, 8])
    # The same datapoints in other batches, in another order, with their ids: bit for bit.
    order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))
    for part in (order[:5], order[5:17], order[17:]):
        alone = pv.log_likelihood(
            model, guide, digits[part], num_samples=64, seed=5, datapoint_ids=part, record_at=[1, 8]
        )
        assert torch.equal(alone.log_px, whole.log_px[part])
        assert torch.equal(alone.stderr, whole.stderr[part])
        assert torch.equal(alone.khat, whole.khat[part])
    # Recording the curve does not change the draws (the sums differ by rounding only);
    # another seed does; the caller's stream is left where it was.
    state = torch.get_rng_state()
    again = pv.log_likelihood(model, guide, digits, num_samples=64, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.allclose(again.log_px, whole.log_px, rtol=0, atol=1e-12)
    assert torch.allclose(again.stderr, whole.stderr, rtol=1e-12, atol=0)
    other = pv.log_likelihood(model, guide, digits, num_samples=64, seed=6)
    assert not torch.equal(other.log_px, whole.log_px)
    # The curve is the estimate from the first K samples: with K = 1 one weight each.
    assert whole.by_num_samples[1][0].shape == (len(digits),)
    bound = pv.elbo(model, guide, digits, num_samples=20, seed=5)
    alone = pv.elbo(
        model, guide, digits[order[:5]], num_samples=20, seed=5, datapoint_ids=order[:5]
    )
    assert torch.equal(alone.elbo, bound.elbo[order[:5]])


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


def test_streams_need_the_data_in_the_arguments(digits):
    x = digits[:6]

    def model(_unused):  # reads the data from its closure: slicing its argument changes nothing
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(_unused):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))

    data = torch.zeros(len(x), 1)
    assert pv.log_likelihood(model, guide, data, num_samples=4).log_px.shape == (6,)
    with pytest.raises(pv.ModelGuideError, match="still has size 6 after slicing"):
        pv.log_likelihood(model, guide, data, num_samples=4, seed=0)
    with pytest.raises(ValueError, match="datapoint_ids must be 6 distinct"):
        pv.log_likelihood(model, guide, data, num_samples=4, seed=0, datapoint_ids=[0] * 6)


def test_bf16_changes_the_estimate_by_little(digits, example):
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    # A spec-built model sums its densities in float32 (only its nets compute in bf16); the
    # hand-written pair's Bernoulli gets bf16 logits from autocast, so it moves more.
    pairs = ((vae.model, vae.guide, 0.1), (example.model, example.guide, 0.5))
    for model, guide, fraction in pairs:
        fp32 = pv.log_likelihood(model, guide, digits, num_samples=200, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the fast path's check passes under autocast too
            bf16 = pv.log_likelihood(
                model, guide, digits, num_samples=200, seed=0, precision="bf16"
            )
        change = (bf16.log_px - fp32.log_px).abs()
        # bf16 products carry 8 significant bits; on these small nets the estimate moves by
        # less than its Monte Carlo error (but it moves: the products did run in bf16).
        assert 0 < change.mean() < fraction * fp32.stderr.mean()
        assert np.isfinite(bf16.log_px.numpy()).all()
    with pytest.raises(ValueError, match="precision must be one of"):
        pv.log_likelihood(vae.model, vae.guide, digits, num_samples=4, precision="fp8")

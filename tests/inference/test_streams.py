"""Per-datapoint random streams: seeded estimates are the same whatever the batch, and a pair must
take its data in its arguments."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from pyro_vae.inference.streams import datapoint_seeds


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
    with pytest.raises(pv.ModelGuideError, match="still sees 6 datapoints after every argument"):
        pv.log_likelihood(model, guide, data, num_samples=4, seed=0)
    with pytest.raises(ValueError, match="datapoint_ids must be 6 distinct"):
        pv.log_likelihood(model, guide, data, num_samples=4, seed=0, datapoint_ids=[0] * 6)

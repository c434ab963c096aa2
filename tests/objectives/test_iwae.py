"""IWAE: with one sample it is the ELBO; it trains, and refuses the pairs it cannot estimate."""

import math

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.objectives.iwae import IWAE_ELBO
from pyro_vae.objectives.registry import ObjectiveChoice


def toy_batch():
    return pv.load_dataset("digits", binarization="static").test[:32]


def test_iwae_with_one_sample_is_the_elbo():
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    x = toy_batch()
    pyro.set_rng_seed(1)
    iwae = IWAE_ELBO(num_particles=1).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    trace = pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x)
    assert iwae == pytest.approx(trace, rel=1e-5)


def test_iwae_objectives_train_and_refuse_what_they_cannot_do():
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    x = pv.load_dataset("digits", binarization="dynamic", seed=0).test
    before = pv.elbo(vae.model, vae.guide, x, num_samples=10)
    result = pv.train(vae, "digits", objective="iwae", num_particles=4, epochs=2, progress=False)
    after = pv.elbo(vae.model, vae.guide, x, num_samples=10)
    stderr = math.hypot(before.mean_stderr, after.mean_stderr)
    assert after.mean - before.mean > 4 * stderr, (before.mean, after.mean, stderr)
    assert torch.equal(result.dataset.test, x)
    with pytest.raises(pv.SpecError, match="'iwae' needs reparameterizable guide sites"):
        ObjectiveChoice("iwae").build(pv.load("mixture_1d", data_shape=(1,)))
    with pytest.raises(pv.SpecError, match="'iwae_dreg' supports guides conditioned on x only"):
        ObjectiveChoice("iwae_dreg").build(pv.load("hierarchical_vae", data_shape=(64,)))

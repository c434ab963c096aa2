"""Latent values and their log densities: the fast path of spec-built pairs equals the traced
one."""

import torch

import pyro_vae as pv
from pyro_vae.inference import latents as latent_values


def test_the_fast_path_of_spec_built_pairs_equals_the_traced_one():
    for model, guide in [("hierarchical_vae", None), ("vamp_vae", None), ("bernoulli_vae", "iaf")]:
        vae = pv.load(model, guide, data_shape=(64,), seed=0)
        x = torch.rand(7, 64).round()
        latents = latent_values.continuous_latents(vae.model, vae.guide, (x,), {})
        values = latent_values.sample_latents(vae.model, vae.guide, (x,), {}, latents, 3)
        fast = latent_values.log_densities(vae.model, vae.guide, (x,), {}, latents, values)
        model_fn, guide_fn = vae.model, vae.guide
        traced = latent_values.log_densities(  # plain functions: no fast path to take
            lambda x, m=model_fn: m(x), lambda x, g=guide_fn: g(x), (x,), {}, latents, values
        )
        for a, b in (
            (fast.joint, traced.joint),
            (fast.prior, traced.prior),
            (fast.guide, traced.guide),
        ):
            assert torch.allclose(a, b, atol=1e-4), model

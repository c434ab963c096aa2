"""Importance sampling in bf16 (``precision="bf16"``): the estimate moves by less than its Monte
Carlo error."""

import warnings

import numpy as np
import pytest

import pyro_vae as pv


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

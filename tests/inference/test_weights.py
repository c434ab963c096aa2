"""Importance weights summarized: the streaming log p̂, ESS and Pareto k̂ equal the full computation,
k̂ is undefined where it cannot be estimated, and the float spacing says when precision is lost."""

import math
import warnings

import numpy as np
import torch

import pyro_vae as pv
from pyro_vae.inference.weights import _StreamingWeights, float_spacing, precision_lost


def test_streaming_matches_the_full_computation():
    import arviz

    torch.manual_seed(0)
    lw = torch.randn(1000, 6, dtype=torch.float64) * torch.tensor([0.1, 1, 2, 3, 5, 8.0]) - 40
    stream = _StreamingWeights(6, 1000)
    for chunk in lw.split(137):
        stream.add(chunk)
    result = stream.result()
    assert torch.allclose(result.log_px, torch.logsumexp(lw, 0) - math.log(1000))
    normalized = torch.softmax(lw, 0)
    assert torch.allclose(result.ess, 1 / normalized.pow(2).sum(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, khat = arviz.psislw(lw.T.numpy().copy(), reff=1.0)
    assert torch.allclose(result.khat, torch.from_numpy(khat))


def test_discrete_latents_count_undefined_khat():
    vae = pv.load("mixture_1d", data_shape=(1,), seed=0)
    ll = pv.log_likelihood(vae.model, vae.guide, torch.linspace(-4, 4, 9)[:, None], num_samples=200)
    summary = ll.summary()
    assert summary["khat_undefined"] + int(torch.isfinite(ll.khat).sum()) == 9
    assert summary["khat_above_0.7"] <= int(torch.isfinite(ll.khat).sum())


def test_float_spacing_and_precision_lost():
    assert float_spacing(1e26, torch.float32).item() == float(np.spacing(np.float32(1e26)))
    assert float_spacing(-1e26, torch.float32).item() == 2.0**63
    magnitudes = torch.tensor([1e26, 100.0, 1e6, 2e6, math.nan, math.inf, 0.0])
    lost = precision_lost(magnitudes, torch.float32)
    # float32 steps at 1e6 are 1/16 nat, at 2e6 1/8 nat: more than 0.1.
    assert lost.tolist() == [True, False, False, True, False, False, False]
    assert precision_lost(torch.tensor([100.0]), torch.bfloat16).tolist() == [True]  # 0.5 nat
    assert precision_lost(torch.tensor([1e13]), torch.float64).tolist() == [False]

"""DReG (IWAE with doubly reparameterized guide gradients): IWAE's value and model gradients, on
every guide family, and a guide gradient with less noise on a flow."""

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.objectives.dreg import IWAE_DReG
from pyro_vae.objectives.iwae import IWAE_ELBO
from tests.model.test_guide_families import MLP, guide_spec
from tests.objectives.test_iwae import toy_batch


def _iwae_and_dreg(vae, x, num_particles):
    """``[(loss, model gradients, guide gradients)]`` of IWAE and of DReG, on the same draws."""
    results = []
    for cls in (IWAE_ELBO, IWAE_DReG):
        vae.zero_grad()
        pyro.set_rng_seed(2)
        loss = cls(num_particles=num_particles).differentiable_loss(vae.model, vae.guide, x)
        loss.backward()
        results.append(
            (
                loss.item(),
                [p.grad.clone() for p in vae.generative.parameters()],
                [p.grad.clone() for p in vae.inference.parameters()],
            )
        )
    return results


def test_dreg_gives_iwae_model_gradients_and_value():
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    (v1, model1, guide1), (v2, model2, guide2) = _iwae_and_dreg(vae, toy_batch(), 8)
    assert v1 == pytest.approx(v2, rel=1e-6)
    for a, b in zip(model1, model2, strict=True):  # same samples: identical model gradients
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5 * a.abs().max().item())
    assert any(not torch.allclose(a, b) for a, b in zip(guide1, guide2, strict=True))


@pytest.mark.parametrize("family", ["full_normal", "low_rank_normal", "iaf"])
def test_dreg_gives_iwae_model_gradients_on_every_guide_family(tmp_path, family):
    options = "flows = 2" if family == "iaf" else None  # hidden: 4 × dim by default
    guide = guide_spec(tmp_path, family, MLP, options)
    vae = pv.load("bernoulli_vae", guide, data_shape=(64,), seed=0)
    x = pv.load_dataset("digits", binarization="static").test[:16]
    (v1, model1, guide1), (v2, model2, guide2) = _iwae_and_dreg(vae, x, 6)
    assert v1 == pytest.approx(v2, rel=1e-5)
    for a, b in zip(model1, model2, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * a.abs().max().item())
    assert any(not torch.allclose(a, b) for a, b in zip(guide1, guide2, strict=True))


def test_dreg_estimates_iwae_guide_gradient_with_less_noise_on_a_flow(tmp_path, correlated_ppca):
    vae, x, _ = correlated_ppca(guide_spec(tmp_path, "iaf", MLP))
    c = pv.compare_estimators(
        vae.model,
        vae.guide,
        x[:16],
        estimators=["iwae:k=8", "iwae_dreg:k=8"],
        repeats=200,
        reference_samples=None,
    )
    iwae, dreg = c["iwae(K=8)"].gradients["guide"], c["iwae_dreg(K=8)"].gradients["guide"]
    spread = (iwae.stderr**2 + dreg.stderr**2).sqrt()
    assert ((iwae.mean - dreg.mean).abs() <= 4 * spread + 1e-6).all()
    assert dreg.variance < iwae.variance

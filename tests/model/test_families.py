"""Families of the model's nodes: the fused Bernoulli against torch's, the constraints families
declare for their fixed parameters, a Normal at a fixed scale, and the continuous Bernoulli on
grey levels."""

import textwrap

import numpy as np
import pytest
import torch

import pyro_vae as pv
from pyro_vae.bundled import bundled_dir
from pyro_vae.model.families import FAMILIES
from tests.helpers import grey, model_file


def test_fused_bernoulli_matches_torch():
    from pyro_vae.model.families import IndependentBernoulli

    logits = torch.randn(3, 5, 64)
    x = torch.rand(5, 64).round()
    reference = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)
    fused = IndependentBernoulli(logits)
    assert torch.allclose(fused.log_prob(x), reference, atol=1e-4)
    trained = logits.clone().requires_grad_()  # training takes the product-and-sum path
    IndependentBernoulli(trained).log_prob(x).sum().backward()
    assert torch.allclose(trained.grad, x - torch.sigmoid(logits), atol=1e-6)
    assert fused.expand(torch.Size([2, 3, 5])).log_prob(x).shape == (2, 3, 5)
    with pytest.raises(ValueError):
        IndependentBernoulli(logits, validate_args=True).log_prob(torch.full((5, 64), 0.5))


GAUSSIAN_VAE = (bundled_dir("models") / "gaussian_vae.toml").read_text()


@pytest.mark.parametrize("scale", ["1e-6", "0.01", "3", "1e18"])
def test_a_fixed_scale_inside_its_constraint_gives_finite_densities(tmp_path, scale):
    path = model_file(tmp_path, GAUSSIAN_VAE.replace('scale = "learned"', f"scale = {scale}"))
    vae = pv.load(path, "mean_field", data_shape=(64,), seed=0)
    x = torch.rand(3, 64)
    joint, _, guide = vae.log_densities(x, vae.draw_latents(x, 2))
    assert torch.isfinite(joint).all() and torch.isfinite(guide).all()


def test_constraints_are_declared_by_the_families_for_options_they_have():
    declared = {name: FAMILIES.get(name).constraints for name in FAMILIES.names()}
    assert set(declared["normal"]) == {"scale"} and set(declared["categorical"]) == {"weights"}
    for name, constraints in declared.items():
        assert set(constraints) <= set(FAMILIES.get(name).options), name


CB_MODEL = textwrap.dedent("""
    [latent.z]
    family = "standard_normal"
    dim = 4
    [observed.x]
    family = "continuous_bernoulli"
    given = ["z"]
    net = { kind = "mlp", hidden = [32] }
""")


def test_continuous_bernoulli_trains_on_grey_levels_and_refuses_data_outside_0_1(tmp_path):
    spec = tmp_path / "cb.toml"
    spec.write_text(CB_MODEL)
    vae = pv.load(spec, "mean_field", data_shape=(64,), seed=0)
    result = pv.train(vae, "digits", epochs=2, progress=False)
    assert result.config.binarization == "none"  # grey levels are its data: no binarization
    assert not result.dataset.is_binary
    # A normalized density on [0, 1]: its log density integrates to 1 (checked numerically).
    px = vae.likelihood({"z": torch.zeros(1, 4)})
    grid = torch.linspace(0, 1, 20001)[:, None].expand(-1, 64)
    density = px.base_dist.log_prob(grid)[:, 0].exp()
    assert torch.trapezoid(density, dx=1 / 20000).item() == pytest.approx(1.0, abs=1e-4)
    outside = tmp_path / "outside.npy"
    np.save(outside, grey(50, 64) * 1.5)
    with pytest.raises(
        pv.DataError,
        match=r"cb.toml: observed.x.family: 'continuous_bernoulli' "
        r"needs values in \[0, 1\], but .*outside.npy' has values in \[0.*, 1.4",
    ):
        pv.train(pv.load(spec, "mean_field", data_shape=(64,)), str(outside), epochs=1)

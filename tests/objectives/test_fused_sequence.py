"""The trace-free step of sequence models against Pyro's estimators on the same draws."""

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.devices import fork_rng
from pyro_vae.objectives.fused_sequence import FusedSequenceELBO
from pyro_vae.objectives.kl_weight import KLWeighted
from pyro_vae.objectives.registry import ObjectiveChoice

LENGTHS = torch.tensor([7, 3, 5, 6, 1, 7, 2, 4, 5])


def _pair(name: str):
    shape = (7, 5) if name == "dmm" else (7, 3)
    vae = pv.load(name, data_shape=shape, seed=0)
    torch.manual_seed(1)
    x = torch.bernoulli(torch.full((9, *shape), 0.4)) if name == "dmm" else torch.randn(9, *shape)
    return vae, x


def _loss_and_grads(vae, estimator, x, seed=3):
    with fork_rng(x.device):
        torch.manual_seed(seed)
        loss = estimator.differentiable_loss(vae.model, vae.guide, x, LENGTHS)
    params = [p for p in vae.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss, [
        torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)
    ]


@pytest.mark.parametrize("name", ["dmm", "lgssm"])
@pytest.mark.parametrize("objective", ["trace", "trace_mean_field"])
@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_the_fused_loss_and_gradients_equal_pyros(name, objective, beta):
    vae, x = _pair(name)
    choice = ObjectiveChoice(objective)
    fused = choice.fused_step(vae)
    assert isinstance(fused, FusedSequenceELBO)
    elbo = choice.build(vae)
    if beta != 1:
        fused.kl_weight = beta
        elbo = KLWeighted(elbo, beta)
    with pyro.validation_enabled(True):
        expected, expected_grads = _loss_and_grads(vae, elbo, x)
    got, grads = _loss_and_grads(vae, fused, x)
    assert torch.allclose(got, expected, rtol=1e-5), (got, expected)
    for g, e in zip(grads, expected_grads, strict=True):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-5 * float(e.abs().max()) + 1e-7)
    # The draws matter: another seed gives another loss.
    other, _ = _loss_and_grads(vae, fused, x, seed=4)
    assert not torch.isclose(other, got)


def test_masked_steps_do_not_count():
    vae, x = _pair("lgssm")
    fused = ObjectiveChoice("trace").fused_step(vae)
    changed = x.clone()
    changed[torch.arange(7) >= LENGTHS[:, None]] = 50.0
    with fork_rng(x.device):
        torch.manual_seed(0)
        one = fused.negative_elbo(x, LENGTHS)
        torch.manual_seed(0)
        two = fused.negative_elbo(changed, LENGTHS)
        torch.manual_seed(0)
        unmasked = fused.negative_elbo(changed)
    assert torch.allclose(one, two)
    assert not torch.isclose(one, unmasked)


def test_training_takes_the_fused_step(tmp_path):
    vae = pv.load("lgssm", data_shape=(8, 3), seed=0)
    trained = pv.train(vae, "lgssm", data_options={"steps": 8, "dim": 3, "n_train": 200,
                                                   "n_test": 50, "min_steps": 3},
                       epochs=2, batch_size=50)  # fmt: skip
    assert [h["step"] for h in trained.history] == ["fused", "fused"]
    assert trained.history[-1]["test_elbo"] > trained.history[0]["test_elbo"] - 5

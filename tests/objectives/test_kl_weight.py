"""The β-weighted ELBO (--kl-weight) and KL warm-up (--kl-warmup)."""

import json
import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.objectives.kl_weight import KLWeighted
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.runs.training import estimate_elbo
from tests.helpers import closed_form_elbo, small_vae

SMALL = dict(epochs=2, batch_size=100, progress=False)


@pytest.mark.parametrize("estimator", [Trace_ELBO, TraceMeanField_ELBO])
def test_weighted_estimators_match_the_closed_form(ppca_perturbed, estimator):
    vae, x, _, _ = ppca_perturbed
    for beta in (0.0, 0.3, 4.0):
        elbo = KLWeighted(
            estimator(num_particles=200, vectorize_particles=True, max_plate_nesting=1), beta
        )
        with torch.no_grad():
            draws = torch.tensor([-elbo.loss(vae.model, vae.guide, x) / len(x) for _ in range(50)])
        stderr = draws.std() / math.sqrt(len(draws))
        assert abs(draws.mean() - closed_form_elbo(vae, x, beta).item()) < 4 * stderr + 1e-6, beta


@pytest.mark.parametrize("objective", ["trace", "trace_mean_field"])
def test_fused_step_weights_the_kl_as_pyro_does(objective):
    vae = small_vae()
    x = pv.load_dataset("digits", binarization="static").test[:32]
    choice = ObjectiveChoice(objective)
    fused, pyro_elbo = choice.fused_step(vae), KLWeighted(choice.build(vae), 2.5)
    fused.kl_weight = 2.5
    results = []
    for elbo in (pyro_elbo, fused):
        torch.manual_seed(4)
        loss = elbo.differentiable_loss(vae.model, vae.guide, x)
        results.append((loss, torch.autograd.grad(loss, list(vae.parameters()))))
    (a, grads_a), (b, grads_b) = results
    assert b.item() == pytest.approx(a.item(), rel=1e-5)
    for g, h in zip(grads_a, grads_b, strict=True):
        assert torch.allclose(g, h, rtol=1e-4, atol=1e-5 * g.abs().max().item())
    torch.manual_seed(4)  # and β = 2.5 is not the ELBO
    assert abs(choice.build(vae).loss(vae.model, vae.guide, x) - a.item()) > 1.0


def test_kl_weight_one_is_the_elbo_bit_for_bit():
    plain = pv.train(small_vae(), "digits", **SMALL)
    explicit = pv.train(small_vae(), "digits", kl_weight=1.0, kl_warmup=0, **SMALL)
    for p, q in zip(plain.vae.parameters(), explicit.vae.parameters(), strict=True):
        assert torch.equal(p, q)
    assert "kl_weight" not in explicit.final


def test_warmup_ramps_beta_per_step_and_resumes_where_it_was(tmp_path):
    settings = dict(kl_weight=4.0, kl_warmup=2, batch_size=100, progress=False)
    straight = pv.train(small_vae(), "digits", epochs=3, out=tmp_path / "a", **settings)
    steps = 15  # 1,500 train digits in batches of 100
    expected = [4.0 * min(1.0, (e * steps - 1) / (2 * steps)) for e in (1, 2, 3)]
    assert [r["kl_weight"] for r in straight.history] == pytest.approx(expected)
    pv.train(small_vae(), "digits", epochs=1, out=tmp_path / "b", **settings)
    resumed = pv.resume(tmp_path / "b", epochs=3, progress=False)
    assert [r["kl_weight"] for r in resumed.history] == pytest.approx(expected)
    for p, q in zip(straight.vae.parameters(), resumed.vae.parameters(), strict=True):
        assert torch.equal(p, q)
    config = json.loads((tmp_path / "a" / "config.json").read_text())["config"]
    assert (config["kl_weight"], config["kl_warmup"]) == (4.0, 2)
    assert (
        "| KL weight β | 4, ramped from 0 over 2 epoch(s) |"
        in (tmp_path / "a" / "report.md").read_text()
    )


def test_the_reported_test_elbo_is_the_true_elbo():
    """With β = 0 the training objective drops the KL; the test ELBO must keep it."""
    result = pv.train(small_vae(), "digits", kl_weight=0.0, **SMALL)
    vae, test = result.vae, result.dataset.test
    pyro.set_rng_seed(1)
    true = torch.tensor([estimate_elbo(vae, test) for _ in range(20)])
    weighted = KLWeighted(ObjectiveChoice("trace_mean_field").build(vae), 0.0)
    reconstruction = torch.tensor([estimate_elbo(vae, test, weighted) for _ in range(20)])
    spread = math.hypot(true.std().item(), reconstruction.std().item())
    assert reconstruction.mean() - true.mean() > 10 * spread  # the KL is many nats here
    assert abs(result.final["test_elbo"] - true.mean().item()) < 4 * true.std().item()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--objective", "iwae:k=3", "--kl-weight", "2"], "objective 'iwae': a KL weight"),
        (["--objective", "renyi:k=3", "--kl-warmup", "5"], "objective 'renyi': a KL weight"),
        (["--kl-weight", "-1"], "argument --kl-weight: must be a finite number >= 0, got -1"),
        (["--kl-weight", "inf"], "argument --kl-weight: must be a finite number >= 0, got inf"),
        (["--kl-warmup", "-2"], "argument --kl-warmup: must be a whole number from 0 to"),
    ],
)
def test_bad_kl_settings_are_refused_before_anything_is_written(tmp_path, capsys, args, words):
    out = tmp_path / "run"
    assert (
        main(["train", "--model", "bernoulli_vae", "--epochs", "1", "--out", str(out), *args]) == 2
    )
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not out.exists()

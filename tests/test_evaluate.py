"""pyro-vae evaluate on a trained run, and the importance-weighted training objectives."""

import json

import numpy as np
import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.objectives.dreg import IWAE_DReG
from pyro_vae.objectives.iwae import IWAE_ELBO
from pyro_vae.objectives.registry import make_objective


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    pv.train(vae, "digits", epochs=5, out=run, progress=False)
    return run


def test_evaluate_writes_report_and_plots(trained_run, capsys):
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--num-samples",
                "200",
                "--max-data",
                "40",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "log p(x)" in capsys.readouterr().out
    report = json.loads((trained_run / "report.json").read_text())
    e = report["evaluation"]
    assert e["num_data"] == 40 and e["num_samples"] == 200
    assert [c["num_samples"] for c in e["log_px_by_num_samples"]] == [1, 10, 100, 200]
    # log p̂ ≥ ELBO on average (the gap is a KL), and the K-sample curve ends at log p̂.
    assert e["log_px"]["mean"] > e["elbo"]["mean"]
    assert e["gap"]["mean"] == pytest.approx(e["log_px"]["mean"] - e["elbo"]["mean"])
    assert e["log_px_by_num_samples"][-1]["log_px"] == pytest.approx(e["log_px"]["mean"])
    arrays = np.load(trained_run / "evaluation.npz")
    assert arrays["log_px"].shape == (40,) and np.isfinite(arrays["gap"]).all()
    for name in ("log_px_vs_k", "gap_hist", "khat_hist"):
        assert (trained_run / "plots" / f"{name}.png").stat().st_size > 0
    markdown = (trained_run / "report.md").read_text()
    assert "## Evaluation on the test set (40 datapoints)" in markdown
    assert "## Evaluation" in markdown and "![elbo](plots/elbo.png)" in markdown


def test_evaluate_bad_arguments_exit_2(trained_run, tmp_path, capsys):
    assert main(["evaluate", str(trained_run), "--num-samples", "0"]) == 2
    assert "--num-samples must be >= 1" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


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


def test_dreg_gives_iwae_model_gradients_and_value():
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    x = toy_batch()
    grads = {}
    for cls in (IWAE_ELBO, IWAE_DReG):
        vae.zero_grad()
        pyro.set_rng_seed(2)
        loss = cls(num_particles=8).differentiable_loss(vae.model, vae.guide, x)
        loss.backward()
        grads[cls] = (
            loss.item(),
            [p.grad.clone() for p in vae.generative.parameters()],
            [p.grad.clone() for p in vae.inference.parameters()],
        )
    (v1, model1, guide1), (v2, model2, guide2) = grads.values()
    assert v1 == pytest.approx(v2, rel=1e-6)
    for a, b in zip(model1, model2, strict=True):  # same samples: identical model gradients
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5 * a.abs().max().item())
    assert any(not torch.allclose(a, b) for a, b in zip(guide1, guide2, strict=True))


def test_iwae_objectives_train_and_refuse_what_they_cannot_do():
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    result = pv.train(vae, "digits", objective="iwae", num_particles=4, epochs=2, progress=False)
    assert result.history[-1]["test_elbo"] > result.history[0]["test_elbo"] - 1
    with pytest.raises(pv.SpecError, match="'iwae' needs reparameterizable guide sites"):
        make_objective("iwae", pv.load("mixture_1d", data_shape=(1,)))
    with pytest.raises(pv.SpecError, match="'iwae_dreg' supports guides conditioned on x only"):
        make_objective("iwae_dreg", pv.load("hierarchical_vae", data_shape=(64,)))


def test_evaluate_edge_cases(trained_run, tmp_path, capsys):
    assert (
        main(
            ["evaluate", str(trained_run), "--num-samples", "1", "--max-data", "5", "--no-progress"]
        )
        == 0
    )
    e = json.loads((trained_run / "report.json").read_text())["evaluation"]
    assert e["log_px_by_num_samples"] == [
        {"num_samples": 1, "log_px": pytest.approx(e["log_px"]["mean"]), "mc_stderr": None}
    ]
    for flag in ("--batch-size", "--max-data", "--elbo-samples"):
        assert main(["evaluate", str(trained_run), flag, "0"]) == 2
        assert f"{flag} must be >= 1, got 0" in capsys.readouterr().err
    # A run stopped before its report still evaluates, and its report shows the evaluation.
    (trained_run / "report.json").unlink()
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--num-samples",
                "20",
                "--max-data",
                "5",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "## Evaluation" in (trained_run / "report.md").read_text()


def test_discrete_latents_count_undefined_khat():
    vae = pv.load("mixture_1d", data_shape=(1,), seed=0)
    ll = pv.log_likelihood(vae.model, vae.guide, torch.linspace(-4, 4, 9)[:, None], num_samples=200)
    summary = ll.summary()
    assert summary["khat_undefined"] + int(torch.isfinite(ll.khat).sum()) == 9
    assert summary["khat_above_0.7"] <= int(torch.isfinite(ll.khat).sum())


def test_subsampled_plate_is_refused():
    def model(x):
        with pyro.plate("data", len(x), subsample_size=2) as idx:
            z = pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))
            pyro.sample("x", pyro.distributions.Normal(z, 1.0), obs=x[idx])

    def guide(x):
        with pyro.plate("data", len(x), subsample_size=2):
            pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))

    with pytest.raises(pv.ModelGuideError, match="is scaled \\(a subsampled plate"):
        pv.log_likelihood(model, guide, torch.zeros(6), num_samples=5)

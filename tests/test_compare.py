"""compare_estimators against closed forms, and the ``pyro-vae compare`` command."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.model.families import MIN_SCALE
from pyro_vae.objectives.comparison import compare_estimators, parameter_groups


def exact_elbo(vae, x):
    """Mean ELBO per datapoint in closed form: E_q log N(x; Wz + b, σ²I) − KL(q ‖ N(0, I))."""
    (D,), latent = vae.data_shape, vae.inference["z"].family.size
    h = vae.inference["z"].net([x])
    loc, scale = h[:, :latent], F.softplus(h[:, latent:]) + MIN_SCALE
    decoder = vae.likelihood.net.layers[0]
    W, b = decoder.weight, decoder.bias
    var = (2 * vae.likelihood.family.log_scale).exp()
    residual = ((x - loc @ W.T - b) ** 2).sum(-1) + (scale**2 @ (W**2).sum(0))
    expected_log_lik = -0.5 * D * torch.log(2 * math.pi * var) - residual / (2 * var)
    kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1)
    return (expected_log_lik - kl).mean()


UNBIASED = ["trace", "trace_mean_field", "trace_graph", "iwae:k=1", "renyi:k=1,alpha=0.5"]


def test_unbiased_estimators_match_the_closed_form_elbo_and_its_gradient(ppca_perturbed):
    vae, x, log_px, kl = ppca_perturbed
    repeats = 400
    c = compare_estimators(
        vae.model, vae.guide, x, estimators=UNBIASED, repeats=repeats, reference_samples=None
    )
    exact = exact_elbo(vae, x)
    assert exact.item() == pytest.approx((log_px - kl).mean().item(), abs=1e-4)  # ELBO = log p − KL
    groups = parameter_groups(vae.model, vae.guide, x)
    for group, members in groups.items():
        grads = torch.autograd.grad(exact, [p for _, p in members], retain_graph=True)
        exact_grad = torch.cat([g.reshape(-1) for g in grads]).double()
        for result in c.results:
            assert result.skipped is None
            stats = result.gradients[group]
            assert stats.names == [n for n, _ in members]
            error = (stats.mean - exact_grad).abs()
            # Coordinates with zero variance (none here) must match to float precision.
            assert (error <= 4 * stats.stderr + 1e-5 * (1 + exact_grad.abs())).all(), (
                result.label,
                group,
            )
    for result in c.results:
        stderr = result.value_std / math.sqrt(repeats)
        assert abs(result.value - exact.item()) < 4 * stderr, result.label
    # The analytic KL removes the sampled KL's noise from the guide's gradient.
    assert (
        c["trace_mean_field"].gradients["guide"].variance < c["trace"].gradients["guide"].variance
    )


def test_iwae_k1_is_the_elbo_rises_with_k_and_dreg_shares_the_model_gradient(ppca_perturbed):
    vae, x, log_px, kl = ppca_perturbed
    c = compare_estimators(
        vae.model,
        vae.guide,
        x,
        estimators=["trace", "iwae:k=1", "iwae:k=5", "iwae:k=25", "iwae_dreg:k=5", "renyi:k=5"],
        repeats=100,
        reference_samples=2000,
    )
    # Same seed, same samples: K = 1 reproduces the ELBO estimate exactly.
    assert c["iwae"].value == pytest.approx(c["trace"].value, abs=1e-4)
    values = [c[label] for label in ("trace", "iwae(K=5)", "iwae(K=25)")]
    for low, high in zip(values, values[1:], strict=False):
        spread = math.hypot(low.value_std, high.value_std) / math.sqrt(c.repeats)
        assert high.value - low.value > 4 * spread
    assert values[-1].value < c.reference + 4 * values[-1].value_std / math.sqrt(c.repeats)
    assert c["iwae(K=25)"].bias < 0
    iwae, dreg = c["iwae(K=5)"], c["iwae_dreg(K=5)"]
    assert torch.allclose(iwae.gradients["model"].mean, dreg.gradients["model"].mean, atol=1e-6)
    # DReG estimates the same guide gradient with less noise.
    g_iwae, g_dreg = iwae.gradients["guide"], dreg.gradients["guide"]
    spread = (g_iwae.stderr**2 + g_dreg.stderr**2).sqrt()
    assert ((g_iwae.mean - g_dreg.mean).abs() <= 4 * spread + 1e-6).all()
    assert g_dreg.variance < g_iwae.variance
    # The Rényi bound with α = 0.5 lies between the ELBO and IWAE's bound at the same K.
    assert c["trace"].value < c["renyi(K=5, alpha=0.5)"].value < iwae.value


def test_estimators_that_do_not_suit_the_pair_are_reported_as_skipped():
    vae = pv.load("mixture_1d", data_shape=(1,), seed=0)
    x = torch.randn(30, 1)
    c = compare_estimators(
        vae.model,
        vae.guide,
        x,
        estimators=["trace", "trace_graph", "trace_mean_field", "iwae:k=5"],
        repeats=20,
        reference_samples=200,
    )
    assert c["trace_mean_field"].skipped and "reparameterizable" in c["trace_mean_field"].skipped
    assert c["iwae(K=5)"].skipped
    # Score-function estimators: same samples, same value; the surrogate only shapes gradients.
    assert c["trace_graph"].value == pytest.approx(c["trace"].value, abs=1e-4)
    assert c["trace"].gradients["guide"].variance > 0
    summary = c.summary()
    assert summary["estimators"][2] == {
        "estimator": "trace_mean_field",
        "skipped": c["trace_mean_field"].skipped,
    }


def test_any_pyro_pair_gets_its_parameters_grouped_from_param_sites():
    def model(x):
        w = pyro.param("w", torch.tensor(1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(w * z, 1.0), obs=x)

    def guide(x):
        a = pyro.param("a", torch.tensor(0.1))
        s = pyro.param("s", torch.tensor(1.0), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(a * x, s))

    x = torch.randn(10)
    groups = parameter_groups(model, guide, x)
    assert [n for n, _ in groups["guide"]] == ["a", "s"] and [n for n, _ in groups["model"]] == [
        "w"
    ]
    c = compare_estimators(model, guide, x, estimators=["trace", "iwae:k=3"], repeats=10)
    assert c["trace"].gradients["guide"].mean.shape == (2,)
    assert c.reference is not None and c["iwae(K=3)"].bias is not None


def test_compare_estimators_refuses_bad_settings(ppca_perturbed):
    vae, x, log_px, kl = ppca_perturbed
    with pytest.raises(pv.PyroVaeError, match="did you mean 'iwae'"):
        compare_estimators(vae.model, vae.guide, x, estimators=["iwea:k=5"])
    with pytest.raises(pv.PyroVaeError, match="no option 'beta'"):
        compare_estimators(vae.model, vae.guide, x, estimators=["renyi:beta=2"])
    with pytest.raises(pv.PyroVaeError, match="alpha = 1"):
        compare_estimators(vae.model, vae.guide, x, estimators=["renyi:alpha=1"])
    with pytest.raises(pv.PyroVaeError, match="repeats"):
        compare_estimators(vae.model, vae.guide, x, repeats=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    pv.train(vae, "digits", out=out, epochs=2, batch_size=100, progress=False)
    return out


def test_cli_compare_on_a_run_writes_table_and_plots(tiny_run, capsys):
    argv = ["compare", str(tiny_run), "--estimators", "trace", "iwae:k=3", "iwae_dreg:k=3"]
    argv += ["--repeats", "5", "--num-data", "10", "--reference-samples", "50", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "iwae_dreg(K=3)" in printed and "reference:" in printed
    out = tiny_run / "compare"
    summary = json.loads((out / "comparison.json").read_text())
    assert [r["estimator"] for r in summary["estimators"]] == [
        "trace",
        "iwae(K=3)",
        "iwae_dreg(K=3)",
    ]
    assert summary["num_data"] == 10 and summary["repeats"] == 5
    assert (out / "plots" / "snr_vs_k.png").stat().st_size > 0
    assert "| iwae(K=3) |" in (out / "comparison.md").read_text()


def test_cli_compare_train_trains_each_objective_the_same_way(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--train", "--model", "bernoulli_vae", "--data", "digits", "--out", str(out)]
    argv += ["--estimators", "trace_mean_field", "iwae:k=3", "--epochs", "2", "--no-progress"]
    argv += ["--num-samples", "20", "--max-data", "30"]
    assert main(argv) == 0
    summary = json.loads((out / "comparison.json").read_text())
    assert set(summary["runs"]) == {"trace_mean_field", "iwae(K=3)"}
    for run in summary["runs"].values():
        config = json.loads((tmp_path / run["run"] / "config.json").read_text())["config"]
        assert config["seed"] == 0 and config["epochs"] == 2
        assert run["evaluation"]["num_data"] == 30 and run["evaluation"]["num_samples"] == 20
    assert (out / "plots" / "learning_curves.png").exists()
    # Running it again resumes the finished runs instead of training them anew.
    capsys.readouterr()
    assert main(argv) == 0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["compare", "--estimators", "trace"], "a run directory or --model"),
        (["compare", "--model", "bernoulli_vae"], "give --out"),
        (["compare", "--train", "--model", "bernoulli_vae"], "needs --model and --out"),
        (["compare", "nowhere", "--estimators", "iwea"], "did you mean 'iwae'"),
    ],
)
def test_cli_compare_bad_input_exits_2(argv, words, capsys):
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_enumerated_models_compare_without_a_reference(mixture_log_px):
    vae = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    x = torch.randn(30, 1)
    c = compare_estimators(vae.model, vae.guide, x, estimators=["trace_enum", "trace"], repeats=5)
    assert c.reference is None and c.reference_kind.startswith("none (")
    # Summing the component out leaves nothing random: the value is log p(x) itself, every
    # time, and so is the gradient.
    exact = c["trace_enum"]
    assert exact.bias is None and exact.value_std < 1e-6
    assert exact.value == pytest.approx(mixture_log_px(vae, x).mean().item(), abs=1e-5)
    assert exact.gradients["model"].variance < 1e-12 < exact.gradients["model"].mean.abs().max()
    assert "trace_enum" in c["trace"].skipped


def test_cli_compare_on_a_bundled_spec_by_name(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--model", "bernoulli_vae", "--out", str(out), "--estimators", "trace"]
    assert main([*argv, "--repeats", "2", "--num-data", "5", "--reference-samples", "10"]) == 0
    assert json.loads((out / "comparison.json").read_text())["estimators"][0]["estimator"]
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert main([*argv[:3], "--out", str(notes), "--estimators", "trace"]) == 2
    assert "notes.txt: exists and is not a directory" in capsys.readouterr().err
    assert notes.read_text() == "keep me"

"""Results print as tables (str), one line (repr), Markdown (Jupyter) and plain JSON (to_dict);
compare_estimators on pairs with parameters in one program only, or in neither."""

import json
import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from pyro_vae.inference.weights import LogLikelihood
from pyro_vae.results.tables import MISSING, Table, fmt, fmt_pm, jsonable, text_table


def check_views(result, name: str) -> dict:
    """The four views of ``result`` hold no tensor, repr is one line, to_dict is strict JSON;
    returns to_dict() after a round trip through JSON."""
    text, line, markdown = str(result), repr(result), result._repr_markdown_()
    for view in (text, line, markdown):
        assert "tensor(" not in view
    assert line.startswith(f"{name}(") and "\n" not in line and len(line) < 300
    assert markdown.startswith("**") and "\n|---|" in markdown
    d = result.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    return d


# --- the shared helpers ---------------------------------------------------------------------


def test_numbers_missing_values_and_alignment():
    assert fmt(None) == fmt(math.nan) == MISSING and fmt(math.nan, "6.2f") == "     –"
    assert fmt_pm(1.23456, math.nan) == "1.235 ± –" and fmt_pm(None, 0.1) == MISSING
    lines = text_table(["", "value"], [["log p̂(x)", "-1.5"], ["ESS", "10.25"]])
    # The combining hat of p̂ takes no column: the numbers end in the same one.
    assert len({len(line.replace("\u0302", "")) for line in lines}) == 1
    assert jsonable({1: torch.tensor([1.0, math.inf, math.nan]), "k": (True, 2)}) == {
        "1": [1.0, None, None],
        "k": [True, 2],
    }
    markdown = Table("t", ["a", "b"], [["q(z|x)", 1]]).markdown()
    assert "| q(z\\|x) | 1 |" in markdown


# --- inference results ----------------------------------------------------------------------


def test_log_likelihood_table(ppca_perturbed):
    vae, x, exact, _ = ppca_perturbed
    ll = pv.log_likelihood(vae.model, vae.guide, x, num_samples=100, record_at=(10,))
    d = check_views(ll, "LogLikelihood")
    text = str(ll)
    assert f"{ll.mean:.3f} ± {ll.mean_stderr:.3f}" in text
    assert "K = 100 samples" in text and "log p̂(x), first 10" in text
    assert "k̂ > 0.7 (unreliable)" in text and "non-finite" not in text
    assert f"mean={ll.mean:.6g}" in repr(ll)
    assert f"| log p̂(x), mean ± MC stderr | {ll.mean:.3f} ± {ll.mean_stderr:.3f} |" in (
        ll._repr_markdown_()
    )
    assert d["num_data"] == 20 and d["num_samples"] == 100 and d["method"] == "is"
    assert d["log_px"] == pytest.approx(ll.mean) and d["ess_mean"] == pytest.approx(ll.ess.mean())
    assert d["khat_above_0.7"] == ll.summary()["khat_above_0.7"]
    assert d["per_datapoint"]["log_px"] == pytest.approx(ll.log_px.tolist())
    assert set(d["by_num_samples"]) == {"10", "100"}


def test_missing_and_non_finite_values_print_as_dashes_and_json_nulls():
    # One datapoint's weights all zero (log p̂ = −inf); k̂ unavailable (no weights kept).
    ll = LogLikelihood(
        torch.tensor([-2.0, -math.inf], dtype=torch.float64),
        torch.tensor([0.1, math.nan], dtype=torch.float64),
        torch.tensor([8.0, math.nan], dtype=torch.float64),
        num_samples=10,
    )
    d = check_views(ll, "LogLikelihood")
    text = str(ll)
    assert re.search(r"non-finite log p̂\(x\) +1$", text, re.MULTILINE)
    assert re.search(r"Pareto k̂, median +–$", text, re.MULTILINE)
    # The mean is over the usable datapoints, and the table says how many those are.
    assert (
        d["log_px"] == -2.0 and d["num_used"] == 1 and d["per_datapoint"]["log_px"] == [-2.0, None]
    )
    assert re.search(r"datapoints in the means +1$", text, re.MULTILINE)
    assert d["khat_above_0.7"] is None and "khat" not in d["per_datapoint"]


def test_single_sample_estimates_have_no_stderr(ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    e = pv.elbo(vae.model, vae.guide, x, num_samples=1)
    d = check_views(e, "ElboEstimate")
    assert f"{e.mean:.3f} ± –" in str(e)
    assert d["elbo_stderr"] is None and d["per_datapoint"]["stderr"] == [None] * 20
    assert d["elbo"] == pytest.approx(e.mean)


def test_elbo_gap_table(ppca_perturbed):
    vae, x, _, kl = ppca_perturbed
    g = pv.elbo_gap(vae.model, vae.guide, x, num_samples=200)
    d = check_views(g, "ElboGap")
    text = str(g)
    assert f"{g.mean:.3f} ± {g.mean_stderr:.3f}" in text
    assert f"{g.elbo.mean:.3f}" in text and f"{g.log_likelihood.mean:.3f}" in text
    assert "k̂ > 0.7" in text
    assert d["gap"] == pytest.approx(g.mean) and d["num_samples"] == d["elbo_samples"] == 200
    assert d["per_datapoint"]["gap"] == pytest.approx(g.gap.tolist())
    # The table reports the real gap: KL(q ‖ posterior), known here.
    assert abs(d["gap"] - kl.mean().item()) < 4 * d["gap_stderr"] + 0.02


def test_ais_log_likelihood_table(ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    ll = pv.log_likelihood(vae.model, vae.guide, x[:5], num_samples=4, method="ais", num_steps=5)
    d = check_views(ll, "LogLikelihood")
    assert "annealed importance sampling: K = 4 chains" in str(ll) and "5 steps" in str(ll)
    assert "HMC acceptance" in str(ll) and "method='ais'" in repr(ll)
    assert d["details"]["num_steps"] == 5 and len(d["details"]["acceptance"]) == 5
    assert d["khat_median"] is None  # k̂ needs 5 or more samples


def _hand_written_pair():
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("latent", dist.Normal(0.0, 1.0))
            pyro.sample("obs", dist.Normal(z, 0.5), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("latent", dist.Normal(0.8 * x, 0.9))

    return model, guide, torch.linspace(-2, 2, 6)


def test_gap_decomposition_table():
    model, guide, x = _hand_written_pair()
    g = pv.gap_decomposition(model, guide, x, num_samples=100, max_steps=100)
    d = check_views(g, "GapDecomposition")
    text = str(g)
    assert f"{g.amortization_gap.mean().item():.3f}" in text and "approximation_gap" in text
    assert f"{d['converged']} of 6 converged" in text
    assert d["num_data"] == 6 and d["refine_steps"] == 100
    assert d["per_datapoint"]["converged"] == g.converged.tolist()


def test_elbo_surgery_and_latent_usage_tables(ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    s = pv.elbo_surgery(vae.model, vae.guide, x, num_samples=16)
    d = check_views(s, "ElboSurgery")
    assert f"{s.mutual_information:.3f}" in str(s) and "mutual information" in str(s)
    assert f"{math.log(20):.3f}" in str(s)  # log N, which has no stderr: "–"
    assert d["mutual_information"] == pytest.approx(s.mutual_information)
    assert len(d["per_datapoint"]["kl"]) == 20
    u = pv.latent_usage(vae.model, vae.guide, x)
    d = check_views(u, "LatentUsage")
    assert "active_units={'z': 2}" in repr(u)
    assert f"{u.kl_per_dim['z'].sum().item():.3f}" in str(u)
    assert d["latents"]["z"]["active_units"] == 2 and d["threshold"] == u.threshold


def test_bdmc_table():
    model, guide, _ = _hand_written_pair()
    b = pv.bdmc(
        model, guide, num_data=4, num_samples=4, num_steps=10, data_shape=(), progress=False
    )
    d = check_views(b, "BDMC")
    assert f"{b.upper.mean().item():.3f}" in str(b) and "reverse AIS" in str(b)
    assert d["gap"] == pytest.approx(b.gap.mean().item()) and "data" not in d
    assert d["per_datapoint"]["lower"] == pytest.approx(b.lower.tolist())


# --- compare_estimators ---------------------------------------------------------------------


def test_comparison_table(ppca_perturbed):
    vae, x, exact, _ = ppca_perturbed
    c = pv.compare_estimators(
        vae.model, vae.guide, x, estimators=["trace", "iwae:k=5"], repeats=5, exact=exact
    )
    d = check_views(c, "Comparison")
    text = str(c)
    trace = c["trace"]
    assert f"{trace.value:.3f}" in text and "iwae(K=5)" in text
    assert f"{trace.gradients['guide'].snr:.2f}" in text
    assert "reference: log p(x) = " in text and "(exact)" in text and "–" not in text
    assert d["differentiated"] and d["notes"] == []
    assert d["estimators"][0]["gradients"]["guide"]["snr"] == pytest.approx(
        trace.gradients["guide"].snr
    )
    assert "| iwae(K=5) | 5 |" in c._repr_markdown_()
    check_views(trace, "EstimatorResult")
    stats = trace.gradients["model"]
    d = check_views(stats, "GradientStats")
    assert len(d["per_coordinate"]["mean"]) == stats.mean.numel() == d["coordinates"]
    assert f"{stats.snr:.3f}" in str(stats)


def test_skipped_estimators_and_no_reference_are_said_so():
    vae = pv.load("mixture_1d", data_shape=(1,), seed=0)
    c = pv.compare_estimators(
        vae.model,
        vae.guide,
        torch.randn(10, 1),
        estimators=["trace", "trace_mean_field"],
        repeats=3,
        reference_samples=None,
    )
    d = check_views(c, "Comparison")
    assert "trace_mean_field skipped: " in str(c) and "no reference" in str(c)
    skipped = d["estimators"][1]
    assert skipped["skipped"] and skipped["value"] is None and skipped["bias"] is None
    assert skipped["gradients"] == {"guide": None, "model": None}
    assert "skipped" in repr(c["trace_mean_field"])


# A linear-Gaussian model, x = Wz + ε, with a fixed linear-Gaussian guide: log p(x) and the
# ELBO are closed forms.
W = torch.tensor([[1.0, 0.5], [0.2, 1.0], [0.3, -0.4]])
SIGMA, GUIDE_SCALE = 0.5, 0.7
A = torch.tensor([[0.6, 0.1, 0.2], [0.1, 0.7, -0.3]])


def linear_gaussian(weight=None):
    def model(x):
        w = W if weight is None else weight()
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ w.T, SIGMA).to_event(1), obs=x)

    return model


def linear_guide(encoder=None):
    def guide(x):
        a = A if encoder is None else encoder()
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x @ a.T, GUIDE_SCALE).to_event(1))

    return guide


def closed_form_elbo(w, a, x):
    """Mean ELBO per datapoint: E_q log N(x; Wz, σ²I) − KL(N(Ax, s²I) ‖ N(0, I))."""
    loc = x @ a.T
    residual = ((x - loc @ w.T) ** 2).sum(-1) + GUIDE_SCALE**2 * (w**2).sum()
    expected = -0.5 * x.shape[1] * math.log(2 * math.pi * SIGMA**2) - residual / (2 * SIGMA**2)
    kl = 0.5 * (loc**2 + GUIDE_SCALE**2 - 1 - 2 * math.log(GUIDE_SCALE)).sum(-1)
    return (expected - kl).mean()


def test_a_pair_without_parameters_is_compared_without_gradients():
    x = dist.MultivariateNormal(torch.zeros(3), W @ W.T + SIGMA**2 * torch.eye(3)).sample((10,))
    exact = dist.MultivariateNormal(torch.zeros(3), W @ W.T + SIGMA**2 * torch.eye(3)).log_prob(x)
    repeats = 50
    c = pv.compare_estimators(
        linear_gaussian(),
        linear_guide(),
        x,
        estimators=["trace", "iwae:k=5", "iwae_dreg:k=5"],
        repeats=repeats,
        exact=exact,
    )
    assert not c.differentiated and "no parameters to differentiate" in c.notes[0]
    elbo = closed_form_elbo(W, A, x).item()
    for r in c.results:
        assert r.skipped is None and r.gradients == {} and r.seconds_per_step > 0
        assert r.bias == pytest.approx(r.value - exact.mean().item())
    trace = c["trace"]
    assert abs(trace.value - elbo) < 4 * trace.value_std / math.sqrt(repeats)
    assert c["iwae(K=5)"].value > trace.value
    d = check_views(c, "Comparison")
    assert all(e["gradients"] == {"guide": None, "model": None} for e in d["estimators"])
    row = next(line for line in str(c).splitlines() if line.strip().startswith("trace "))
    assert f"{trace.value:.3f}" in row and row.count("–") == 4  # variance and SNR per group
    assert "cannot be told from 0" not in str(c)  # no SNR to read


@pytest.mark.parametrize("learnable", ["model", "guide"])
def test_a_pair_with_parameters_in_one_program_reports_that_group_alone(learnable):
    x = dist.MultivariateNormal(torch.zeros(3), W @ W.T + SIGMA**2 * torch.eye(3)).sample((10,))
    if learnable == "model":
        model = linear_gaussian(lambda: pyro.param("W", W.clone()))
        guide = linear_guide()
    else:
        model = linear_gaussian()
        guide = linear_guide(lambda: pyro.param("A", A.clone()))
    c = pv.compare_estimators(
        model, guide, x, estimators=["trace_mean_field"], repeats=200, reference_samples=500
    )
    other = "guide" if learnable == "model" else "model"
    result = c["trace_mean_field"]
    assert c.differentiated
    assert c.notes == [f"the {other} has no parameters: its gradient statistics are left out"]
    assert set(result.gradients) == {learnable}
    # The group that exists has the closed-form ELBO's gradient, within its Monte Carlo error.
    w = W.clone().requires_grad_(learnable == "model")
    a = A.clone().requires_grad_(learnable == "guide")
    (exact_grad,) = torch.autograd.grad(
        closed_form_elbo(w, a, x), [w if learnable == "model" else a]
    )
    stats = result.gradients[learnable]
    assert ((stats.mean - exact_grad.reshape(-1).double()).abs() <= 4 * stats.stderr + 1e-5).all()
    d = check_views(c, "Comparison")
    gradients = d["estimators"][0]["gradients"]
    assert gradients[other] is None and gradients[learnable]["snr"] == pytest.approx(stats.snr)
    row = next(line for line in str(c).splitlines() if line.strip().startswith("trace_mean"))
    assert row.count("–") == 2 and f"{stats.snr:.2f}" in row

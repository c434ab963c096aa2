"""The estimates print as tables (str), one line (repr), Markdown (Jupyter) and plain JSON
(to_dict): LogLikelihood (importance sampling and AIS), ElboEstimate, ElboGap and BDMC."""

import math
import re

import pytest
import torch

import pyro_vae as pv
from pyro_vae.inference.weights import LogLikelihood
from tests.helpers import check_views, hand_written_pair


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


def test_bdmc_table():
    model, guide, _ = hand_written_pair()
    b = pv.bdmc(
        model, guide, num_data=4, num_samples=4, num_steps=10, data_shape=(), progress=False
    )
    d = check_views(b, "BDMC")
    assert f"{b.upper.mean().item():.3f}" in str(b) and "reverse AIS" in str(b)
    assert d["gap"] == pytest.approx(b.gap.mean().item()) and "data" not in d
    assert d["per_datapoint"]["lower"] == pytest.approx(b.lower.tolist())

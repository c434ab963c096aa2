"""Comparisons print as tables (str), one line (repr), Markdown (Jupyter) and plain JSON (to_dict):
Comparison, EstimatorResult and GradientStats; skipped estimators and a missing reference are
said so."""

import pytest
import torch

import pyro_vae as pv
from tests.helpers import check_views


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

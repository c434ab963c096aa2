"""The explanations of the gap print as tables (str), one line (repr), Markdown (Jupyter) and plain
JSON (to_dict): GapDecomposition, ElboSurgery and LatentUsage."""

import math

import pytest

import pyro_vae as pv
from tests.helpers import check_views, hand_written_pair


def test_gap_decomposition_table():
    model, guide, x = hand_written_pair()
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

"""Explaining the gap: AIS, BDMC, the approximation/amortization split, ELBO surgery, latent
usage and the latent space, against closed forms on linear-Gaussian models."""

import json
import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.inference import latents as latent_values


def exact_log_px(vae, x):
    """log p(x) of linear_gaussian in closed form: N(x; b, WWᵀ + σ²I)."""
    decoder = vae.likelihood.net.layers[0]
    W, b = decoder.weight.detach(), decoder.bias.detach()
    var = (2 * vae.likelihood.family.log_scale).exp().detach()
    return dist.MultivariateNormal(b, W @ W.T + var * torch.eye(len(b))).log_prob(x).double()


def shift_encoder(vae, by):
    """Move the guide's mean away from the posterior: a poor proposal, a real amortization gap."""
    with torch.no_grad():
        vae.inference["z"].net.layers[0].bias[:2] += by


# --- AIS and BDMC --------------------------------------------------------------------------


def test_ais_recovers_log_px_where_importance_sampling_with_a_poor_guide_cannot(correlated_ppca):
    vae, x, _ = correlated_ppca("linear_gaussian")
    x = x[:20]
    shift_encoder(vae, 2.0)
    exact = exact_log_px(vae, x)
    pyro.set_rng_seed(0)
    ais = pv.log_likelihood(vae.model, vae.guide, x, num_samples=16, method="ais", num_steps=200)
    is_ = pv.log_likelihood(vae.model, vae.guide, x, num_samples=16)
    ais_error, is_error = (ais.log_px - exact).mean().item(), (is_.log_px - exact).mean().item()
    assert abs(ais_error) < 4 * ais.mean_stderr + 0.02
    assert is_error < -1.0 and abs(is_error) > 20 * abs(ais_error)  # IS: nats below, AIS: not
    assert ais.method == "ais" and ais.details["num_steps"] == 200
    assert 0.3 < ais.details["acceptance"].mean() < 1.0  # the step size adapted to the target
    assert ais.ess.shape == (20,) and ais.khat.shape == (20,)


def test_ais_works_on_a_hand_written_pair_and_refuses_discrete_latents():
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("latent", dist.Normal(0.0, 1.0))
            pyro.sample("obs", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("latent", dist.Normal(0.3 * x, 0.5))

    x = torch.linspace(-3, 3, 9)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).double()
    pyro.set_rng_seed(0)
    ais = pv.log_likelihood(model, guide, x, num_samples=32, method="ais", num_steps=100)
    assert ((ais.log_px - exact).abs() < 4 * ais.stderr + 0.01).all()
    mixture = pv.load("mixture_1d", data_shape=(1,), seed=0)
    with pytest.raises(pv.ModelGuideError, match="latent site 'c' is discrete; AIS"):
        pv.log_likelihood(mixture.model, mixture.guide, torch.randn(5, 1), method="ais")
    with pytest.raises(
        ValueError, match="record_at, chunk_size, seed and precision are for method='is'"
    ):
        pv.log_likelihood(model, guide, x, method="ais", record_at=[10])


def test_the_fast_path_of_spec_built_pairs_equals_the_traced_one():
    for model, guide in [("hierarchical_vae", None), ("vamp_vae", None), ("bernoulli_vae", "iaf")]:
        vae = pv.load(model, guide, data_shape=(64,), seed=0)
        x = torch.rand(7, 64).round()
        latents = latent_values.continuous_latents(vae.model, vae.guide, (x,), {})
        values = latent_values.sample_latents(vae.model, vae.guide, (x,), {}, latents, 3)
        fast = latent_values.log_densities(vae.model, vae.guide, (x,), {}, latents, values)
        model_fn, guide_fn = vae.model, vae.guide
        traced = latent_values.log_densities(  # plain functions: no fast path to take
            lambda x, m=model_fn: m(x), lambda x, g=guide_fn: g(x), (x,), {}, latents, values
        )
        for a, b in (
            (fast.joint, traced.joint),
            (fast.prior, traced.prior),
            (fast.guide, traced.guide),
        ):
            assert torch.allclose(a, b, atol=1e-4), model


def test_bdmc_bounds_sandwich_the_exact_log_likelihood(correlated_ppca):
    vae, _, _ = correlated_ppca("linear_gaussian")
    shift_encoder(vae, 0.5)
    pyro.set_rng_seed(0)
    b = pv.bdmc(vae.model, vae.guide, num_data=16, num_samples=16, num_steps=300)
    exact = exact_log_px(vae, b.data)
    assert b.data.shape == (16, 5) and b.latents["z"].shape == (16, 2)
    assert (b.lower - exact < 4 * b.lower_stderr + 0.02).all()  # forward AIS: a lower bound
    assert (b.upper - exact > -4 * b.upper_stderr - 0.02).all()  # reverse AIS: an upper bound
    assert 0 < b.gap.mean() < 0.3
    with pytest.raises(ValueError, match="data_shape"):
        pv.bdmc(lambda x: vae.model(x), vae.guide, num_data=4)


# --- the gap decomposition -----------------------------------------------------------------


@pytest.mark.slow
def test_gap_decomposition_matches_the_closed_forms(correlated_ppca, diagonal_gap):
    """With the encoder moved off the posterior: the approximation gap is the diagonal family's
    ½(log det S + Σ log (S⁻¹)ᵢᵢ), the amortization gap KL(q‖post) minus it."""
    vae, x, posterior = correlated_ppca("linear_gaussian")
    x, posterior = (
        x[:32],
        dist.MultivariateNormal(posterior.loc[:32], posterior.covariance_matrix[:32]),
    )
    shift_encoder(vae, 0.7)
    pyro.set_rng_seed(0)
    g = pv.gap_decomposition(
        vae.model, vae.guide, x, num_samples=16, method="ais", num_steps=300, elbo_samples=2000
    )
    q = vae.inference["z"]({"x": x})
    q_full = dist.MultivariateNormal(q.mean, torch.diag_embed(q.variance))
    total = torch.distributions.kl_divergence(q_full, posterior).double()
    approximation = diagonal_gap(posterior)
    assert g.converged.all()
    s = g.summary()
    assert (
        abs(s["log_px"]["mean"] - exact_log_px(vae, x).mean().item())
        < 4 * s["log_px"]["mc_stderr"] + 0.01
    )
    assert (
        abs(s["approximation_gap"]["mean"] - approximation)
        < 4 * s["approximation_gap"]["mc_stderr"] + 0.01
    )
    assert abs(s["amortization_gap"]["mean"] - (total.mean() - approximation).item()) < (
        4 * s["amortization_gap"]["mc_stderr"] + 0.01
    )
    assert s["amortization_gap"]["mean"] > 0.5  # the shift costs this much
    assert "approximation_gap" in str(g)


def test_gap_decomposition_refuses_guides_it_cannot_refine():
    hierarchical = pv.load("hierarchical_vae", data_shape=(64,), seed=0)
    x = torch.rand(5, 64).round()
    with pytest.raises(pv.ModelGuideError, match="guide site 'z1' depends on another latent"):
        pv.gap_decomposition(hierarchical.model, hierarchical.guide, x, num_samples=4)
    flow = pv.load("bernoulli_vae", "iaf", data_shape=(64,), seed=0)
    with pytest.raises(pv.ModelGuideError, match="guide site 'z' is a TransformedDistribution"):
        pv.gap_decomposition(flow.model, flow.guide, x, num_samples=4)


def test_gap_decomposition_of_a_hand_written_pair():
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("latent", dist.Normal(0.0, 1.0))
            pyro.sample("obs", dist.Normal(z, 0.5), obs=x)

    def guide(x):  # the right mean, too wide: only an amortization gap (the family is exact)
        with pyro.plate("data", len(x)):
            pyro.sample("latent", dist.Normal(0.8 * x, 0.9))

    x = torch.linspace(-2, 2, 8)
    g = pv.gap_decomposition(model, guide, x, num_samples=2000)
    s = g.summary()
    assert abs(s["approximation_gap"]["mean"]) < 4 * s["approximation_gap"]["mc_stderr"] + 0.01
    # KL(N(0.8x, 0.9²) ‖ N(0.8x, 0.2)) per datapoint, the posterior being N(0.8x, 0.2).
    kl = math.log(math.sqrt(0.2) / 0.9) + 0.9**2 / (2 * 0.2) - 0.5
    assert abs(s["amortization_gap"]["mean"] - kl) < 4 * s["amortization_gap"]["mc_stderr"] + 0.01


# --- ELBO surgery and latent usage ---------------------------------------------------------


def test_elbo_surgery_splits_the_average_kl_as_closed_forms_say(ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    pyro.set_rng_seed(0)
    s = pv.elbo_surgery(vae.model, vae.guide, x, num_samples=400)
    q = vae.inference["z"]({"x": x})
    prior = dist.Normal(0.0, 1.0).expand([2]).to_event(1)
    kl = torch.distributions.kl_divergence(q, prior).mean().item()
    assert abs(s.average_kl - kl) < 4 * s.average_kl_stderr
    # The aggregate posterior is a mixture of the 20 guide Gaussians: its KL to N(0, I) by
    # brute force on a grid.
    grid = torch.linspace(-7, 7, 701)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 1, 2)
    with torch.no_grad():
        log_agg = torch.logsumexp(q.log_prob(zz), -1) - math.log(len(x))
        integrand = log_agg.exp() * (log_agg - prior.log_prob(zz[:, 0]))
    brute = (integrand.sum() * (grid[1] - grid[0]) ** 2).item()
    assert abs(s.marginal_kl - brute) < 4 * s.marginal_kl_stderr + 0.005
    assert s.mutual_information == pytest.approx(s.average_kl - s.marginal_kl, abs=1e-9)
    assert 0 < s.mutual_information <= math.log(len(x))
    assert "mutual information" in str(s)


def test_latent_usage_counts_active_units_and_the_kl_of_each_dimension(ppca_perturbed):
    vae, x, _, _ = ppca_perturbed
    u = pv.latent_usage(vae.model, vae.guide, x)
    q = vae.inference["z"]({"x": x})
    kl = torch.distributions.kl_divergence(q.base_dist, dist.Normal(0.0, 1.0)).mean(0).double()
    assert torch.allclose(u.kl_per_dim["z"], kl, atol=1e-5)
    assert u.active_units == {"z": 2}
    with torch.no_grad():  # the second dimension's mean no longer depends on x: collapsed
        vae.inference["z"].net.layers[0].weight[1] = 0
    collapsed = pv.latent_usage(vae.model, vae.guide, x)
    assert collapsed.active_units == {"z": 1} and collapsed.activity["z"][1] < 1e-12
    flows = pv.latent_usage(*_flow_prior_pair(), torch.rand(6, 64).round())
    assert "z" in flows.notes and "z" not in flows.kl_per_dim  # no Gaussian marginals of p


def _flow_prior_pair():
    vae = pv.load("flow_prior_vae", data_shape=(64,), seed=0)
    return vae.model, vae.guide


# --- the latent space ----------------------------------------------------------------------


def test_encode_decode_interpolate_and_attribute_vectors():
    vae = pv.load("hierarchical_vae", data_shape=(64,), seed=0)
    x = torch.rand(6, 64).round()
    codes = vae.encode(x)
    assert list(codes) == ["z2", "z1"] and codes["z2"].shape == (6, 16)
    path = vae.interpolate(x[:3], x[3:], steps=5)
    assert path.shape == (3, 5, 64)
    assert torch.allclose(path[:, 0], vae.decode(codes)[:3], atol=1e-6)
    assert torch.allclose(path[:, -1], vae.decode(codes)[3:], atol=1e-6)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    vectors = vae.attribute_vectors(x, labels)
    counts = torch.bincount(labels).double()
    weighted = sum(counts[c] * vectors[c]["z2"].double() for c in vectors)
    assert torch.allclose(weighted, torch.zeros(16, dtype=torch.float64), atol=1e-5)
    one = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    assert one.decode(one.encode(x)["z"]).shape == (6, 64)  # a tensor for a one-latent model


# --- pyro-vae evaluate and sample ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    pv.train(
        pv.load("bernoulli_vae", data_shape=(64,), seed=0),
        "digits",
        epochs=3,
        out=run,
        progress=False,
    )
    return run


def test_evaluate_explains_the_gap_in_its_report(digits_run, capsys):
    argv = [
        "evaluate",
        str(digits_run),
        "--num-samples",
        "100",
        "--max-data",
        "30",
        "--ais",
        "--ais-steps",
        "30",
        "--ais-samples",
        "4",
        "--decompose",
        "--surgery",
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "AIS:" in printed and "approximation" in printed and "mutual information" in printed
    e = json.loads((digits_run / "report.json").read_text())["evaluation"]
    d = e["decomposition"]
    assert d["log_px_from"] == "ais"
    total = e["ais"]["log_px"]["mean"] - e["elbo"]["mean"]
    assert d["approximation_gap"]["mean"] + d["amortization_gap"]["mean"] == pytest.approx(total)
    assert e["surgery"]["mutual_information"] <= math.log(30)
    report = (digits_run / "report.md").read_text()
    assert report.index("## In short") < report.index("| setting | value |")
    assert "approximation gap" in report.split("## In short")[1].split("| setting")[0]
    for name in ("is_vs_ais", "gap_decomposition", "surgery", "kl_per_dim"):
        assert (digits_run / e["plots"][name]).stat().st_size > 0
    arrays = np.load(digits_run / "evaluation.npz")
    assert {"ais_log_px", "elbo_refined", "approximation_gap", "amortization_gap"} <= set(arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz
    idata = arviz.from_netcdf(str(digits_run / "evaluation.nc"))
    assert idata.log_likelihood["x"].shape == (1, 1, 30)
    assert np.array_equal(idata.log_likelihood["datapoint"].values, arrays["test_index"])
    assert np.allclose(idata.log_likelihood["x"].values[0, 0], arrays["log_px"])
    assert np.allclose(idata.sample_stats["ais_log_px"].values[0, 0], arrays["ais_log_px"])


def test_evaluate_with_the_prior_as_proposal_is_the_naive_estimator(digits_run):
    naive = pv.evaluate_run(digits_run, num_samples=200, max_data=30, proposal="prior", seed=3)
    assert naive.report.proposal == "prior" and naive.setup.proposal == "prior"
    vae, config = pv.load_run(digits_run)
    dataset = pv.load_dataset("digits", binarization=config.binarization, seed=config.seed)
    rows = dataset.test_indices(30, seed=3)
    direct = pv.log_likelihood(
        vae.model,
        vae.guide,
        dataset.test[rows],
        num_samples=200,
        proposal="prior",
        record_at=[1, 10, 100],
        seed=3,
        datapoint_ids=rows,
    )
    arrays = np.load(digits_run / "evaluation.npz")
    assert np.allclose(arrays["log_px"], direct.log_px.numpy(), rtol=0, atol=1e-9)
    assert "samples from the prior (naive Monte Carlo)" in (digits_run / "report.md").read_text()


def test_sample_draws_interpolations_and_attribute_vectors(digits_run, tmp_path, capsys):
    assert main(["sample", str(digits_run), "--interpolate", "--attributes"]) == 0
    printed = capsys.readouterr().out
    for name in ("interpolations.png", "attributes.png"):
        assert name in printed and (digits_run / "plots" / name).stat().st_size > 0
    lg = tmp_path / "lg"
    pv.train(
        pv.load("linear_gaussian", data_shape=(5,), seed=0),
        "linear-gaussian",
        epochs=1,
        out=lg,
        progress=False,
        data_options={"n_train": 100, "n_test": 20},
    )
    assert main(["sample", str(lg), "--interpolate"]) == 2
    assert "is not made of images" in capsys.readouterr().err

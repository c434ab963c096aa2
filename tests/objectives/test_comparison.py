"""compare_estimators against closed forms: the unbiased estimators, the K-sample bounds, DReG,
what does not suit a pair, and pairs with parameters in one program only, or in neither."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from pyro_vae.objectives.comparison import compare_estimators, parameter_groups
from tests.helpers import check_views, closed_form_elbo

UNBIASED = ["trace", "trace_mean_field", "trace_graph", "iwae:k=1", "renyi:k=1,alpha=0.5"]


def test_unbiased_estimators_match_the_closed_form_elbo_and_its_gradient(ppca_perturbed):
    vae, x, log_px, kl = ppca_perturbed
    repeats = 400
    c = compare_estimators(
        vae.model, vae.guide, x, estimators=UNBIASED, repeats=repeats, reference_samples=None
    )
    exact = closed_form_elbo(vae, x)
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


def test_enumerated_models_compare_against_their_exact_log_likelihood(mixture_log_px):
    vae = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    x = torch.randn(30, 1)
    c = compare_estimators(vae.model, vae.guide, x, estimators=["trace_enum", "trace"], repeats=5)
    # The reference sums the component out: it is log p(x) itself.
    assert c.reference == pytest.approx(mixture_log_px(vae, x).mean().item(), abs=1e-5)
    # Summing the component out leaves nothing random: the value is log p(x) itself, every
    # time, and so is the gradient.
    exact = c["trace_enum"]
    assert abs(exact.bias) < 1e-5 and exact.value_std < 1e-6
    assert exact.value == pytest.approx(mixture_log_px(vae, x).mean().item(), abs=1e-5)
    assert exact.gradients["model"].variance < 1e-12 < exact.gradients["model"].mean.abs().max()
    assert "trace_enum" in c["trace"].skipped


# -- pairs with parameters in one program only, or in neither --------------------------------------


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


def hand_written_elbo(w, a, x):
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
    elbo = hand_written_elbo(W, A, x).item()
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
        hand_written_elbo(w, a, x), [w if learnable == "model" else a]
    )
    stats = result.gradients[learnable]
    assert ((stats.mean - exact_grad.reshape(-1).double()).abs() <= 4 * stats.stderr + 1e-5).all()
    d = check_views(c, "Comparison")
    gradients = d["estimators"][0]["gradients"]
    assert gradients[other] is None and gradients[learnable]["snr"] == pytest.approx(stats.snr)
    row = next(line for line in str(c).splitlines() if line.strip().startswith("trace_mean"))
    assert row.count("–") == 2 and f"{stats.snr:.2f}" in row

"""log_likelihood, elbo and elbo_gap against closed forms, for spec-built and hand-written pairs."""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

import pyro_vae as pv
from pyro_vae.errors import ModelGuideError
from pyro_vae.inference.elbo import elbo, elbo_gap
from pyro_vae.inference.log_likelihood import log_likelihood


def test_exact_posterior_gives_exact_weights(ppca_exact):
    vae, x, exact, kl = ppca_exact
    assert kl.abs().max() < 1e-4
    ll = log_likelihood(vae.model, vae.guide, x, num_samples=200)
    assert torch.allclose(ll.log_px, exact, atol=1e-4)
    assert torch.allclose(ll.ess, torch.full_like(ll.ess, 200.0), rtol=1e-3)
    assert ll.stderr.max() < 1e-3


def test_linear_gaussian_log_likelihood_and_gap_match_closed_form(ppca_perturbed):
    vae, x, exact, kl = ppca_perturbed
    assert kl.min() > 0.05  # the perturbed guide leaves a real gap
    ll = log_likelihood(vae.model, vae.guide, x, num_samples=5000)
    assert ((ll.log_px - exact).abs() < 4 * ll.stderr).all()
    assert (ll.khat < 0.5).all()
    gap = elbo_gap(vae.model, vae.guide, x, num_samples=5000, objective="trace_mean_field")
    # ELBO = log p(x) − KL exactly: check the ELBO estimate against it, and the gap against KL.
    assert ((gap.elbo.elbo - (exact - kl)).abs() < 4 * gap.elbo.stderr).all()
    assert ((gap.gap - kl).abs() < 4 * gap.stderr).all()


def test_mixture_log_likelihood_matches_the_sum_over_components(mixture_log_px):
    vae = pv.load("mixture_1d", data_shape=(1,), seed=0)
    x = torch.linspace(-5, 5, 15).unsqueeze(-1)
    exact = mixture_log_px(vae, x)
    ll = log_likelihood(vae.model, vae.guide, x, num_samples=3000)
    assert ((ll.log_px - exact).abs() < 4 * ll.stderr).all()
    naive = log_likelihood(vae.model, vae.guide, x, num_samples=3000, proposal="prior")
    assert ((naive.log_px - exact).abs() < 4 * naive.stderr).all()


def hand_written_pair(global_latent=False, plate_name="data"):
    """A Pyro model/guide written by hand, not from specs: z ~ N(0, 1), x | z ~ N(z, 1)."""
    loc = torch.tensor(1.0)  # KL(q ‖ p(z|x)) ≈ 1 nat: a clear rise of the K-sample bound

    def model(x):
        if global_latent:
            pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate(plate_name, len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        if global_latent:
            pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate(plate_name, len(x)):
            pyro.sample("z", dist.Normal(loc + 0.5 * x, 0.8))

    return model, guide


def test_any_pyro_pair_and_the_k_sample_bound():
    model, guide = hand_written_pair()
    x = torch.tensor([-1.0, 0.0, 2.0])
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).double()  # x ~ N(0, 2)
    ll = log_likelihood(model, guide, x, num_samples=4000)
    assert ((ll.log_px - exact).abs() < 4 * ll.stderr).all()
    # The K-sample bound: K = 1 is the ELBO estimator, and the mean rises with K.
    pyro.set_rng_seed(3)
    one = log_likelihood(model, guide, x, num_samples=1).log_px
    pyro.set_rng_seed(3)
    assert torch.allclose(one, elbo(model, guide, x, num_samples=1).elbo)
    repeats = 200
    means, errs = [], []
    for k in (1, 4, 64):
        draws = torch.stack(
            [log_likelihood(model, guide, x, num_samples=k).log_px.mean() for _ in range(repeats)]
        )
        means.append(draws.mean())
        errs.append(draws.std() / math.sqrt(repeats))
    for a, b, ea, eb in zip(means, means[1:], errs, errs[1:], strict=False):
        assert b - a > -4 * math.hypot(ea, eb)
    assert means[-1] - means[0] > 4 * math.hypot(errs[0], errs[-1])
    assert means[-1] < exact.mean() + 4 * errs[-1]


def test_bad_arguments_are_refused():
    model, guide = hand_written_pair()
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        log_likelihood(model, guide, x, num_samples=0)
    with pytest.raises(ModelGuideError, match="outside the data plate 'data'"):
        log_likelihood(*hand_written_pair(global_latent=True), x, num_samples=10)
    # Another plate name is found: the data plate is the one around the observed sites.
    assert log_likelihood(*hand_written_pair(plate_name="batch"), x, num_samples=10).num_data == 3

    def empty_guide(x):
        pass

    with pytest.raises(ModelGuideError, match="model latents without a guide site: \\['z'\\]"):
        log_likelihood(model, empty_guide, x, num_samples=10)
    with pytest.raises(ModelGuideError, match="enumerated 'sequential'ly"):
        sequential = poutine.infer_config(
            guide, lambda site: {"enumerate": "sequential"} if site["name"] == "z" else {}
        )
        log_likelihood(model, sequential, x, num_samples=10)

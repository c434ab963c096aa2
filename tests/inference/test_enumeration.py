"""Discrete latents summed out exactly: an M2-like pair (a label y, enumerated in the guide or
observed) and a finite mixture enumerated in the model, against their closed forms."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

import pyro_vae as pv

D, C, SIGMA = 3, 4, 0.5
W = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [-1.5, -1.5, 1.0]])


def model(x, y=None):
    """y ~ uniform over C classes (one-hot), z ~ N(0, I), x | y, z ~ N(z + W_y, σ²I): so
    p(x) = (1/C) Σ_y N(x; W_y, (1 + σ²) I) exactly."""
    n = x.shape[0]
    with pyro.plate("data"):  # no size, as Pyro's M2 example writes it
        z = pyro.sample("z", dist.Normal(torch.zeros(n, D), 1.0).to_event(1))
        y = pyro.sample("y", dist.OneHotCategorical(torch.ones(n, C) / C), obs=y)
        pyro.sample("x", dist.Normal(z + y @ W, SIGMA).to_event(1), obs=x)


def guide(x, y=None):
    with pyro.plate("data"):
        if y is None:
            y = pyro.sample("y", dist.OneHotCategorical(logits=-((x[:, None] - W) ** 2).sum(-1)))
        pyro.sample("z", dist.Normal(0.75 * (x - y @ W), 0.6).to_event(1))


enumerated = config_enumerate(guide)


def exact_log_px(x):
    scale = math.sqrt(1 + SIGMA**2)
    by_class = torch.stack([dist.Normal(W[c], scale).log_prob(x).sum(-1) for c in range(C)])
    return (torch.logsumexp(by_class, 0) - math.log(C)).double()


def one_hot(c, n):
    y = torch.zeros(n, C)
    y[:, c] = 1.0
    return y


@pytest.fixture
def x():
    g = torch.Generator().manual_seed(0)
    classes = torch.randint(0, C, (8,), generator=g)
    return W[classes] + torch.randn(8, D, generator=g) * math.sqrt(1 + SIGMA**2)


@pytest.mark.parametrize("q", [enumerated, guide], ids=["y enumerated", "y sampled"])
def test_log_p_x_with_the_label_summed_out_or_sampled(x, q):
    pyro.set_rng_seed(0)
    ll = pv.log_likelihood(model, q, x, num_samples=4000)
    assert ((ll.log_px - exact_log_px(x)).abs() < 4 * ll.stderr).all()
    assert ll.estimand.observed == ("x",) and ll.estimand.latents == ("z", "y")


def test_log_p_x_is_the_log_sum_over_labels_of_log_p_x_y(x):
    pyro.set_rng_seed(0)
    ll = pv.log_likelihood(model, enumerated, x, num_samples=4000)
    parts = [
        pv.log_likelihood(model, enumerated, x, one_hot(c, len(x)), num_samples=4000)
        for c in range(C)
    ]
    assert parts[0].estimand.log_p() == "log p(x, y)"
    summed = torch.logsumexp(torch.stack([p.log_px for p in parts]), 0)
    stderr = torch.stack([p.stderr for p in parts]).max(0).values
    assert ((summed - ll.log_px).abs() < 4 * torch.hypot(stderr, ll.stderr)).all()


def test_the_elbo_averages_an_enumerated_label_under_q(x):
    pyro.set_rng_seed(0)
    summed = pv.elbo(model, enumerated, x, num_samples=2000)
    sampled = pv.elbo(model, guide, x, num_samples=8000)
    assert abs(summed.mean - sampled.mean) < 4 * math.hypot(summed.mean_stderr, sampled.mean_stderr)
    # Pyro's TraceEnum_ELBO computes the same bound (its Monte Carlo error is of z alone).
    pyro_elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=2000, vectorize_particles=True)
    # Its 2000 draws are independent of ours and as many: the difference's error is √2 times ours.
    pyro_mean = -pyro_elbo.loss(model, enumerated, x) / len(x)
    assert abs(pyro_mean - summed.mean) < 4 * math.sqrt(2) * summed.mean_stderr
    # The ELBO is below log p(x), which the enumerated weights estimate.
    ll = pv.log_likelihood(model, enumerated, x, num_samples=2000)
    assert ll.mean > summed.mean + 4 * summed.mean_stderr


def test_a_mixture_enumerated_in_the_model_gives_log_p_x_exactly(mixture_log_px):
    vae = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    x = torch.linspace(-4, 4, 13)[:, None]
    ll = pv.log_likelihood(vae.model, vae.guide, x, num_samples=10)
    assert torch.allclose(ll.log_px, mixture_log_px(vae, x).double(), atol=1e-5)
    assert ll.estimand.latents == ("c",)


def test_the_estimators_that_move_latents_sum_the_label_out(x):
    pyro.set_rng_seed(0)
    ais = pv.log_likelihood(model, enumerated, x[:4], num_samples=8, method="ais", num_steps=40)
    assert ais.log_px.shape == (4,) and torch.isfinite(ais.log_px).all()
    surgery = pv.elbo_surgery(model, guide, x, num_samples=16)
    assert surgery.summed_out == ("y",) and surgery.estimand.latents == ("z",)
    many = W[torch.arange(240) % C] + torch.randn(
        240, D, generator=torch.Generator().manual_seed(4)
    )
    pyro.set_rng_seed(2)
    exact = pv.elbo_surgery(model, guide, many, num_samples=8, components=None)
    pyro.set_rng_seed(2)
    short = pv.elbo_surgery(model, guide, many, num_samples=8, components=16)
    error = short.mutual_information - exact.mutual_information
    assert not short.exact and abs(error) < 4 * short.aggregate_stderr
    assert "KL(q(z|x) ‖ p(z))" in str(surgery)
    usage = pv.latent_usage(model, guide, x)
    assert usage.conditioned_on == ("y",) and set(usage.active_units) == {"z"}
    d = pv.gap_decomposition(model, guide, x[:4], method="is", num_samples=200, max_steps=100)
    assert torch.isfinite(d.elbo_refined).all() and d.khat is not None


@pytest.mark.slow
def test_ais_and_the_decomposition_with_the_label_summed_out_are_right(x):
    exact = exact_log_px(x)
    pyro.set_rng_seed(0)
    for q in (enumerated, guide):
        ais = pv.log_likelihood(model, q, x, num_samples=16, method="ais", num_steps=300)
        assert ((ais.log_px - exact).abs() < 4 * ais.stderr).all()
    # The refined family keeps the label: per datapoint q(y) and a q(z | y) for each y; here it
    # holds the exact posterior, so the approximation gap is about 0.
    d = pv.gap_decomposition(model, guide, x, chains=16, num_steps=300, max_steps=600)
    approximation = d.stats()["approximation_gap"]
    assert abs(approximation.mean) < 4 * approximation.mc_stderr

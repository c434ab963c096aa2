"""Every result names what it estimates, derived from the pair's trace and its arguments:
log p(x), log p(x, y) with another observed site, log p(y | c) with a conditioning input, and
which prior the KL is taken against."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from pyro_vae.results.estimand import Estimand

N = 12


def plain_pair():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("obs", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, 0.8))

    return model, guide


def labelled_pair():
    """x and a label y, both observed: log p(x, y)."""

    def model(x, y):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("label", dist.Bernoulli(logits=z), obs=y)
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x, y):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2 + y / 4, 0.8))

    return model, guide


SIGMA = 0.5


def conditional_pair(prior_reads_c: bool):
    """A linear-Gaussian conditional model: z ~ N(c, 1) (or N(0, 1)), y ~ N(z + c·[not
    prior_reads_c], σ²). log p(y | c) is exact: y | c ~ N(c, 1 + σ²)."""

    def model(c, y):
        with pyro.plate("data", c.shape[0]):
            z = pyro.sample("z", dist.Normal(c if prior_reads_c else torch.zeros_like(c), 1.0))
            shift = 0.0 if prior_reads_c else c
            pyro.sample("y", dist.Normal(z + shift, SIGMA), obs=y)

    def guide(c, y):
        with pyro.plate("data", c.shape[0]):
            # Near the posterior N((c/1 + (y − shift)/σ²) / (1 + 1/σ²), 1 / (1 + 1/σ²)).
            shift = 0.0 if prior_reads_c else c
            mean_prior = c if prior_reads_c else torch.zeros_like(c)
            precision = 1 + 1 / SIGMA**2
            loc = (mean_prior + (y - shift) / SIGMA**2) / precision
            pyro.sample("z", dist.Normal(loc + 0.1, 1.1 / math.sqrt(precision)))

    return model, guide


def test_a_pair_called_with_its_data_estimates_log_p_x():
    model, guide = plain_pair()
    ll = pv.log_likelihood(model, guide, torch.randn(N), num_samples=20)
    assert ll.estimand == Estimand(observed=("x",), latents=("z",))
    assert ll.estimand.log_p() == "log p(x)" and "log p̂(x), mean" in str(ll)
    # Passed by keyword, the argument keeps its name.
    assert pv.elbo(model, guide, x=torch.randn(N), num_samples=5).estimand.observed == ("x",)


def test_another_observed_site_makes_it_log_p_x_y():
    model, guide = labelled_pair()
    x, y = torch.randn(N), torch.randint(0, 2, (N,)).float()
    gap = pv.elbo_gap(model, guide, x, y, num_samples=20)
    e = gap.estimand
    # In the order they were passed, whatever the order of the sites.
    assert e.observed == ("x", "y") and e.given == () and e.log_p() == "log p(x, y)"
    text = str(gap)
    assert "log p̂(x, y)" in text and "KL(q(z|x, y) ‖ p(z|x, y))" in text
    assert gap.to_dict()["estimand"]["observed"] == ["x", "y"]


def test_an_observed_view_of_an_argument_is_named_after_the_argument():
    def model(data):
        with pyro.plate("data", data.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("first", dist.Normal(z, 1.0), obs=data[:, 0])
            pyro.sample("second", dist.Normal(z, 1.0), obs=data[:, 1])
            pyro.sample("constant", dist.Normal(z, 1.0), obs=torch.zeros(data.shape[0]))

    def guide(data):
        with pyro.plate("data", data.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    ll = pv.log_likelihood(model, guide, torch.randn(N, 2), num_samples=5)
    assert ll.estimand.observed == ("data", "constant")


@pytest.mark.parametrize("prior_reads_c", [True, False])
def test_a_conditioning_input_makes_it_log_p_y_given_c_and_the_value_is_right(prior_reads_c):
    model, guide = conditional_pair(prior_reads_c)
    c, y = torch.randn(N), torch.randn(N) * 2
    ll = pv.log_likelihood(model, guide, c, y, num_samples=2000)
    e = ll.estimand
    assert e.observed == ("y",) and e.given == ("c",) and e.log_p() == "log p(y | c)"
    assert e.prior_given == (("c",) if prior_reads_c else ())
    exact = dist.Normal(c, math.sqrt(1 + SIGMA**2)).log_prob(y).double()
    assert ((ll.log_px - exact).abs() < 4 * ll.stderr + 1e-9).all()
    assert "log p̂(y | c)" in str(ll)
    surgery = pv.elbo_surgery(model, guide, c, y, num_samples=8)
    prior = "p(z|c)" if prior_reads_c else "p(z)"
    assert f"KL(q(z|y, c) ‖ {prior})" in str(surgery)
    usage = pv.latent_usage(model, guide, c, y, num_samples=8)
    assert f"KL against {prior}" in str(usage)


def test_spec_built_pairs_estimate_log_p_x_with_their_latents():
    vae = pv.load("hierarchical_vae", data_shape=(64,), seed=0)
    x = (torch.rand(4, 64) > 0.5).float()
    e = pv.elbo(vae.model, vae.guide, x, num_samples=2).estimand
    assert e == Estimand(observed=("x",), latents=("z2", "z1"))
    assert e.prior_kl == "KL(q(z2, z1|x) ‖ p(z2, z1))"
    many = Estimand(latents=tuple(f"z_{t}" for t in range(1, 29)))
    assert many.prior == "p(z_1, …, z_28)"
    assert Estimand.from_dict(e.to_dict()) == e

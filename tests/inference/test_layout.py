"""The data plate is found, not assumed: any name, no size, fixed subsampling; data_plate= where
several plates enclose the observed sites; errors that name the plates seen."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from pyro_vae.inference.layout import inspect_pair

N = 9


def linear_pair(plate):
    """z ~ N(0, 1), x | z ~ N(z, 1) (so x ~ N(0, 2)), the batch in the plate ``plate(x)``."""

    def model(x):
        with plate(x):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))
            pyro.sample("obs", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with plate(x):
            pyro.sample("z", dist.Normal(x / 2, 0.75))

    return model, guide


PLATES = {
    "sized 'data'": lambda x: pyro.plate("data", len(x)),
    "sizeless 'data'": lambda x: pyro.plate("data"),
    "another name, no size": lambda x: pyro.plate("z_minibatch"),
    "fixed subsample": lambda x: pyro.plate("rows", 1000, subsample=torch.arange(len(x))),
}


@pytest.mark.parametrize("plate", PLATES.values(), ids=PLATES.keys())
def test_every_estimator_finds_the_data_plate(plate):
    model, guide = linear_pair(plate)
    x = torch.linspace(-2, 2, N)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).double()
    pyro.set_rng_seed(0)
    ll = pv.log_likelihood(model, guide, x, num_samples=2000)
    assert ll.num_data == N and ((ll.log_px - exact).abs() < 4 * ll.stderr).all()
    seeded = pv.log_likelihood(model, guide, x, num_samples=2000, seed=0)
    assert ((seeded.log_px - exact).abs() < 4 * seeded.stderr).all()
    assert pv.elbo_gap(model, guide, x, num_samples=50).num_data == N
    ais = pv.log_likelihood(model, guide, x, num_samples=8, method="ais", num_steps=50)
    assert ((ais.log_px - exact).abs() < 4 * ais.stderr).all()
    assert pv.elbo_surgery(model, guide, x).num_data == N
    assert pv.latent_usage(model, guide, x).active_units == {"z": 1}
    d = pv.gap_decomposition(
        model, guide, x, num_samples=200, chains=4, num_steps=20, max_steps=100
    )
    assert d.num_data == N


def test_the_outermost_plate_around_every_observed_site_is_the_data_plate():
    def model(x):  # x: (N, 3); the pixels plate inside the data plate
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("pixels", 3, dim=-1):
            pyro.sample("obs", dist.Normal(0.0, 1.0), obs=x)

    def guide(x):
        pass

    layout = inspect_pair(model, guide, (torch.zeros(N, 3),), proposal="prior")
    assert (layout.data_plate, layout.data_dim, layout.num_data) == ("data", -2, N)
    # Named, the inner plate is taken: each pixel a datapoint.
    layout = inspect_pair(model, guide, (torch.zeros(N, 3),), proposal="prior", data_plate="pixels")
    assert (layout.data_plate, layout.num_data) == ("pixels", 3)


def test_no_plate_around_the_observed_sites_is_one_error_naming_the_plates_seen():
    def model(x):
        with pyro.plate("a", len(x)):
            pyro.sample("first", dist.Normal(0.0, 1.0), obs=x)
        with pyro.plate("b", len(x)):
            pyro.sample("second", dist.Normal(0.0, 1.0), obs=x)

    def guide(x):
        pass

    with pytest.raises(pv.ModelGuideError) as refused:
        pv.log_likelihood(model, guide, torch.zeros(N), proposal="prior")
    message = str(refused.value)
    assert "no plate encloses every observed site ('first', 'second')" in message
    assert "plates seen: 'a', 'b'" in message and "\n" not in message
    with pytest.raises(pv.ModelGuideError, match="data_plate='c' does not enclose"):
        inspect_pair(model, guide, (torch.zeros(N),), proposal="prior", data_plate="c")


def test_a_plate_that_subsamples_at_random_is_refused():
    def model(x):
        with pyro.plate("data", len(x), subsample_size=3) as rows:
            pyro.sample("obs", dist.Normal(0.0, 1.0), obs=x[rows])

    with pytest.raises(pv.ModelGuideError, match="subsamples at random"):
        pv.log_likelihood(model, lambda x: None, torch.zeros(N), proposal="prior")


def test_a_global_latent_is_refused_naming_the_data_plate():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("batch"):
            pyro.sample("obs", dist.Normal(mu, 1.0).expand([len(x)]), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(pv.ModelGuideError, match="outside the data plate 'batch'"):
        pv.log_likelihood(model, guide, torch.zeros(N))


def test_every_estimator_takes_the_data_plate_by_name():
    def model(x):  # each pixel a datapoint: the inner plate named
        with pyro.plate("images", x.shape[0], dim=-2), pyro.plate("pixels", 3, dim=-1):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("obs", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("images", x.shape[0], dim=-2), pyro.plate("pixels", 3, dim=-1):
            pyro.sample("z", dist.Normal(x / 2, 0.75))

    x = torch.randn(1, 3)
    for estimate in (pv.log_likelihood, pv.elbo, pv.elbo_gap):
        assert estimate(model, guide, x, num_samples=20, data_plate="pixels").num_data == 3
    # The estimators that move latents take latents in the data plate alone.
    with pytest.raises(pv.ModelGuideError, match="latents in the data plate 'pixels' alone"):
        pv.elbo_surgery(model, guide, x, data_plate="pixels")

"""When trace_mean_field applies: it agrees with trace in expectation, with less noise, and it
refuses the pairs it cannot estimate."""

import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pyro_vae as pv
from pyro_vae.objectives.registry import ObjectiveChoice
from tests.helpers import SPECS


def test_mean_field_objective_refuses_what_it_cannot_do():
    mixture = pv.load("mixture_1d", data_shape=(1,))
    with pytest.raises(pv.SpecError, match="latent.c.family: objective 'trace_mean_field' needs"):
        ObjectiveChoice("trace_mean_field").build(mixture)
    ObjectiveChoice("trace").build(mixture)
    vae = pv.load("hierarchical_vae", SPECS / "bottom_up.toml", data_shape=(64,))
    with pytest.raises(pv.SpecError, match="bottom_up.toml: latent.z2.given: .*before 'z1'"):
        ObjectiveChoice("trace_mean_field").build(vae)


def test_trace_and_mean_field_agree_in_expectation():
    """Both estimate the same ELBO; their means over repeats agree within 4 standard errors."""
    vae = pv.load("linear_gaussian", data_shape=(5,))
    x = pv.load_dataset("linear-gaussian").test[:50]
    repeats, particles = 200, 20

    def draws(elbo_class):
        elbo = elbo_class(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
        with torch.no_grad():
            return torch.tensor([-elbo.loss(vae.model, vae.guide, x) for _ in range(repeats)])

    a, b = draws(Trace_ELBO), draws(TraceMeanField_ELBO)
    stderr = (a.var() / repeats + b.var() / repeats).sqrt()
    assert (a.mean() - b.mean()).abs() < 4 * stderr
    assert b.var() < a.var()  # the analytic KL removes part of the noise

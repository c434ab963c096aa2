"""A model that cannot take a particle dimension: its particles are copies of the data rows, the
same estimates in distribution, announced once, used by every estimator."""

import warnings
import weakref

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from pyro_vae.inference import layout as layout_module
from pyro_vae.inference.layout import inspect_pair

SIGMA = 0.5
W = torch.tensor([[1.0, 0.0], [0.5, 1.0], [0.3, -0.2]])  # x = W z + noise: 2 latents, 3 pixels


def model(x):
    n = x.shape[0]
    with pyro.plate("data", n):
        z = pyro.sample("z", dist.Normal(torch.zeros(n, 2), 1.0).to_event(1))
        loc = z.reshape(n, 2) @ W.T  # a particle dimension does not fit in (n, 2)
        pyro.sample("x", dist.Normal(loc, SIGMA).to_event(1), obs=x)


def guide(x):
    n = x.shape[0]
    with pyro.plate("data", n):
        pyro.sample("z", dist.Normal(0.6 * x[:, :2], 0.7).to_event(1))


def exact_log_px(x):
    cov = W @ W.T + SIGMA**2 * torch.eye(3)
    return dist.MultivariateNormal(torch.zeros(3), cov).log_prob(x).double()


@pytest.fixture
def x():
    return torch.randn(12, 3, generator=torch.Generator().manual_seed(0)) * 1.3


def test_the_pair_is_found_not_to_broadcast_and_it_is_said_once(x, monkeypatch):
    monkeypatch.setattr(layout_module, "_ANNOUNCED", weakref.WeakSet())  # as in a new process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layout = inspect_pair(model, guide, (x,))
        inspect_pair(model, guide, (x,))
    assert not layout.vectorized and "RuntimeError" in layout.not_vectorized
    said = [w for w in caught if "does not run with a particle dimension" in str(w.message)]
    assert len(said) == 1  # once per process and model function


def test_log_p_x_through_replicated_rows_is_right(x):
    exact = exact_log_px(x)
    pyro.set_rng_seed(0)
    ll = pv.log_likelihood(model, guide, x, num_samples=3000)
    assert ll.particles == "replicated" and "K copies of the data rows" in str(ll)
    assert ((ll.log_px - exact).abs() < 4 * ll.stderr).all()
    seeded = pv.log_likelihood(model, guide, x, num_samples=3000, seed=1)
    assert ((seeded.log_px - exact).abs() < 4 * seeded.stderr).all()
    # Each datapoint from its own stream: the same numbers in any batch.
    alone = pv.log_likelihood(model, guide, x[3:5], num_samples=3000, seed=1, datapoint_ids=[3, 4])
    assert torch.equal(alone.log_px, seeded.log_px[3:5])


def test_every_estimator_takes_replicated_rows(x):
    exact = exact_log_px(x)
    pyro.set_rng_seed(0)
    gap = pv.elbo_gap(model, guide, x, num_samples=500)
    assert gap.elbo.particles == "replicated" and gap.mean > 4 * gap.mean_stderr
    ais = pv.log_likelihood(model, guide, x, num_samples=16, method="ais", num_steps=60)
    assert ((ais.log_px - exact).abs() < 4 * ais.stderr).all()
    d = pv.gap_decomposition(model, guide, x, method="is", num_samples=200, max_steps=100)
    assert d.num_data == len(x) and torch.isfinite(d.elbo_refined).all()
    s = pv.elbo_surgery(model, guide, x, num_samples=16)
    assert 0 <= s.mutual_information <= s.log_num_data + 4 * s.mutual_information_stderr
    _the_shortcut_errs_by_its_standard_error(model, guide)
    assert pv.latent_usage(model, guide, x).active_units == {"z": 2}
    # Pyro's estimators loop over their particles; ours replicate the rows.
    c = pv.compare_estimators(
        model, guide, x, estimators=["trace:k=5", "iwae:k=5"], repeats=3, exact=exact
    )
    assert not c["trace(K=5)"].skipped and c["iwae(K=5)"].value > c["trace(K=5)"].value


def test_compare_loops_pyros_particles_as_the_reference_ran(x):
    c = pv.compare_estimators(
        model, guide, x, estimators=["trace:k=5"], repeats=3, reference_samples=200
    )
    assert not c["trace(K=5)"].skipped and c.reference_kind == "log_likelihood K=200"


def _the_shortcut_errs_by_its_standard_error(model, guide, rows=300, components=16):
    """ELBO surgery's aggregate posterior from a few random components against the exact sum
    on the same draws, for a pair only the traced densities serve."""
    x = torch.randn(rows, 3, generator=torch.Generator().manual_seed(3)) * 1.3
    found = []
    for m in (None, components):
        pyro.set_rng_seed(1)
        found.append(pv.elbo_surgery(model, guide, x, num_samples=8, components=m))
    exact, short = found
    assert not short.exact and short.aggregate_stderr > 0
    error = short.mutual_information - exact.mutual_information
    assert abs(error) < 4 * short.aggregate_stderr

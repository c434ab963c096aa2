"""The Gumbel-softmax / Concrete relaxation (``relaxed:temperature=τ``,
pyro_vae.objectives.relaxed): on a small discrete pair written by hand, its value and gradient
are unbiased for the relaxed ELBO (computed by quadrature over the uniform noise) and biased for
the discrete one; at saturating logits its densities are those of logit space, where torch's
relaxed Bernoulli is not; one-hot categorical latents of a hand-written pair and the integer
codes of a spec-built one train (its nets read vectors); a hand-written integer categorical is
refused in one line."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pyro_vae as pv
from pyro_vae.model.relaxing import vector_categories
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.objectives.relaxed import LogitConcrete, Relaxation
from tests.objectives.two_bit_pair import (
    PARAMS,
    X,
    exact_bound,
    flat_gradient,
    gradient_draws,
    guide,
    model,
    params,
)

TAU = 0.5
DRAWS = 2000


def _logit_density(logits, y, tau):
    d = logits - tau * y
    return math.log(tau) + d - 2 * F.softplus(d)


def relaxed_bound(tau: float, grid: int = 400) -> torch.Tensor:
    """The relaxed ELBO of the two-bit pair, summed over X: the midpoint rule over the
    uniform noise u of both bits (the integrand is bounded and smooth in u)."""
    w, prior, a, b = (pyro.param(n) for n in PARAMS)
    u = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    u = torch.cartesian_prod(u, u).float()  # (grid², 2)
    noise = u.log() - (-u).log1p()
    guide_logits = (a + b * X[:, None, None]).expand(len(X), 1, 2)
    y = (guide_logits + noise) / tau  # (N, grid², 2)
    log_ratio = _logit_density(prior, y, tau) - _logit_density(guide_logits, y, tau)
    log_lik = dist.Normal((torch.sigmoid(y) * w).sum(-1), 1.0).log_prob(X[:, None])
    return (log_ratio.sum(-1) + log_lik).mean(-1).sum()


def test_the_relaxed_gradient_and_value_are_unbiased_for_the_relaxed_elbo():
    params()
    exact = flat_gradient(relaxed_bound(TAU))
    elbo = ObjectiveChoice.parse(f"relaxed:temperature={TAU}").build()
    pyro.set_rng_seed(0)
    draws = gradient_draws(lambda: elbo.differentiable_loss(model, guide, X), DRAWS)
    mean, stderr = draws.mean(0), draws.std(0) / math.sqrt(DRAWS)
    assert ((mean - exact).abs() < 4 * stderr).all(), (mean, exact, stderr)
    # Biased for the discrete ELBO's gradient: far more than the stderr in some coordinate.
    assert ((mean - flat_gradient(exact_bound(X, 1))).abs() > 6 * stderr).any()
    pyro.set_rng_seed(1)
    values = torch.tensor([-elbo.loss(model, guide, X) for _ in range(DRAWS)])
    bound = relaxed_bound(TAU).item()
    assert abs(values.mean().item() - bound) < 4 * values.std().item() / math.sqrt(DRAWS)


def _logit_space_pair(tau):
    """The two-bit pair relaxed by hand in logit space: what the relaxation must equal."""

    def relaxed_model(x):
        w, prior = pyro.param("w"), pyro.param("prior_logits")
        with pyro.plate("rows", len(x)):
            y = pyro.sample("code", LogitConcrete(torch.tensor(tau), logits=prior).to_event(1))
            pyro.sample("obs", dist.Normal((torch.sigmoid(y) * w).sum(-1), 1.0), obs=x)

    def relaxed_guide(x):
        logits = pyro.param("a") + pyro.param("b") * x[:, None]
        with pyro.plate("rows", len(x)):
            pyro.sample("code", LogitConcrete(torch.tensor(tau), logits=logits).to_event(1))

    return relaxed_model, relaxed_guide


def _torch_relaxed_pair(tau):
    """The same with torch's RelaxedBernoulli, whose density is taken at the squashed value."""

    def torch_model(x):
        w, prior = pyro.param("w"), pyro.param("prior_logits")
        with pyro.plate("rows", len(x)):
            h = pyro.sample(
                "code", dist.RelaxedBernoulli(torch.tensor(tau), logits=prior).to_event(1)
            )
            pyro.sample("obs", dist.Normal((h * w).sum(-1), 1.0), obs=x)

    def torch_guide(x):
        logits = pyro.param("a") + pyro.param("b") * x[:, None]
        with pyro.plate("rows", len(x)):
            pyro.sample("code", dist.RelaxedBernoulli(torch.tensor(tau), logits=logits).to_event(1))

    return torch_model, torch_guide


def test_saturated_draws_are_scored_in_logit_space():
    params()
    store = pyro.get_param_store()  # σ(y) rounds to exactly 1 and 0, against the prior's pull
    store["a"], store["prior_logits"] = torch.tensor([40.0, -40.0]), torch.tensor([-40.0, 40.0])
    tau = 0.05
    relaxed = ObjectiveChoice.parse(f"relaxed:temperature={tau}").build()
    trace = pyro.infer.Trace_ELBO()
    losses = []
    for pair in ((model, guide), _logit_space_pair(tau), _torch_relaxed_pair(tau)):
        pyro.set_rng_seed(4)
        estimator = relaxed if pair[0] is model else trace
        losses.append(estimator.loss(*pair, X))
    ours, by_hand, torchs = losses
    assert math.isfinite(ours) and ours == pytest.approx(by_hand, rel=1e-5, abs=1e-3)
    assert abs(torchs - by_hand) > 100  # the squashed value lost y: the check can fail


def test_relaxed_settings_and_what_cannot_be_relaxed_are_refused_in_one_line():
    assert ObjectiveChoice.parse("relaxed").options == {"temperature": 0.5}
    with pytest.raises(pv.PyroVaeError, match="option temperature: must be > 0, got 0"):
        ObjectiveChoice.parse("relaxed:temperature=0")
    gaussian = pv.load("gaussian_vae", data_shape=(8,), seed=0)
    with pytest.raises(pv.SpecError, match="every guide site is reparameterized already"):
        ObjectiveChoice.parse("relaxed").build(gaussian)
    enumerated = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    with pytest.raises(pv.SpecError, match="latent.c.family: an enumerated latent is summed"):
        ObjectiveChoice.parse("relaxed").build(enumerated)

    def integer_model(x):
        with pyro.plate("items", len(x)):
            c = pyro.sample("c", dist.Categorical(logits=torch.zeros(3)))
            pyro.sample("x", dist.Normal(torch.tensor([-1.0, 0.0, 1.0])[c], 1.0), obs=x)

    def integer_guide(x):
        with pyro.plate("items", len(x)):
            pyro.sample("c", dist.Categorical(logits=torch.zeros(len(x), 3)))

    with pytest.raises(pv.PyroVaeError, match="site 'c' is a Categorical with integer values"):
        ObjectiveChoice.parse("relaxed").build().loss(integer_model, integer_guide, X)


class _OneHotMixture(nn.Module):
    """A mixture whose component is a one-hot categorical latent, in a plate named "items"."""

    def __init__(self):
        super().__init__()
        self.locs = nn.Parameter(torch.tensor([-1.0, 0.0, 1.0]))
        self.encoder = nn.Linear(1, 3)

    def model(self, x):
        with pyro.plate("items", x.shape[0]):
            c = pyro.sample("c", dist.OneHotCategorical(logits=torch.zeros(x.shape[0], 3)))
            pyro.sample("x", dist.Normal(c @ self.locs, 0.7), obs=x[:, 0])

    def guide(self, x):
        with pyro.plate("items", x.shape[0]):
            pyro.sample("c", dist.OneHotCategorical(logits=self.encoder(x)))


def test_a_one_hot_categorical_latent_trains_relaxed():
    torch.manual_seed(0)
    pair = _OneHotMixture()
    result = pv.train(pair, "mixture-1d", objective="relaxed:temperature=0.5", epochs=5,
                      lr=0.05, progress=False)  # fmt: skip
    elbos = [r["test_elbo"] for r in result.history]  # the discrete ELBO
    assert all(math.isfinite(e) for e in elbos) and elbos[-1] > elbos[0] + 0.5
    assert pair.locs.max() - pair.locs.min() > 3.0  # the components spread toward −4 … 3.5


def test_a_spec_built_categorical_reads_one_hot_vectors_as_its_codes():
    """At a vertex of the simplex the relaxed model's nets (here a table) give exactly what the
    integer code gives, observed or latent."""
    vae = pv.load("mixture_1d", "mixture_1d", data_shape=(1,), seed=0)
    x = torch.tensor([[-3.0], [0.2], [2.5]])
    codes = torch.tensor([0, 2, 1])
    discrete = pyro.poutine.trace(pyro.poutine.condition(vae.model, {"c": codes})).get_trace(x)
    with vector_categories():
        relaxed_model = Relaxation(0.5, coded=True)(vae.model)
        vertices = F.one_hot(codes, 3).float()
        conditioned = pyro.poutine.condition(relaxed_model, {"c": vertices})
        relaxed_trace = pyro.poutine.trace(conditioned).get_trace(x)
    expected = discrete.nodes["x"]["fn"].log_prob(x)
    assert torch.allclose(relaxed_trace.nodes["x"]["fn"].log_prob(x), expected)


def test_a_spec_built_categorical_latent_trains_relaxed():
    vae = pv.load("mixture_1d", "mixture_1d", data_shape=(1,), seed=0)
    x = pv.load_dataset("mixture-1d").test[:500]
    before = pv.elbo(vae.model, vae.guide, x, num_samples=20, seed=0)
    pv.train(vae, "mixture-1d", objective="relaxed:temperature=0.5", epochs=4, progress=False)
    after = pv.elbo(vae.model, vae.guide, x, num_samples=20, seed=0)  # the discrete ELBO
    stderr = math.hypot(before.mean_stderr, after.mean_stderr)
    assert after.mean - before.mean > 4 * stderr, (before.mean, after.mean)


def test_m2_trains_relaxed_with_its_labels_one_hot(tmp_path):
    """The semi-supervised M2: y is observed on the labelled batches (one-hot while relaxed,
    in the model's site and in the guide's nets) and relaxed on the others."""
    vae = pv.load("ss_vae", data_shape=(64,), seed=0)
    x = pv.load_dataset("digits", binarization="static").test[:4]
    labels = torch.tensor([3, 1, 4, 1])
    elbo = ObjectiveChoice.parse("relaxed").build(vae)
    for given in (labels, torch.full((4,), -1)):  # labelled rows, then rows without a label
        assert math.isfinite(elbo.loss(vae.model, vae.guide, x, given))
    result = pv.train(vae, "digits", data_options={"labelled": 50}, objective="relaxed",
                      epochs=2, progress=False)  # fmt: skip
    elbos = [r["test_elbo"] for r in result.history]
    assert all(math.isfinite(e) for e in elbos) and elbos[-1] > elbos[0]

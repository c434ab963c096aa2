"""Conditional and partially observed models declared in TOML, checked against closed forms:
a conditional linear-Gaussian model (log p(x | c) exact) and a finite mixture whose component
is observed on some rows (log p(x, c) there, log p(x) elsewhere)."""

import math

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.spec.parse import parse_guide, parse_model

CONDITIONAL_LINEAR_GAUSSIAN = """
[input.c]
dim = 2

[latent.z]
family = "normal"
dim = 2
scale = 0.8
given = ["c"]
net = { kind = "linear" }

[observed.x]
family = "normal"
scale = 0.5
given = ["z", "c"]
net = { kind = "linear" }
"""

CONDITIONAL_GUIDE = """
[latent.z]
family = "diagonal_normal"
given = ["x", "c"]
net = { kind = "linear" }
"""


def _linear(node):
    layer = node.net.layers[-1]
    return layer.weight.detach(), layer.bias.detach()


def exact_log_p_x_given_c(vae, x, c):
    """x | c ~ N(W_z (A c + a) + W_c c + b, 0.64 W_z W_zᵀ + 0.25 I)."""
    (a_w, a_b), (w, b) = _linear(vae.generative["z"]), _linear(vae.generative["x"])
    w_z, w_c = w[:, :2], w[:, 2:]
    mean = (c @ a_w.T + a_b) @ w_z.T + c @ w_c.T + b
    cov = 0.64 * w_z @ w_z.T + 0.25 * torch.eye(x.shape[1])
    return torch.distributions.MultivariateNormal(mean, cov).log_prob(x)


@pytest.fixture
def conditional():
    pyro.clear_param_store()
    torch.manual_seed(0)
    model = parse_model(CONDITIONAL_LINEAR_GAUSSIAN, "cond.toml")
    return pv.LatentModel(model, parse_guide(CONDITIONAL_GUIDE, "g.toml"), {"x": (3,), "c": (2,)})


def test_conditional_linear_gaussian_log_p_x_given_c_is_exact(conditional):
    torch.manual_seed(1)
    c = torch.randn(8, 2)
    x = conditional.sample(8, given={"c": c}, mean=False)
    exact = exact_log_p_x_given_c(conditional, x, c)
    ll = pv.log_likelihood(
        conditional.model, conditional.guide, x, c, num_samples=20000, proposal="prior", seed=0
    )
    assert ll.estimand.log_p() == "log p(x | c)"
    err = (ll.log_px - exact).abs()
    assert bool((err < 4 * ll.stderr + 1e-3).all()), (err, ll.stderr)
    bound = pv.elbo(conditional.model, conditional.guide, x, c, num_samples=2000, seed=0)
    assert float(bound.elbo.mean()) < float(exact.mean())


def test_conditional_pair_names_its_arguments_and_needs_its_input(conditional):
    assert conditional.argument_names == ("x", "c")
    with pytest.raises(TypeError, match="x, c"):
        conditional.model(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"inputs \['c'\]"):
        conditional.sample(2)


MIXTURE = """
[latent.c]
family = "categorical"
categories = 3
weights = [0.2, 0.3, 0.5]
observed = "partial"
data = "labels"

[observed.x]
family = "normal"
scale = "net"
given = ["c"]
net = { kind = "table" }
"""

ENUMERATED_BY_MODEL = '[latent.c]\nfamily = "enumerate"\n'
ENUMERATED_BY_GUIDE = """
[latent.c]
family = "categorical"
given = ["x"]
net = { kind = "mlp", hidden = [8] }
enumerate = "parallel"
"""


def _mixture_terms(vae, x):
    """log π_c + log N(x; μ_c, σ_c) for every c: (N, 3)."""
    table = vae.generative["x"]
    rows = [table(dict(c=torch.full((x.shape[0],), k))).log_prob(x) for k in range(3)]
    return torch.tensor([0.2, 0.3, 0.5]).log() + torch.stack(rows, -1)


@pytest.mark.parametrize("guide", [ENUMERATED_BY_MODEL, ENUMERATED_BY_GUIDE])
def test_partially_observed_mixture_is_exact_on_labelled_and_unlabelled_rows(guide):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = pv.LatentModel(parse_model(MIXTURE, "mix.toml"), parse_guide(guide, "g.toml"), (1,))
    assert vae.argument_names == ("x", "c")
    x = torch.randn(10, 1) * 2
    labels = torch.randint(0, 3, (10,))
    terms = _mixture_terms(vae, x)
    unlabelled = pv.log_likelihood(vae.model, vae.guide, x, num_samples=4, seed=0)
    assert unlabelled.estimand.log_p() == "log p(x)"
    assert torch.allclose(unlabelled.log_px.float(), terms.logsumexp(-1), atol=1e-4)
    missing = torch.full((10,), -1)
    also = pv.log_likelihood(vae.model, vae.guide, x, missing, num_samples=4, seed=0)
    assert torch.allclose(also.log_px, unlabelled.log_px)
    labelled = pv.log_likelihood(vae.model, vae.guide, x, labels, num_samples=4, seed=0)
    assert labelled.estimand.log_p() == "log p(x, c)"
    exact = terms.gather(-1, labels[:, None])[:, 0]
    assert torch.allclose(labelled.log_px.float(), exact, atol=1e-4)


def test_a_call_mixing_labelled_and_unlabelled_rows_is_refused():
    vae = pv.LatentModel(
        parse_model(MIXTURE, "mix.toml"), parse_guide(ENUMERATED_BY_GUIDE, "g.toml"), (1,)
    )
    with pytest.raises(ValueError, match="'c': this call mixes rows"):
        vae.model(torch.zeros(2, 1), torch.tensor([0, -1]))


def test_enumerated_guide_site_trains_with_trace_enum_and_sums_over_q():
    """TraceEnum's ELBO with q(c | x) enumerated: Σ_c q(c|x) [log p(x, c) − log q(c|x)]."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = pv.LatentModel(
        parse_model(MIXTURE, "mix.toml"), parse_guide(ENUMERATED_BY_GUIDE, "g.toml"), (1,)
    )
    x = torch.randn(6, 1)
    with torch.no_grad():
        q = vae.inference["c"]({"x": x}).probs
        expected = (q * (_mixture_terms(vae, x) - q.log())).sum()
        loss = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1).loss(vae.model, vae.guide, x)
    assert math.isclose(-loss, float(expected), rel_tol=1e-5)

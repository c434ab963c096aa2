"""Guide families beyond the diagonal Gaussian: full_normal, low_rank_normal, iaf; and enumerate,
whose discrete latents are summed out exactly with TraceEnum_ELBO.

On a linear-Gaussian model whose exact posterior is correlated, a guide trained alone (the model
held at its true parameters) reaches the posterior when the family contains it, and stays at the
closed-form approximation gap when it does not. A guide family that samples says how many values
it holds.
"""

import textwrap
import warnings

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F

import pyro_vae as pv
from pyro_vae.model.families import MIN_SCALE
from pyro_vae.model.guide_families import GUIDE_FAMILIES, FullNormal, register_guide_family
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.spec.parse import parse_guide
from tests.helpers import exact_log_px

D, LATENT, SIGMA = 5, 2, 0.5
MLP = '"mlp", hidden = [32]'
FAMILIES = {
    "diagonal_normal": "",
    "full_normal": "",
    "low_rank_normal": "rank = 1",
    "iaf": "flows = 2\nhidden = [16]\ncontext = 8",
}


def guide_spec(tmp_path, family, net='"linear"', options=None):
    path = tmp_path / f"{family}.toml"
    path.write_text(
        textwrap.dedent(f"""
        [latent.z]
        family = "{family}"
        {FAMILIES[family] if options is None else options}
        given = ["x"]
        net = {{ kind = {net} }}
    """)
    )
    return path


def fit_guide(vae, x, steps=1500):
    """Train the guide alone with the analytic-KL ELBO, the model held fixed."""
    elbo = ObjectiveChoice("trace", 16).build(vae)
    optimizer = torch.optim.Adam(vae.inference.parameters(), lr=0.02)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        optimizer.zero_grad()
        elbo.differentiable_loss(vae.model, vae.guide, x).backward()
        optimizer.step()
        scheduler.step()


def posterior_kl(vae, x, posterior, samples=4000):
    """Mean KL(q(z|x) ‖ p(z|x)) per datapoint: closed form for Gaussians, else Monte Carlo."""
    with torch.no_grad():
        q = vae.inference["z"]({"x": x})
        if not isinstance(q, dist.TransformedDistribution):
            q = (
                q
                if isinstance(q, dist.MultivariateNormal | dist.LowRankMultivariateNormal)
                else (dist.MultivariateNormal(q.mean, torch.diag_embed(q.variance)))
            )
            return torch.distributions.kl_divergence(q, posterior).mean().item(), 0.0
        z = q.sample((samples,))
        terms = q.log_prob(z) - posterior.log_prob(z)
        per_point = terms.mean(0)
        return per_point.mean().item(), (terms.var(0) / samples).sum().sqrt().item() / len(x)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_trained_guide_reaches_the_posterior_its_family_contains(
    tmp_path, family, correlated_ppca, diagonal_gap
):
    vae, x, posterior = correlated_ppca(
        guide_spec(tmp_path, family, MLP if family == "iaf" else '"linear"')
    )
    fit_guide(vae, x)
    kl, stderr = posterior_kl(vae, x, posterior)
    best_diagonal = diagonal_gap(posterior)
    assert best_diagonal > 0.3  # the posterior is strongly correlated
    if family == "diagonal_normal":  # the approximation gap of the family, in closed form
        assert kl == pytest.approx(best_diagonal, abs=0.005)
    else:  # the posterior is in the family (the flows, with ReLU networks, come within 1e-3)
        assert kl < 0.01 + 4 * stderr


def test_full_and_low_rank_guides_hold_the_exact_posterior(tmp_path, correlated_ppca):
    """With the encoder set to the closed-form posterior, the weights are constant: log p̂ is
    exact with any K and the ESS is K."""
    for family in ("full_normal", "low_rank_normal"):
        vae, x, posterior = correlated_ppca(guide_spec(tmp_path, family))
        node = vae.inference["z"]
        # The posterior mean is affine in x: recover the map by least squares.
        W_enc = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1)], 1), posterior.loc).solution
        S = posterior.covariance_matrix[0]
        with torch.no_grad():
            layer = node.net.layers[0]
            layer.weight.zero_()
            layer.bias.zero_()
            layer.weight[:LATENT] = W_enc[:D].T
            layer.bias[:LATENT] = W_enc[D]
            if family == "full_normal":
                L = torch.linalg.cholesky(S)
                layer.bias[LATENT : 2 * LATENT] = torch.log(torch.expm1(L.diagonal() - 1e-4))
                layer.bias[2 * LATENT :] = L[1, 0]
            else:  # F Fᵀ + diag(d) = S, F = (f1, f2): f1 f2 = S12, d = diag(S) − f² > 0
                rho2 = S[0, 1] ** 2 / (S[0, 0] * S[1, 1])
                f1 = torch.sqrt(S[0, 0] * (1 + rho2) / 2)
                f = torch.stack([f1, S[0, 1] / f1])
                d = S.diagonal() - f**2
                layer.bias[LATENT : 2 * LATENT] = f
                layer.bias[2 * LATENT :] = torch.log(torch.expm1(d.sqrt() - 1e-4))
        assert posterior_kl(vae, x, posterior)[0] < 1e-5, family
        ll = pv.log_likelihood(vae.model, vae.guide, x, num_samples=100)
        assert torch.allclose(ll.log_px, exact_log_px(vae, x), atol=1e-4), family
        assert (ll.ess > 99.9).all(), family


@pytest.mark.parametrize(
    "family, body, key, words",
    [
        ("low_rank_normal", "", "latent.z.rank", "required key is missing"),
        ("low_rank_normal", "rank = 0", "latent.z.rank", "expected a positive integer, got 0"),
        ("iaf", "flows = 0", "latent.z.flows", "expected a positive integer, got 0"),
        ("iaf", "flow = 2", "latent.z.flow", "unknown key; did you mean 'flows'?"),
        ("iaf", "hidden = []", "latent.z.hidden", "expected a non-empty list"),
        ("iaf", "hidden = [16]", "latent.z.hidden", "at least dim = 50, got [16]"),
        ("diagonal_normal", "rank = 2", "latent.z.rank", "unknown key"),
    ],
)
def test_bad_guide_family_options_name_the_key(tmp_path, family, body, key, words):
    path = tmp_path / "g.toml"
    net = 'net = { kind = "mlp", hidden = [8] }'
    path.write_text(f'[latent.z]\nfamily = "{family}"\n{body}\ngiven = ["x"]\n{net}\n')
    with pytest.raises(pv.SpecError) as caught:
        pv.load("bernoulli_vae", path, data_shape=(64,))
    assert str(caught.value).startswith(f"{path}: {key}: ") and words in str(caught.value)


def test_unconditional_guides_of_every_family_are_learned_parameters(tmp_path):
    for family, options in FAMILIES.items():
        path = tmp_path / "u.toml"
        path.write_text(f'[latent.z]\nfamily = "{family}"\n{options}\n')
        vae = pv.load("linear_gaussian", path, data_shape=(D,), seed=0)
        x = torch.randn(7, D)
        trace = pyro.poutine.trace(vae.guide).get_trace(x)
        assert trace.nodes["z"]["value"].shape == (7, LATENT), family
        assert sum(p.numel() for p in vae.inference.parameters()) > 0
        ObjectiveChoice("trace").build(vae).differentiable_loss(vae.model, vae.guide, x).backward()


def test_a_sampled_guide_family_cannot_be_registered_without_a_count():
    with pytest.raises(ValueError, match="needs a count"):
        register_guide_family("uncounted", {"real"})
    assert "uncounted" not in GUIDE_FAMILIES


# -- enumerate: discrete latents summed out exactly with TraceEnum_ELBO ----------------------------


def exact_mixture_log_likelihood(vae, x):
    """log p(x) = logsumexp_c [log λ_c + log N(x; μ_c, σ_c)], from the model's own parameters."""
    rows = vae.likelihood.net.rows.detach()
    log_weights = vae.generative["c"].family.logits.detach().log_softmax(-1)
    components = torch.distributions.Normal(rows[:, 0], F.softplus(rows[:, 1]) + MIN_SCALE)
    return torch.logsumexp(log_weights + components.log_prob(x), dim=-1)


def test_enumerated_elbo_is_the_exact_log_likelihood():
    vae = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    x = pv.load_dataset("mixture-1d").test[:200]
    elbo = ObjectiveChoice("trace_enum").build(vae)
    with pyro.validation_enabled(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        value = -elbo.loss(vae.model, vae.guide, x)
    assert value == pytest.approx(exact_mixture_log_likelihood(vae, x).sum().item(), rel=1e-5)


def test_enumerated_latent_has_no_guide_site_and_reconstructs():
    vae = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    x = torch.tensor([[-4.0], [0.0], [3.5]])
    assert "c" not in poutine.trace(vae.guide).get_trace(x).nodes
    assert poutine.trace(vae.model).get_trace(x).nodes["c"]["infer"]["enumerate"] == "parallel"
    assert vae.reconstruct(x).shape == (3, 1)
    with pytest.raises(pv.SpecError, match="train with objective 'trace_enum'"):
        ObjectiveChoice("trace").build(vae)
    with pytest.raises(pv.SpecError, match="train with objective 'trace_enum'"):
        ObjectiveChoice("trace_mean_field").build(vae)


def test_enumerate_takes_no_inputs_and_cannot_be_conditioned_on():
    with pytest.raises(pv.SpecError, match="g.toml: latent.c.given: 'enumerate' has no guide"):
        parse_guide(
            '[latent.c]\nfamily = "enumerate"\ngiven = ["x"]\nnet = { kind = "linear" }\n', "g.toml"
        )
    with pytest.raises(pv.SpecError, match="must be|approximates"):
        pv.load(
            "bernoulli_vae",
            parse_guide('[latent.z]\nfamily = "enumerate"\n', "g.toml"),
            data_shape=(4,),
        )


def test_trace_enum_trains_the_mixture():
    vae = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    result = pv.train(vae, "mixture-1d", objective="trace_enum", epochs=3, lr=3e-2, progress=False)
    assert result.history[-1]["test_elbo"] > result.history[0]["test_elbo"]


def test_a_relative_cholesky_factor_scales_each_row_by_its_sigma(tmp_path):
    """cholesky = "relative": L = diag(σ)(I + M/d); the default reads the same outputs as L's
    entries (as runs made before the option were built)."""
    torch.manual_seed(0)
    raw = torch.randn(4, 2 * 3 + 3)
    sigma = F.softplus(raw[:, 3:6]) + MIN_SCALE
    M = torch.zeros(4, 3, 3)
    M[:, [1, 2, 2], [0, 0, 1]] = raw[:, 6:]
    absolute = FullNormal(3, True)(raw).scale_tril
    relative = FullNormal(3, True, cholesky="relative")(raw).scale_tril
    assert torch.allclose(absolute, M + torch.diag_embed(sigma))
    assert torch.allclose(relative, sigma[..., None] * (torch.eye(3) + M / 3))
    spec = guide_spec(tmp_path, "full_normal", options='cholesky = "relative"')
    vae = pv.load("linear_gaussian", spec, data_shape=(D,), seed=0)
    assert vae.inference["z"].family.relative


def test_an_unknown_cholesky_parameterization_is_refused(tmp_path):
    spec = guide_spec(tmp_path, "full_normal", options='cholesky = "upper"')
    with pytest.raises(pv.SpecError, match="cholesky"):
        pv.load("linear_gaussian", spec, data_shape=(D,), seed=0)


def test_the_kl_of_a_full_covariance_guide_to_a_factorized_prior_is_in_closed_form():
    """Equal to torch's KL between the two as full-covariance Gaussians; other factorized
    priors have none, and the ELBO samples their KL."""
    from pyro.distributions.kl import kl_divergence

    torch.manual_seed(0)
    L = torch.randn(4, 3, 3).tril()
    L.diagonal(dim1=-2, dim2=-1).copy_(torch.rand(4, 3) + 0.5)
    loc, m, s = torch.randn(4, 3), torch.randn(4, 3), torch.rand(4, 3) + 0.5
    q = dist.MultivariateNormal(loc, scale_tril=L)
    exact = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(loc, scale_tril=L),
        torch.distributions.MultivariateNormal(m, scale_tril=torch.diag_embed(s)),
    )
    assert torch.allclose(kl_divergence(q, dist.Normal(m, s).to_event(1)), exact, atol=1e-5)
    with pytest.raises(NotImplementedError):
        kl_divergence(q, dist.Laplace(m, s).to_event(1))

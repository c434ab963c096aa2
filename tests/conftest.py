import math
import subprocess

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.model.families import MIN_SCALE
from tests.helpers import REPO, train_cli


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def repo():
    """The repository's root folder."""
    return REPO


# Probabilistic PCA with known parameters: log p(x), the posterior and the KL of any diagonal
# Gaussian guide to it are known in closed form.
D, LATENT, SIGMA = 5, 2, 0.5


def softplus_inverse(y):
    return y + torch.log(-torch.expm1(-y))


def _ppca(exact_guide: bool):
    """linear_gaussian with known W (orthogonal columns), b, σ; the guide exact or perturbed."""
    vae = pv.load("linear_gaussian", data_shape=(D,), seed=0)
    generator = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(D, LATENT, generator=generator))
    W = q * torch.tensor([2.0, 1.0])  # orthogonal columns: the exact posterior is diagonal
    b = torch.randn(D, generator=generator)
    decoder, family = vae.likelihood.net.layers[0], vae.likelihood.family
    M = W.T @ W + SIGMA**2 * torch.eye(LATENT)
    A = torch.linalg.solve(M, W.T)  # posterior mean = A (x − b), covariance = σ² M⁻¹
    post_scale = (SIGMA**2 / M.diag()).sqrt()
    encoder = vae.inference["z"].net.layers[0]
    with torch.no_grad():
        decoder.weight.copy_(W)
        decoder.bias.copy_(b)
        family.log_scale.fill_(math.log(SIGMA))
        encoder.weight.zero_()
        encoder.weight[:LATENT] = A
        encoder.bias[:LATENT] = -A @ b
        encoder.bias[LATENT:] = softplus_inverse(post_scale - MIN_SCALE)
        if not exact_guide:
            # Shift the mean a little and widen the scale: a proposal wider than the posterior
            # keeps the weights' variance finite (k̂ < 0.5), where the standard error holds.
            encoder.weight[:LATENT].add_(0.05 * torch.randn(LATENT, D, generator=generator))
            encoder.bias[LATENT:] = softplus_inverse(1.5 * post_scale - MIN_SCALE)
    x = dist.MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(D)).sample((20,))
    exact = dist.MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(D)).log_prob(x)
    # KL(q(z|x) ‖ p(z|x)) between the guide's diagonal Gaussian and the exact posterior.
    with torch.no_grad():
        h = vae.inference["z"].net([x])
    q_dist = dist.MultivariateNormal(
        h[:, :LATENT], scale_tril=torch.diag_embed(F.softplus(h[:, LATENT:]) + MIN_SCALE)
    )
    posterior = dist.MultivariateNormal((x - b) @ A.T, SIGMA**2 * torch.linalg.inv(M))
    return vae, x, exact.double(), torch.distributions.kl_divergence(q_dist, posterior).double()


@pytest.fixture
def ppca_exact():
    """``(vae, x, exact log p(x), KL(q ‖ posterior))`` with the guide at the exact posterior."""
    return _ppca(exact_guide=True)


@pytest.fixture
def ppca_perturbed():
    """The same with the guide's mean shifted and its scale widened (a real gap, k̂ < 0.5)."""
    return _ppca(exact_guide=False)


def _mixture_log_px(vae, x):
    """Exact log p(x) of the bundled mixture_1d model: the sum over its components."""
    rows = vae.likelihood.net.rows.detach()
    components = torch.distributions.Normal(rows[:, 0], F.softplus(rows[:, 1]) + MIN_SCALE)
    log_weights = vae.generative["c"].family.logits.detach().log_softmax(-1)
    return torch.logsumexp(log_weights + components.log_prob(x), -1).double()


@pytest.fixture
def mixture_log_px():
    """``f(vae, x)``: the exact per-datapoint log p(x) of a mixture_1d model."""
    return _mixture_log_px


# A linear-Gaussian model whose exact posterior is strongly correlated: the diagonal family's
# approximation gap is large and known in closed form.
def _correlated_ppca(guide):
    """linear_gaussian at known parameters whose posterior covariance σ²(WᵀW + σ²I)⁻¹ is far
    from diagonal; data drawn from the model; the exact posterior of every datapoint."""
    vae = pv.load("linear_gaussian", guide, data_shape=(5,), seed=0)
    generator = torch.Generator().manual_seed(1)
    W = torch.tensor([[1.0, 0.9], [0.8, 1.0], [0.5, 0.6], [1.0, 1.1], [0.2, 0.1]])
    b = torch.randn(5, generator=generator)
    decoder = vae.likelihood.net.layers[0]
    with torch.no_grad():
        decoder.weight.copy_(W)
        decoder.bias.copy_(b)
        vae.likelihood.family.log_scale.fill_(math.log(0.5))
    M = W.T @ W + 0.25 * torch.eye(2)
    marginal = dist.MultivariateNormal(b, W @ W.T + 0.25 * torch.eye(5))
    x = marginal.sample((64,))
    posterior = dist.MultivariateNormal(
        (x - b) @ torch.linalg.solve(M, W.T).T, 0.25 * torch.linalg.inv(M)
    )
    return vae, x, posterior


def _diagonal_gap(posterior):
    """The smallest KL(q ‖ p) a diagonal Gaussian q can reach: ½(log det S + Σ log (S⁻¹)ᵢᵢ)."""
    S = posterior.covariance_matrix[0]
    return 0.5 * (torch.logdet(S) + torch.linalg.inv(S).diagonal().log().sum()).item()


@pytest.fixture
def correlated_ppca():
    """``f(guide) -> (vae, x, posterior)``: linear_gaussian at known W, b, σ = 0.5 with the
    given guide, 64 datapoints drawn from it, and their exact posterior."""
    return _correlated_ppca


@pytest.fixture
def diagonal_gap():
    """``f(posterior)``: the approximation gap of the diagonal Gaussian family."""
    return _diagonal_gap


@pytest.fixture
def refused(capsys):
    """``refused(argv, *words)``: run the CLI, expect exit 2 and one line ``error: ...`` holding
    ``words`` (no traceback); returns that line."""
    from pyro_vae.cli import main

    def run(argv, *words) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        for word in words:
            assert word in err, err
        return err

    return run


@pytest.fixture
def snapshot():
    """``snapshot(folder)``: every file under ``folder`` (but the lock) by relative path, to
    check that a refused command changed nothing; empty for a missing folder."""

    def files(folder):
        if not folder.is_dir():
            return {}
        return {
            str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"
        }

    return files


# A finished run, trained once for every test that starts from it.
@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A 2-epoch digits run (bernoulli_vae, mean_field) trained through the command line; tests
    change a copy of it (``run``), never the run itself."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(train_cli(run)) == 0
    return run


@pytest.fixture
def run(finished_run, tmp_path):
    """A fresh copy of a finished 2-epoch digits run (``R`` of the issue)."""
    copy = tmp_path / "R"
    subprocess.run(["cp", "-r", str(finished_run), str(copy)], check=True)
    return copy

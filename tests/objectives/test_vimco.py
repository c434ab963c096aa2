"""VIMCO (pyro_vae.objectives.vimco): its gradient is unbiased for the K-sample bound, checked
against the bound's exact gradient by enumeration on a small discrete pair written by hand
(its own site and plate names); the estimator without its score term is visibly biased there,
so the check can fail; and it trains a spec-built model with a categorical guide."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae as pv
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.objectives.vimco import VIMCO, leave_one_out_bounds

X = torch.tensor([0.3, -1.2, 2.0])
K = 3
PARAMS = {
    "w": torch.tensor([1.5, -1.0]),
    "prior_logits": torch.tensor([0.4, -0.3]),
    "a": torch.tensor([0.2, 0.1]),
    "b": torch.tensor([0.5, -0.7]),
}
STATES = torch.tensor(list(itertools.product([0.0, 1.0], repeat=2)))  # the 4 values of a code


def model(x):
    w, prior = pyro.param("w"), pyro.param("prior_logits")
    with pyro.plate("rows", len(x)):
        code = pyro.sample("code", dist.Bernoulli(logits=prior).to_event(1))
        pyro.sample("obs", dist.Normal((code * w).sum(-1), 1.0), obs=x)


def guide(x):
    a, b = pyro.param("a"), pyro.param("b")
    with pyro.plate("rows", len(x)):
        pyro.sample("code", dist.Bernoulli(logits=a + b * x[:, None]).to_event(1))


def _params():
    return [pyro.param(name, value.clone()) for name, value in PARAMS.items()]


def exact_bound(x: torch.Tensor, k: int) -> torch.Tensor:
    """E over k independent codes per datapoint of log (1/k) Σ w, summed over the data, by
    enumerating every joint value of the k codes (4^k of them)."""
    w, prior, a, b = (pyro.param(n) for n in PARAMS)
    log_q = dist.Bernoulli(logits=a + b * x[:, None, None]).log_prob(STATES).sum(-1)  # (N, 4)
    log_prior = dist.Bernoulli(logits=prior).log_prob(STATES).sum(-1)  # (4,)
    log_lik = dist.Normal(STATES @ w, 1.0).log_prob(x[:, None])  # (N, 4)
    lw = log_prior + log_lik - log_q
    combos = torch.tensor(list(itertools.product(range(len(STATES)), repeat=k)))  # (C, k)
    log_prob = log_q[:, combos].sum(-1)  # (N, C)
    bound = torch.logsumexp(lw[:, combos], -1) - math.log(k)
    return (log_prob.exp() * bound).sum()


def _gradient_draws(loss_of, draws: int) -> torch.Tensor:
    params = _params()
    rows = []
    for _ in range(draws):
        loss = loss_of()
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(-loss, params)]))
    return torch.stack(rows)


def test_the_vimco_gradient_is_unbiased_for_the_k_sample_bound():
    params = _params()
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(exact_bound(X, K), params)])
    vimco = VIMCO(num_particles=K)
    pyro.set_rng_seed(0)
    draws = _gradient_draws(lambda: vimco.differentiable_loss(model, guide, X), 2000)
    mean, stderr = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    assert ((mean - exact).abs() < 4 * stderr).all(), (mean, exact, stderr)
    # The same draws without the score term (the bound's direct gradient only) are biased for
    # the guide's parameters: the check above has the power to see a missing term.
    pyro.set_rng_seed(0)

    def bound_only():
        lw, _ = vimco._weights(model, guide, (X,), {})
        return -(torch.logsumexp(lw, 0) - math.log(K)).sum()

    biased = _gradient_draws(bound_only, 2000)
    b_mean, b_stderr = biased.mean(0), biased.std(0) / math.sqrt(len(biased))
    assert ((b_mean - exact).abs() > 6 * b_stderr).any()


def test_its_value_is_the_k_sample_bound():
    _params()
    vimco = VIMCO(num_particles=K)
    pyro.set_rng_seed(1)
    values = torch.tensor([-vimco.loss(model, guide, X) for _ in range(2000)])
    exact = exact_bound(X, K).item()
    assert abs(values.mean().item() - exact) < 4 * values.std().item() / math.sqrt(len(values))


def test_leave_one_out_bounds_replace_each_weight_by_the_geometric_mean_of_the_others():
    lw = torch.tensor([[0.5], [-1.0], [2.0]])
    got = leave_one_out_bounds(lw)[:, 0]
    for k in range(3):
        others = [lw[j, 0] for j in range(3) if j != k]
        replaced = torch.stack([*others, torch.stack(others).mean()])
        assert got[k].item() == pytest.approx(
            (torch.logsumexp(replaced, 0) - math.log(3)).item(), abs=1e-6
        )


def test_vimco_needs_two_samples_and_trains_a_categorical_guide():
    with pytest.raises(pv.PyroVaeError, match="'vimco': k must be >= 2, got 1"):
        ObjectiveChoice.parse("vimco")
    vae = pv.load("mixture_1d", "mixture_1d", data_shape=(1,), seed=0)
    result = pv.train(
        vae, "mixture-1d", objective="vimco:k=5", epochs=3, batch_size=100, progress=False
    )
    elbos = [r["train_elbo"] for r in result.history]
    assert all(math.isfinite(e) for e in elbos) and result.final["step"] == "pyro"
    assert elbos[-1] > elbos[0]  # the bound rises from the initial weights

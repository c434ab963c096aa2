"""A small discrete pair written by hand, with its own site and plate names ("code", "rows"):
two Bernoulli bits per datapoint, a Gaussian observation; every expectation over K draws of
its codes can be enumerated exactly (4^K joint values), which is what the discrete
estimators' tests check against."""

import itertools
import math

import pyro
import pyro.distributions as dist
import torch

X = torch.tensor([0.3, -1.2, 2.0])
PARAMS = {  # the model's (w, prior_logits), then the guide's (a, b)
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


def params() -> list[torch.Tensor]:
    """The pair's parameters, created in the param store at their initial values."""
    return [pyro.param(name, value.clone()) for name, value in PARAMS.items()]


def joint_draws(x: torch.Tensor, k: int):
    """Every joint value of k codes per datapoint: ``(log q of each, (N, C, k) log weights)``,
    differentiable in the parameters."""
    w, prior, a, b = (pyro.param(n) for n in PARAMS)
    log_q = dist.Bernoulli(logits=a + b * x[:, None, None]).log_prob(STATES).sum(-1)  # (N, 4)
    log_prior = dist.Bernoulli(logits=prior).log_prob(STATES).sum(-1)  # (4,)
    log_lik = dist.Normal(STATES @ w, 1.0).log_prob(x[:, None])  # (N, 4)
    lw = log_prior + log_lik - log_q
    combos = torch.tensor(list(itertools.product(range(len(STATES)), repeat=k)))  # (C, k)
    return log_q[:, combos], lw[:, combos]


def exact_bound(x: torch.Tensor, k: int) -> torch.Tensor:
    """E over k independent codes per datapoint of log (1/k) Σ w, summed over the data."""
    log_q, lw = joint_draws(x, k)
    bound = torch.logsumexp(lw, -1) - math.log(k)
    return (log_q.sum(-1).exp() * bound).sum()


def gradient_draws(loss_of, draws: int) -> torch.Tensor:
    """``(draws, P)``: the gradient of −loss in every parameter, one row per call."""
    tensors = params()
    rows = []
    for _ in range(draws):
        loss = loss_of()
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(-loss, tensors)]))
    return torch.stack(rows)


def flat_gradient(value: torch.Tensor) -> torch.Tensor:
    """The gradient of ``value`` in every parameter, flattened (0 where it has none)."""
    tensors = params()
    grads = torch.autograd.grad(value, tensors, allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(t) if g is None else g).flatten()
            for t, g in zip(tensors, grads, strict=True)
        ]
    )

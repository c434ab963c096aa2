"""NVIL's learned baselines (``trace_graph:baseline=nn``, pyro_vae.objectives.nvil): the gradient
stays unbiased for the ELBO (against its exact gradient by enumeration on a small discrete pair
written by hand), its guide-gradient variance falls, the net of x beats the running mean alone;
the baseline trains with the pair, lives in its checkpoints and resumes exactly; a hand-written
pair with a sizeless plate of its own name trains with it."""

import math
import types

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_vae as pv
from pyro_vae.objectives.nvil import learning_signals
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.runs import training
from pyro_vae.runs.checkpoint import Checkpoint, save_checkpoint
from pyro_vae.runs.distributed import World
from tests.objectives.two_bit_pair import (
    STATES,
    X,
    exact_bound,
    flat_gradient,
    gradient_draws,
    guide,
    model,
    params,
)

DRAWS = 1000
GUIDE = slice(4, 8)  # the guide's coordinates (a, b) in the flattened gradient


def _prepared(setting: str):
    """The estimator with its baseline fitted to the two-bit pair at its initial parameters."""
    params()
    elbo = ObjectiveChoice.parse(setting).build()
    pyro.set_rng_seed(3)
    elbo.prepare(model, guide, X)
    return elbo


def _score_free_gradient() -> torch.Tensor:
    """The ELBO's gradient with the distribution of the codes held fixed: what an estimator
    without any score-function term would be unbiased for."""
    w, prior, a, b = (pyro.param(n) for n in ("w", "prior_logits", "a", "b"))
    log_q = dist.Bernoulli(logits=a + b * X[:, None, None]).log_prob(STATES).sum(-1)
    log_p = dist.Bernoulli(logits=prior).log_prob(STATES).sum(-1)
    log_p = log_p + dist.Normal(STATES @ w, 1.0).log_prob(X[:, None])
    return flat_gradient((log_q.detach().exp() * (log_p - log_q)).sum())


@pytest.fixture(scope="module")
def plain_draws() -> torch.Tensor:
    """Gradients of the plain score-function estimator at the initial parameters, seed 0."""
    params()
    plain = ObjectiveChoice.parse("trace_graph").build()
    pyro.set_rng_seed(0)
    return gradient_draws(lambda: plain.differentiable_loss(model, guide, X), DRAWS)


@pytest.mark.parametrize("setting", ["trace_graph:baseline=nn", "trace_graph:baseline=mean"])
def test_the_gradient_with_a_baseline_is_unbiased_for_the_elbo(setting, plain_draws):
    elbo = _prepared(setting)
    exact = flat_gradient(exact_bound(X, 1))
    pyro.set_rng_seed(0)
    draws = gradient_draws(lambda: elbo.differentiable_loss(model, guide, X), DRAWS)
    mean, stderr = draws.mean(0), draws.std(0) / math.sqrt(DRAWS)
    assert ((mean - exact).abs() < 4 * stderr).all(), (mean, exact, stderr)
    # Power: the score-free gradient differs from the ELBO's by far more than the stderr.
    assert ((mean - _score_free_gradient()).abs() > 6 * stderr).any()
    # Less variance in the guide's coordinates than the plain score function on the same seed.
    assert (draws[:, GUIDE].var(0) < 0.5 * plain_draws[:, GUIDE].var(0)).all()
    assert torch.allclose(draws[:, :4].var(0), plain_draws[:, :4].var(0))  # the model's: same


def test_the_net_of_x_predicts_the_learning_signal_better_than_its_mean():
    learned, mean_only = (
        _prepared("trace_graph:baseline=nn"),
        _prepared("trace_graph:baseline=mean"),
    )
    errors = {"nn": [], "mean": []}
    pyro.set_rng_seed(1)
    for _ in range(500):
        guide_trace = pyro.poutine.trace(guide).get_trace(X)
        model_trace = pyro.poutine.trace(pyro.poutine.replay(model, guide_trace)).get_trace(X)
        model_trace.compute_log_prob(), guide_trace.compute_log_prob()
        for key, elbo in (("nn", learned), ("mean", mean_only)):
            baseline = elbo.baseline
            predicted = baseline.centers[0] + (
                0.0 if key == "mean" else baseline(model_trace)[:, 0]
            )
            signal = (
                model_trace.nodes["code"]["log_prob"]
                + model_trace.nodes["obs"]["log_prob"]
                - guide_trace.nodes["code"]["log_prob"]
            )
            errors[key].append((signal - predicted).pow(2).mean().item())
    gain = torch.tensor(errors["mean"]) - torch.tensor(errors["nn"])
    assert gain.mean() > 4 * gain.std() / math.sqrt(len(gain)), gain.mean()


def test_learning_signals_are_the_terms_downstream_of_each_site():
    params()
    elbo = ObjectiveChoice.parse("trace_graph").build()
    model_trace, guide_trace = next(elbo._get_traces(model, guide, (X,), {}))
    signal = learning_signals(model_trace, guide_trace, ("code",))["code"]
    expected = (
        model_trace.nodes["code"]["log_prob"]
        + model_trace.nodes["obs"]["log_prob"]
        - guide_trace.nodes["code"]["log_prob"]
    )
    assert signal.shape == (len(X),) and torch.allclose(signal, expected)


def test_baseline_settings_are_checked_in_one_line():
    choice = ObjectiveChoice.parse("trace_graph:baseline=nn")
    assert choice.options == {"baseline": "nn"} and choice.label == "trace_graph(baseline=nn)"
    with pytest.raises(pv.PyroVaeError, match="option baseline: must be one of mean, nn, got 'x'"):
        ObjectiveChoice.parse("trace_graph:baseline=x")
    with pytest.raises(pv.PyroVaeError, match="baseline must be a number or a word"):
        ObjectiveChoice.parse("trace_graph:baseline=n-n")
    with pytest.raises(pv.PyroVaeError, match="option alpha: must be a finite number, got 'ab'"):
        ObjectiveChoice.parse("renyi:alpha=ab")
    with pytest.raises(pv.PyroVaeError, match="has no option 'baseline'"):
        ObjectiveChoice.parse("trace:baseline=nn")
    gaussian = pv.load("gaussian_vae", data_shape=(8,), seed=0)
    assert ObjectiveChoice.parse("trace_graph").usable_with(gaussian)
    with pytest.raises(pv.SpecError, match="no score-function term to subtract a baseline"):
        choice.build(gaussian)


def test_the_baseline_trains_with_the_sbn_lives_in_checkpoints_and_resumes_exactly(tmp_path):
    def sbn():
        return pv.load("sbn", data_shape=(64,), seed=0)

    whole = pv.train(sbn(), "digits", objective="trace_graph:baseline=nn", epochs=2,
                     out=tmp_path / "whole", progress=False)  # fmt: skip
    pv.train(sbn(), "digits", objective="trace_graph:baseline=nn", epochs=1,
             out=tmp_path / "half", progress=False)  # fmt: skip
    saved = Checkpoint(tmp_path / "half" / "checkpoint.safetensors").objective
    assert {"net.0.weight", "centers", "started"} <= set(saved) and saved["started"].all()
    resumed = pv.resume(tmp_path / "half", epochs=2, progress=False)
    assert [r["train_elbo"] for r in resumed.history] == [r["train_elbo"] for r in whole.history]
    assert whole.history[-1]["train_elbo"] > whole.history[0]["train_elbo"]
    end = Checkpoint(tmp_path / "whole" / "checkpoint.safetensors").objective
    assert not torch.equal(end["net.2.weight"], torch.zeros_like(end["net.2.weight"]))
    assert "baseline = nn" in (tmp_path / "whole" / "report.md").read_text()
    # A checkpoint without the baseline's weights cannot continue such a run.
    path = tmp_path / "half" / "checkpoint.safetensors"
    full = Checkpoint(path)
    vae = sbn()
    full.load_into(vae)
    optimizer = types.SimpleNamespace(state_dict=lambda: full.optimizer)
    save_checkpoint(path, vae, optimizer, rng=full.rng, info=full.info)
    with pytest.raises(pv.CheckpointError, match=r"does not match the objective \(missing"):
        pv.resume(tmp_path / "half", epochs=3, progress=False)


class _BitPair(nn.Module):
    """One hidden bit per point, in a sizeless plate named "points"; the observation's mean is
    chosen by the bit."""

    def __init__(self):
        super().__init__()
        self.means = nn.Parameter(torch.tensor([-0.5, 0.5]))
        self.encoder = nn.Linear(1, 1)

    def model(self, x):
        with pyro.plate("points"):
            bit = pyro.sample("bit", dist.Bernoulli(torch.tensor(0.5)).expand([x.shape[0]]))
            pyro.sample("y", dist.Normal(self.means[bit.long()], 1.0), obs=x[:, 0])

    def guide(self, x):
        with pyro.plate("points"):
            pyro.sample("bit", dist.Bernoulli(logits=self.encoder(x)[:, 0]))


def test_a_hand_written_pair_with_a_sizeless_plate_trains_with_learned_baselines():
    torch.manual_seed(0)
    pair = _BitPair()
    result = pv.train(pair, "mixture-1d", objective="trace_graph:baseline=nn", epochs=4,
                      lr=0.05, progress=False)  # fmt: skip
    elbos = [r["test_elbo"] for r in result.history]
    assert all(math.isfinite(e) for e in elbos) and elbos[-1] > elbos[0]
    assert pair.means[1] - pair.means[0] > 1.0  # the two components move apart


def test_torchrun_refuses_a_baseline_before_the_run_directory_is_made(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "world", lambda: World(rank=0, size=2))
    with pytest.raises(pv.PyroVaeError, match="torchrun: objective 'trace_graph\\(baseline=nn\\)'"):
        pv.train(pv.load("sbn", data_shape=(64,), seed=0), "digits", out=tmp_path / "run",
                 objective="trace_graph:baseline=nn", epochs=1, progress=False)  # fmt: skip
    assert not (tmp_path / "run").exists()

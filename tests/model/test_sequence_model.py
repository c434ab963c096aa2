"""The bundled sequence pairs against exact answers: the lgssm spec with the simulating
parameters is the Kalman filter's model, so its log p(x_1:T) is known in closed form and every
estimator must find it within its own standard error."""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

import pyro_vae as pv
from pyro_vae.data.lgssm import kalman_log_likelihood, kalman_log_likelihood_of
from pyro_vae.inference.steps import stepwise_estimate

STEPS, DIM, LATENT = 6, 3, 2

# The model is held at the true parameters (requires_grad off), which pyro.module notes.
pytestmark = pytest.mark.filterwarnings("ignore:.*was not registered in the param store")


def set_parameters(vae, truth: dict) -> None:
    """Put the simulating parameters into the lgssm spec's pair (model side only)."""
    chain, emission = vae.generative["z"], vae.generative["x"]
    with torch.no_grad():
        chain.net.layers[0].weight.copy_(truth["A"])
        chain.net.layers[0].bias.copy_(truth["b"])
        chain.family.log_scale.copy_(truth["q"].log())
        emission.net.layers[0].weight.copy_(truth["C"])
        emission.net.layers[0].bias.copy_(truth["d"])
        emission.family.log_scale.copy_(truth["r"].log())


@pytest.fixture(scope="module")
def exact_pair():
    """The lgssm pair at the true parameters with its guide fitted (the model held fixed), and
    a test batch with variable lengths and its exact log-likelihoods."""
    data = pv.load_dataset(
        "lgssm", steps=STEPS, dim=DIM, latent_dim=LATENT, n_train=1000, n_test=12, min_steps=2
    )
    vae = pv.load("lgssm", data_shape=(STEPS, DIM), seed=0)
    set_parameters(vae, data.truth)
    vae.generative.requires_grad_(False)
    pyro.clear_param_store()
    torch.manual_seed(0)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-2}), Trace_ELBO())
    x, lengths = data.array("x", "train"), data.array("lengths", "train")
    with pyro.validation_enabled(False):
        for _ in range(150):
            rows = torch.randint(0, len(x), (200,))
            svi.step(x[rows], lengths[rows])
    exact = kalman_log_likelihood_of(data, "test")
    return vae, data.array("x", "test"), data.array("lengths", "test"), exact


def test_steps_past_a_length_are_masked_out(exact_pair):
    """Every site scores 0 past its sequence's length, whatever the padding holds."""
    vae, x, lengths, exact = exact_pair
    trace = poutine.trace(poutine.replay(vae.model, poutine.trace(vae.guide).get_trace(x, lengths)))
    model_trace = trace.get_trace(x, lengths)
    model_trace.compute_log_prob()
    # The same sequence with its padding changed has the same density.
    padded = x.clone()
    padded[torch.arange(STEPS) >= lengths[:, None]] = 7.0
    guide_trace = poutine.trace(vae.guide).get_trace(padded, lengths)
    other = poutine.trace(poutine.replay(vae.model, guide_trace)).get_trace(padded, lengths)
    other.compute_log_prob()
    assert bool((lengths < STEPS).any())
    for t in range(1, STEPS + 1):
        inside = t <= lengths
        for name in (f"x_{t}", f"z_{t}"):
            assert torch.all(model_trace.nodes[name]["log_prob"][~inside] == 0)
            assert torch.all(other.nodes[name]["log_prob"][~inside] == 0)
            assert torch.all(model_trace.nodes[name]["log_prob"][inside] != 0)


def test_importance_sampling_finds_the_kalman_log_likelihood(exact_pair):
    vae, x, lengths, exact = exact_pair
    pyro.set_rng_seed(1)
    found = pv.log_likelihood(vae.model, vae.guide, x, lengths, num_samples=2000)
    error = float(found.log_px.double().mean() - exact.total.mean())
    stderr = math.sqrt(float((found.stderr.double() ** 2).sum())) / len(x)
    assert abs(error) < 4 * stderr, (error, stderr)
    assert stderr < 0.05  # the check has teeth: a wrong density would be off by far more


def test_ais_finds_the_kalman_log_likelihood(exact_pair):
    vae, x, lengths, exact = exact_pair
    pyro.set_rng_seed(2)
    found = pv.log_likelihood(
        vae.model, vae.guide, x, lengths, num_samples=16, method="ais", num_steps=40
    )
    error = float(found.log_px.double().mean() - exact.total.mean())
    stderr = math.sqrt(float((found.stderr.double() ** 2).sum())) / len(x)
    assert abs(error) < 4 * stderr, (error, stderr)


def test_the_per_step_prefixes_find_the_kalman_prefixes(exact_pair):
    """log p̂(x_1:t) for every t from the same samples, against the filter's cumulative
    predictive densities; the standard error of each step's mean from 6 independent runs."""
    vae, x, lengths, exact = exact_pair
    pyro.set_rng_seed(3)
    runs = [stepwise_estimate(vae.model, vae.guide, x, lengths, num_samples=300) for _ in range(6)]
    means = torch.stack([r.log_px_prefix.mean(0) for r in runs])  # (runs, T)
    exact_prefix = exact.per_step.cumsum(1).mean(0)
    stderr = means.std(0) / math.sqrt(len(runs))
    assert torch.all((means.mean(0) - exact_prefix).abs() < 4 * stderr + 1e-9), (
        means.mean(0),
        exact_prefix,
    )
    first = runs[0]
    assert first.steps == tuple(range(1, STEPS + 1))
    assert torch.equal(first.present, torch.arange(STEPS) < lengths[:, None])
    assert first.totals()["gap"] >= -0.05  # log p̂ − ELBO: positive up to Monte Carlo error


def test_the_per_step_elbo_adds_up_to_the_elbo(exact_pair):
    vae, x, lengths, _ = exact_pair
    pyro.set_rng_seed(4)
    steps = stepwise_estimate(vae.model, vae.guide, x, lengths, num_samples=2000)
    bound = pv.elbo(vae.model, vae.guide, x, lengths, num_samples=2000)
    per_sequence = (steps.elbo_step * steps.present).sum(1)
    difference = (per_sequence - bound.elbo.double()).mean()
    stderr = bound.stderr.double().pow(2).sum().sqrt() / len(x)
    assert abs(float(difference)) < 4 * float(stderr) * math.sqrt(2), (difference, stderr)


def test_a_hand_written_state_space_pair_with_its_own_names():
    """Per-step estimates of any pair: other site names, a step function of one's own."""

    def model(y):
        s = torch.zeros(y.shape[0])
        with pyro.plate("sequences", y.shape[0]):
            for t in pyro.markov(range(y.shape[1])):
                s = pyro.sample(f"state{t}", pyro.distributions.Normal(0.5 * s, 1.0))
                pyro.sample(f"obs{t}", pyro.distributions.Normal(s, 0.5), obs=y[:, t])

    def guide(y):
        with pyro.plate("sequences", y.shape[0]):
            for t in pyro.markov(range(y.shape[1])):
                pyro.sample(f"state{t}", pyro.distributions.Normal(0.8 * y[:, t], 0.45))

    y = torch.randn(5, 4)
    pyro.set_rng_seed(0)
    steps = stepwise_estimate(model, guide, y, num_samples=4000)
    assert steps.steps == (0, 1, 2, 3)  # names ending in 0 … 3
    # The exact log-likelihood of this scalar LGSSM, by the filter (A = 0.5, q = 1, C = 1, r = 0.5).
    one = torch.ones(1, 1)
    exact = kalman_log_likelihood(
        y[..., None], None, 0.5 * one, torch.zeros(1), torch.ones(1), one, torch.zeros(1),
        0.5 * torch.ones(1),
    )  # fmt: skip
    found = pv.log_likelihood(model, guide, y, num_samples=4000)
    gap = (steps.log_px_prefix[:, -1] - exact.total).abs()
    assert torch.all(gap < 4 * found.stderr.double() * 2), (gap, found.stderr)
    with pytest.raises(pv.ModelGuideError, match="no time steps"):
        stepwise_estimate(model, guide, y, num_samples=10, step_of=lambda name: 1)


@pytest.mark.slow
def test_a_trained_lgssm_recovers_the_simulating_process():
    """Trained on lgssm, the spec's pair learns the process the data came from: its own
    log-likelihood (the filter at the learned parameters) nears the truth's, A's eigenvalues
    (invariant under the model's symmetries) match, and importance sampling finds the trained
    model's exact log-likelihood within its standard error."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from lgssm import compare_parameters, learned_parameters

    vae = pv.load("lgssm", data_shape=(10, 4), seed=0)
    options = {"steps": 10, "n_train": 1000, "n_test": 200}
    trained = pv.train(vae, "lgssm", data_options=options, epochs=60, batch_size=50, lr=3e-3)
    data = trained.dataset
    x, lengths = data.array("x", "test"), data.array("lengths", "test")
    truth = {k: data.truth[k] for k in ("A", "b", "q", "C", "d", "r")}
    learned = learned_parameters(vae)
    exact_true = kalman_log_likelihood(x, lengths, *truth.values()).total
    exact_learned = kalman_log_likelihood(x, lengths, *learned.values()).total
    # At this budget the learned process is within 0.1 nats per sequence of the true one.
    assert compare_parameters(truth, learned, 10)["kl_true_to_learned_per_sequence"] < 0.1
    assert float((exact_true - exact_learned).mean()) < 0.1
    eig = torch.linalg.eigvals(learned["A"]).abs().sort().values
    assert torch.allclose(eig, torch.full((2,), 0.9, dtype=eig.dtype), atol=0.03)
    pyro.set_rng_seed(0)
    found = pv.log_likelihood(vae.model, vae.guide, x, lengths, num_samples=1000)
    error = float(found.log_px.double().mean() - exact_learned.mean())
    stderr = math.sqrt(float((found.stderr.double() ** 2).sum())) / len(x)
    # log of an average is biased low by about Var(w / p(x)) / 2K = (1/ESS − 1/K) / 2.
    bias = float((0.5 * (1 / found.ess.double() - 1 / 1000)).mean())
    assert -4 * stderr - bias < error < 4 * stderr, (error, stderr, bias)


def test_a_combiner_on_one_input_is_refused_in_one_line(tmp_path):
    # The net's size count runs before it is built: it must leave the refusal to the builder,
    # which names the key, not fail unpacking the one input it was given.
    guide = tmp_path / "g.toml"
    guide.write_text(
        '[latent.z]\nfamily = "diagonal_normal"\ngiven = ["x"]\nnet = { kind = "combiner" }\n'
    )
    with pytest.raises(pv.SpecError, match="latent.z.net: a 'combiner' net takes 2 real vector"):
        pv.load("linear_gaussian", guide, data_shape=(8,), seed=0)

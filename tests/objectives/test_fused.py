"""The fused step (pyro_vae.objectives.fused): same loss and gradients as Pyro's estimators, same
training, and a fallback to Pyro's estimator when the check on one batch finds a difference."""

import pytest
import torch

import pyro_vae as pv
from pyro_vae.objectives.fused import FusedELBO
from pyro_vae.objectives.kl_weight import KLWeighted
from pyro_vae.objectives.registry import ObjectiveChoice
from tests.helpers import SPECS

# (model, guide, data dimension, binary data, objectives that accept the pair)
PAIRS = {
    "bernoulli_vae": ("bernoulli_vae", "mean_field", 64, True, ("trace", "trace_mean_field")),
    "gaussian_vae": ("gaussian_vae", "mean_field", 64, False, ("trace", "trace_mean_field")),
    "linear_gaussian": ("linear_gaussian", None, 5, False, ("trace", "trace_mean_field")),
    "hierarchical_vae": ("hierarchical_vae", None, 64, True, ("trace", "trace_mean_field")),
    # the guide samples z1 before z2, unlike the model: trace only
    "hierarchical_bottom_up": (
        "hierarchical_vae",
        SPECS / "bottom_up.toml",
        64,
        True,
        ("trace",),
    ),
    # q(z) without parents: pyro.plate expands it over the batch, and so must the fused step
    "linear_gaussian_global": (
        "linear_gaussian",
        SPECS / "global_guide.toml",
        5,
        False,
        ("trace", "trace_mean_field"),
    ),
}
CASES = [(pair, objective) for pair, spec in PAIRS.items() for objective in spec[-1]]


def loss_and_gradients(vae, elbo, x, seed=3):
    torch.manual_seed(seed)
    loss = elbo.differentiable_loss(vae.model, vae.guide, x)
    params = dict(vae.named_parameters())
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return loss, dict(zip(params, grads, strict=True))


@pytest.mark.parametrize(("pair", "objective"), CASES)
def test_fused_loss_and_gradients_equal_pyros(pair, objective):
    model, guide, dim, binary, _ = PAIRS[pair]
    vae = pv.load(model, guide, data_shape=(dim,), seed=0)
    x = torch.rand(16, dim, generator=torch.Generator().manual_seed(1))
    x = x.round() if binary else x
    choice = ObjectiveChoice(objective)
    fused = choice.fused_step(vae)
    assert isinstance(fused, FusedELBO)
    loss, grads = loss_and_gradients(vae, choice.build(vae), x)
    fused_loss, fused_grads = loss_and_gradients(vae, fused, x)
    assert fused_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    for name, g in grads.items():
        f = fused_grads[name]
        assert (g is None) == (f is None), name
        if g is not None:
            assert torch.allclose(f, g, rtol=1e-4, atol=1e-5 * g.abs().max().item()), name
    # the same draws of the latents: the random stream is left in the same place
    torch.manual_seed(3)
    choice.build(vae).differentiable_loss(vae.model, vae.guide, x)
    after_pyro = torch.rand(1)
    torch.manual_seed(3)
    fused.differentiable_loss(vae.model, vae.guide, x)
    assert torch.equal(torch.rand(1), after_pyro)


def test_mean_field_without_a_closed_form_kl_uses_the_sampled_term(monkeypatch):
    from pyro_vae.inference import importance

    vae = pv.load("hierarchical_vae", data_shape=(64,), seed=0)
    x = torch.rand(16, 64, generator=torch.Generator().manual_seed(1)).round()
    sampled, _ = loss_and_gradients(vae, ObjectiveChoice("trace").fused_step(vae), x)

    def no_closed_form(q, p):
        raise NotImplementedError

    monkeypatch.setattr(importance, "kl_divergence", no_closed_form)
    fallback, _ = loss_and_gradients(vae, ObjectiveChoice("trace_mean_field").fused_step(vae), x)
    assert fallback.item() == pytest.approx(sampled.item(), rel=1e-6)


def test_fused_step_applies_only_where_it_equals_pyros():
    vae = pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0)
    assert ObjectiveChoice("trace").fused_step(vae) is not None
    assert ObjectiveChoice("trace", 2).fused_step(vae) is None
    assert ObjectiveChoice("trace_mean_field", 5).fused_step(vae) is None
    for other in ("iwae", "iwae_dreg", "renyi", "trace_graph", "trace_enum"):
        assert ObjectiveChoice(other).fused_step(vae) is None, other
    enumerated = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    categorical_guide = pv.load("mixture_1d", data_shape=(1,), seed=0)
    for objective in ("trace", "trace_mean_field", "trace_enum"):
        assert ObjectiveChoice(objective).fused_step(enumerated) is None
        assert ObjectiveChoice(objective).fused_step(categorical_guide) is None
    other = pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0)
    with pytest.raises(ValueError, match="its own"):
        ObjectiveChoice("trace").fused_step(vae).differentiable_loss(other.model, other.guide, None)


def train(vae, **settings):
    return pv.train(vae, "digits", epochs=1, batch_size=300, progress=False, **settings)


@pytest.mark.parametrize("objective", ["trace", "trace_mean_field"])
def test_training_with_and_without_the_fused_step_agrees(objective):
    fused = train(pv.load("hierarchical_vae", data_shape=(64,), seed=0), objective=objective)
    pyro_path = train(
        pv.load("hierarchical_vae", data_shape=(64,), seed=0), objective=objective, fused=False
    )
    assert [r["step"] for r in fused.history] == ["fused"]
    assert [r["step"] for r in pyro_path.history] == ["pyro"]
    assert fused.final["train_elbo"] == pytest.approx(pyro_path.final["train_elbo"], rel=1e-5)
    expected = pyro_path.vae.state_dict()
    for name, value in fused.vae.state_dict().items():
        assert torch.allclose(value, expected[name], rtol=1e-4, atol=1e-5), name


def test_objectives_without_a_fused_step_train_with_pyros():
    vae = pv.load("linear_gaussian", data_shape=(5,), seed=0)
    result = pv.train(
        vae,
        "linear-gaussian",
        epochs=1,
        objective="iwae",
        num_particles=3,
        data_options={"n_train": 200, "n_test": 50},
        progress=False,
    )
    assert result.final["step"] == "pyro"


def test_a_fused_step_that_disagrees_falls_back_to_pyros(monkeypatch):
    expected = train(pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0), fused=False)
    original = FusedELBO.negative_elbo

    def wrong_value(self, x):  # 1% off, the same gradient
        loss = original(self, x)
        return loss + 0.01 * loss.detach()

    monkeypatch.setattr(FusedELBO, "negative_elbo", wrong_value)
    with pytest.warns(UserWarning, match="fused training step disagrees.*loss"):
        result = train(pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0))
    assert result.final["step"] == "pyro"
    # the check used its own copy of the random stream: the run is the Pyro run, bit for bit
    for name, value in result.vae.state_dict().items():
        assert torch.equal(value, expected.vae.state_dict()[name]), name


def test_a_fused_gradient_that_disagrees_falls_back_to_pyros(monkeypatch):
    original = FusedELBO.negative_elbo

    def wrong_gradient(self, x):  # the same value, twice the gradient
        loss = original(self, x)
        return loss + (loss - loss.detach())

    monkeypatch.setattr(FusedELBO, "negative_elbo", wrong_gradient)
    with pytest.warns(UserWarning, match="fused training step disagrees.*gradient"):
        result = train(pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0))
    assert result.final["step"] == "pyro"


@pytest.mark.parametrize("objective", ["trace", "trace_mean_field"])
def test_the_compiled_fused_step_equals_pyros_on_the_same_draws(objective):
    vae = pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0)
    x = torch.rand(16, 64, generator=torch.Generator().manual_seed(1)).round()
    choice = ObjectiveChoice(objective)
    compiled = choice.fused_step(vae)
    compiled.compile()
    assert compiled.compiled
    for beta in (1.0, 0.25):  # β is a tensor of the compiled graph, not a constant in it
        compiled.kl_weight = beta
        expected = KLWeighted(choice.build(vae), beta) if beta != 1 else choice.build(vae)
        loss, grads = loss_and_gradients(vae, expected, x)
        got, got_grads = loss_and_gradients(vae, compiled, x)
        assert got.item() == pytest.approx(loss.item(), rel=1e-5)
        for name, g in grads.items():
            assert torch.allclose(got_grads[name], g, rtol=1e-4, atol=1e-5 * g.abs().max()), name
    # The draws are PyTorch's own: the random stream is left where Pyro's estimator leaves it.
    torch.manual_seed(3)
    choice.build(vae).differentiable_loss(vae.model, vae.guide, x)
    after_pyro = torch.rand(1)
    torch.manual_seed(3)
    compiled.differentiable_loss(vae.model, vae.guide, x)
    assert torch.equal(torch.rand(1), after_pyro)


@pytest.mark.slow
@pytest.mark.parametrize(("pair", "objective"), CASES)
def test_compiled_fused_steps_of_every_pair_equal_pyros(pair, objective):
    model, guide, dim, binary, _ = PAIRS[pair]
    vae = pv.load(model, guide, data_shape=(dim,), seed=0)
    x = torch.rand(16, dim, generator=torch.Generator().manual_seed(1))
    x = x.round() if binary else x
    choice = ObjectiveChoice(objective)
    compiled = choice.fused_step(vae)
    compiled.compile()
    loss, grads = loss_and_gradients(vae, choice.build(vae), x)
    got, got_grads = loss_and_gradients(vae, compiled, x)
    assert got.item() == pytest.approx(loss.item(), rel=1e-5)
    for name, g in grads.items():
        if g is not None:
            assert torch.allclose(got_grads[name], g, rtol=1e-4, atol=1e-5 * g.abs().max()), name


def test_training_with_the_compiled_step_follows_the_fused_run():
    fused = train(pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0))
    compiled = train(pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0), compile=True)
    assert [r["step"] for r in compiled.history] == ["compiled"]
    assert compiled.final["train_elbo"] == pytest.approx(fused.final["train_elbo"], rel=1e-5)
    expected = fused.vae.state_dict()
    for name, value in compiled.vae.state_dict().items():
        assert torch.allclose(value, expected[name], rtol=1e-4, atol=1e-5), name


def test_a_compilation_that_fails_trains_with_the_uncompiled_fused_step(monkeypatch):
    expected = train(pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0))

    def failing_compile(fn, **options):
        def compiled(*args, **kwargs):
            raise RuntimeError("InductorError: no working C++ compiler\ndetails")

        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    with pytest.warns(UserWarning, match=r"torch.compile failed \(InductorError: no working"):
        result = train(
            pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0), compile=True
        )
    assert result.final["step"] == "fused"
    for name, value in result.vae.state_dict().items():  # the fused run, bit for bit
        assert torch.equal(value, expected.vae.state_dict()[name]), name


def test_compile_must_be_a_boolean():
    vae = pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0)
    with pytest.raises(pv.PyroVaeError, match="compile must be true or false, got 'yes'"):
        train(vae, compile="yes")


@pytest.mark.parametrize(
    "settings",
    [{"objective": "vimco:k=2"}, {"fused": False}, {"free_bits": 0.5}],
    ids=["no fused step", "no-fused", "free bits"],
)
def test_compile_without_a_fused_step_to_compile_is_refused_in_one_line(settings, tmp_path):
    vae = pv.load("sbn" if "objective" in settings else "bernoulli_vae", data_shape=(64,), seed=0)
    with pytest.raises(pv.PyroVaeError, match="--compile: objective '.*' has no fused step"):
        pv.train(vae, "digits", out=tmp_path / "run", compile=True, epochs=1, **settings)
    assert not (tmp_path / "run").exists()

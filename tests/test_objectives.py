"""The objectives: IWAE, DReG, the objective settings (ObjectiveChoice) and what they refuse."""

import math

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.objectives.dreg import IWAE_DReG
from pyro_vae.objectives.iwae import IWAE_ELBO
from pyro_vae.objectives.registry import ObjectiveChoice


def toy_batch():
    return pv.load_dataset("digits", binarization="static").test[:32]


def test_iwae_with_one_sample_is_the_elbo():
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    x = toy_batch()
    pyro.set_rng_seed(1)
    iwae = IWAE_ELBO(num_particles=1).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    trace = pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x)
    assert iwae == pytest.approx(trace, rel=1e-5)


def test_dreg_gives_iwae_model_gradients_and_value():
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    x = toy_batch()
    grads = {}
    for cls in (IWAE_ELBO, IWAE_DReG):
        vae.zero_grad()
        pyro.set_rng_seed(2)
        loss = cls(num_particles=8).differentiable_loss(vae.model, vae.guide, x)
        loss.backward()
        grads[cls] = (
            loss.item(),
            [p.grad.clone() for p in vae.generative.parameters()],
            [p.grad.clone() for p in vae.inference.parameters()],
        )
    (v1, model1, guide1), (v2, model2, guide2) = grads.values()
    assert v1 == pytest.approx(v2, rel=1e-6)
    for a, b in zip(model1, model2, strict=True):  # same samples: identical model gradients
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5 * a.abs().max().item())
    assert any(not torch.allclose(a, b) for a, b in zip(guide1, guide2, strict=True))


def test_iwae_objectives_train_and_refuse_what_they_cannot_do():
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    x = pv.load_dataset("digits", binarization="dynamic", seed=0).test
    before = pv.elbo(vae.model, vae.guide, x, num_samples=10)
    result = pv.train(vae, "digits", objective="iwae", num_particles=4, epochs=2, progress=False)
    after = pv.elbo(vae.model, vae.guide, x, num_samples=10)
    stderr = math.hypot(before.mean_stderr, after.mean_stderr)
    assert after.mean - before.mean > 4 * stderr, (before.mean, after.mean, stderr)
    assert torch.equal(result.dataset.test, x)
    with pytest.raises(pv.SpecError, match="'iwae' needs reparameterizable guide sites"):
        ObjectiveChoice("iwae").build(pv.load("mixture_1d", data_shape=(1,)))
    with pytest.raises(pv.SpecError, match="'iwae_dreg' supports guides conditioned on x only"):
        ObjectiveChoice("iwae_dreg").build(pv.load("hierarchical_vae", data_shape=(64,)))


def test_an_objective_with_its_settings_is_one_value():
    assert ObjectiveChoice.parse("renyi:k=5,alpha=0.25") == ObjectiveChoice(
        "renyi", 5, {"alpha": 0.25}
    )
    # Options are completed with their defaults, and the label says what was chosen.
    renyi = ObjectiveChoice("renyi", 3)
    assert renyi.options == {"alpha": 0.5} and renyi.label == "renyi(K=3, alpha=0.5)"
    # The number of particles and the options may come apart (pv.train's keywords, the CLI's
    # --num-particles), but not twice.
    assert ObjectiveChoice.parse("iwae", num_particles=7) == ObjectiveChoice("iwae", 7)
    assert ObjectiveChoice.parse("renyi", options={"alpha": 0}).options == {"alpha": 0.0}
    with pytest.raises(pv.PyroVaeError, match="sets k; do not also give"):
        ObjectiveChoice.parse("iwae:k=5", num_particles=5)
    with pytest.raises(pv.PyroVaeError, match="sets its options"):
        ObjectiveChoice.parse("renyi:alpha=0.2", options={"alpha": 0.3})


@pytest.mark.parametrize(
    "text, words",
    [
        ("iwea", "did you mean 'iwae'"),
        ("iwae:k=0", "k must be >= 1, got 0"),
        ("iwae:k=2.5", "expected name:k=K,option=value, got 'k=2.5'"),
        ("renyi:alpha=1", "option alpha: alpha = 1 is the ELBO"),
        ("renyi:alpha=nan", "option alpha: must be a finite number, got nan"),
        ("renyi:beta=2", "has no option 'beta' (options: alpha)"),
        ("trace:alpha=2", "has no option 'alpha' (options: none)"),
    ],
)
def test_bad_objective_settings_are_refused_by_name(text, words):
    with pytest.raises(pv.PyroVaeError) as caught:
        ObjectiveChoice.parse(text)
    assert words in str(caught.value)


def test_train_takes_the_objective_as_text_choice_or_keywords():
    def objective(**settings):
        vae = pv.load("linear_gaussian", data_shape=(5,), seed=0)
        data = {"n_train": 50, "n_test": 20}
        return pv.train(
            vae, "linear-gaussian", epochs=1, data_options=data, progress=False, **settings
        ).config.objective

    expected = ObjectiveChoice("renyi", 2, {"alpha": 0.3})
    assert objective(objective="renyi:k=2,alpha=0.3") == expected
    assert objective(objective="renyi", num_particles=2, objective_options={"alpha": 0.3}) == (
        expected
    )
    assert objective(objective=expected) == expected
    with pytest.raises(pv.PyroVaeError, match="inside the ObjectiveChoice"):
        objective(objective=expected, num_particles=2)

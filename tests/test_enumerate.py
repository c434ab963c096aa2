"""The ``enumerate`` guide family: discrete latents summed out exactly with TraceEnum_ELBO."""

import warnings

import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F

import pyro_vae as pv
from pyro_vae.model.families import MIN_SCALE
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.spec.parse import parse_guide


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

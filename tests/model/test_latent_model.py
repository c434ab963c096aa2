"""Built models follow the Pyro conventions and pass Pyro's own model/guide validation; image-shaped
data builds flat models; the latent space: encode, decode, interpolate and attribute vectors."""

import warnings

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.util import check_model_guide_match

import pyro_vae as pv

BUNDLED = [  # (model, guide, data dim, binary data)
    ("bernoulli_vae", "mean_field", 64, True),
    ("gaussian_vae", "mean_field", 64, False),
    ("linear_gaussian", "linear_gaussian", 5, False),
    ("mixture_1d", "mixture_1d", 1, False),
    ("hierarchical_vae", "hierarchical_vae", 64, True),
    ("bernoulli_vae", "iaf", 64, True),
    ("bernoulli_vae", "full_normal", 64, True),
    ("vamp_vae", "mean_field_relu", 64, True),
    ("mixture_prior_vae", "mean_field", 64, True),
    ("flow_prior_vae", "mean_field", 64, True),
]


def fake_data(dim, binary, n=6):
    x = torch.rand(n, dim)
    return x.round() if binary else x


@pytest.mark.parametrize("model, guide, dim, binary", BUNDLED)
def test_bundled_pairs_pass_pyro_validation(model, guide, dim, binary):
    vae = pv.load(model, guide, data_shape=(dim,))
    x = fake_data(dim, binary)
    with pyro.validation_enabled(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        guide_trace = poutine.trace(vae.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
        check_model_guide_match(model_trace, guide_trace, max_plate_nesting=1)
        for elbo in (
            Trace_ELBO(),
            Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1),
        ):
            assert torch.isfinite(torch.tensor(elbo.loss(vae.model, vae.guide, x)))
    # Conventions: the data plate, site names, per-datapoint events.
    assert model_trace.nodes["x"]["is_observed"]
    for name in vae.latent_names:
        site = model_trace.nodes[name]
        assert site["cond_indep_stack"][0].name == "data"
        assert site["fn"].batch_shape == (len(x),)


@pytest.mark.parametrize("model, guide, dim, binary", BUNDLED)
def test_sample_and_reconstruct_shapes(model, guide, dim, binary):
    vae = pv.load(model, guide, data_shape=(dim,))
    x = fake_data(dim, binary)
    assert vae.sample(5).shape == (5, dim)
    samples, latents = vae.sample(5, mean=False, return_latents=True)
    assert samples.shape == (5, dim) and set(latents) == set(vae.latent_names)
    if binary:
        assert set(samples.unique().tolist()) <= {0.0, 1.0}
    assert vae.reconstruct(x).shape == x.shape


def test_vectorized_particles_are_a_plate():
    vae = pv.load("hierarchical_vae", data_shape=(64,))
    x = fake_data(64, True)
    elbo = TraceMeanField_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    model_trace, guide_trace = next(elbo._get_traces(vae.model, vae.guide, (x,), {}))
    assert guide_trace.nodes["z1"]["value"].shape == (4, 6, 32)
    assert model_trace.nodes["x"]["fn"].batch_shape == (4, 6)


def test_parameter_names_are_stable():
    vae = pv.load("hierarchical_vae", data_shape=(64,))
    names = set(dict(vae.named_parameters()))
    assert "generative.z1.net.layers.0.weight" in names
    assert "inference.z1.net.layers.0.weight" in names
    pyro.clear_param_store()
    vae.model(fake_data(64, True))
    assert "model$$$z1.net.layers.0.weight" in pyro.get_param_store()


THREE_LAYERS = """
description = "three stochastic layers, written only as TOML"
[latent.z3]
family = "standard_normal"
dim = 4
[latent.z2]
family = "normal"
dim = 8
given = ["z3"]
net = { kind = "mlp", hidden = [16], activation = "tanh" }
[latent.z1]
family = "normal"
dim = 16
given = ["z2"]
net = { kind = "mlp", hidden = [32], activation = "tanh" }
[observed.x]
family = "bernoulli"
given = ["z1"]
net = { kind = "mlp", hidden = [64], activation = "tanh" }
"""
THREE_LAYER_GUIDE = """
[latent.z3]
family = "diagonal_normal"
given = ["x"]
net = { kind = "mlp", hidden = [32], activation = "tanh" }
[latent.z2]
family = "diagonal_normal"
given = ["x", "z3"]
net = { kind = "mlp", hidden = [32], activation = "tanh" }
[latent.z1]
family = "diagonal_normal"
given = ["x", "z2"]
net = { kind = "mlp", hidden = [32], activation = "tanh" }
"""


def test_three_layer_model_written_as_toml_trains(tmp_path):
    (tmp_path / "m.toml").write_text(THREE_LAYERS)
    (tmp_path / "g.toml").write_text(THREE_LAYER_GUIDE)
    vae = pv.load(tmp_path / "m.toml", tmp_path / "g.toml", data_shape=(64,))
    result = pv.train(vae, "digits", epochs=8, batch_size=100, lr=3e-3, progress=False)
    first, last = result.history[0]["test_elbo"], result.history[-1]["test_elbo"]
    # An untrained Bernoulli model scores about 64·log(2) ≈ 44 nats; training must beat that.
    assert last > first and last > -40


def test_image_shaped_data_shape_builds_flat_models():
    vae = pv.load("bernoulli_vae", data_shape=(1, 8, 8), seed=0)
    assert vae.data_shape == (64,) and vae.image_shape == (1, 8, 8)
    assert pv.load("bernoulli_vae", data_shape=(8, 8)).image_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="data_shape must be"):
        pv.load("bernoulli_vae", data_shape=(1, 2, 2, 2))


def test_encode_decode_interpolate_and_attribute_vectors():
    vae = pv.load("hierarchical_vae", data_shape=(64,), seed=0)
    x = torch.rand(6, 64).round()
    codes = vae.encode(x)
    assert list(codes) == ["z2", "z1"] and codes["z2"].shape == (6, 16)
    path = vae.interpolate(x[:3], x[3:], steps=5)
    assert path.shape == (3, 5, 64)
    assert torch.allclose(path[:, 0], vae.decode(codes)[:3], atol=1e-6)
    assert torch.allclose(path[:, -1], vae.decode(codes)[3:], atol=1e-6)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    vectors = vae.attribute_vectors(x, labels)
    counts = torch.bincount(labels).double()
    weighted = sum(counts[c] * vectors[c]["z2"].double() for c in vectors)
    assert torch.allclose(weighted, torch.zeros(16, dtype=torch.float64), atol=1e-5)
    one = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    assert one.decode(one.encode(x)["z"]).shape == (6, 64)  # a tensor for a one-latent model

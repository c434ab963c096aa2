"""The gated dense net of Tomczak & Welling's VAEs: each layer (W h + b) ⊙ sigmoid(V h + c)."""

import pytest
import torch

import pyro_vae as pv
from pyro_vae.model.nets import GatedMLP, NetInput


def test_each_layer_is_a_value_times_its_gate():
    torch.manual_seed(0)
    net = GatedMLP([NetInput("x", 5), NetInput("y", 2)], out_size=3, hidden=[4, 6])
    x, y = torch.randn(7, 5), torch.randn(7, 2)
    h = torch.cat([x, y], -1)
    for value, gate in zip(net.values, net.gates, strict=True):
        h = (h @ value.weight.T + value.bias) * torch.sigmoid(h @ gate.weight.T + gate.bias)
    expected = h @ net.out.weight.T + net.out.bias
    assert torch.allclose(net([x, y]), expected, atol=1e-6)


def test_a_spec_declares_it_and_a_wrong_option_is_named(tmp_path):
    model = tmp_path / "gated.toml"
    text = (
        '[latent.z]\nfamily = "standard_normal"\ndim = 4\n\n[observed.x]\nfamily = "bernoulli"\n'
        'given = ["z"]\nnet = { kind = "gated_mlp", hidden = [16] }\n'
    )
    model.write_text(text)
    vae = pv.load(model, "mean_field", data_shape=(64,), seed=0)
    assert isinstance(vae.likelihood.net, GatedMLP)
    model.write_text(text.replace("hidden = [16]", 'hidden = [16], activation = "relu"'))
    with pytest.raises(pv.SpecError, match="activation"):
        pv.load(model, "mean_field", data_shape=(64,), seed=0)

"""Fixtures of the inference tests: a batch of binarized digits, and Pyro's example VAE pair
written by hand."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_vae as pv


class ExampleVAE(nn.Module):
    """Pyro's examples/vae pair in miniature: sites ``latent`` and ``obs``."""

    def __init__(self, z_dim=3, x_dim=64):
        super().__init__()
        self.z_dim = z_dim
        self.decoder = nn.Sequential(nn.Linear(z_dim, 32), nn.Softplus(), nn.Linear(32, x_dim))
        self.encoder = nn.Sequential(nn.Linear(x_dim, 32), nn.Softplus(), nn.Linear(32, 2 * z_dim))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(x.new_zeros(x.shape[0], self.z_dim), 1.0).to_event(1)
            z = pyro.sample("latent", prior)
            pyro.sample("obs", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            raw = self.encoder(x)
            scale = nn.functional.softplus(raw[:, self.z_dim :]) + 1e-3
            pyro.sample("latent", dist.Normal(raw[:, : self.z_dim], scale).to_event(1))


@pytest.fixture
def digits():
    return pv.load_dataset("digits", binarization="static").test[:24]


@pytest.fixture
def example():
    torch.manual_seed(0)
    return ExampleVAE()

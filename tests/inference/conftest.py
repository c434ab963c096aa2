"""Fixtures of the inference tests: a batch of binarized digits, and Pyro's example VAE pair
written by hand."""

import pytest
import torch

import pyro_vae as pv
from tests.helpers import ExampleVAE


@pytest.fixture
def digits():
    return pv.load_dataset("digits", binarization="static").test[:24]


@pytest.fixture
def example():
    """Pyro's example VAE (z_dim 3) at the initial weights of seed 0."""
    torch.manual_seed(0)
    return ExampleVAE()

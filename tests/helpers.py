"""Helpers the tests of several folders share (fixtures are in conftest.py): the folders the tests
read, the run most run-directory tests start from, the check of a one-line error, the check of a
result's four views, data to feed the data layer, linear_gaussian's closed forms and the
hand-written pairs."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pyro_vae as pv
from pyro_vae.model.families import MIN_SCALE

# -- folders ---------------------------------------------------------------------------------

#: The tests' folder (specs/ and golden/ are in it) and the repository's root.
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SPECS = TESTS / "specs"
#: The reference copies of the real data sets sit beside the repository, in ../shared/data.
SHARED_DATA = REPO.parent / "shared" / "data"

# -- run directories -------------------------------------------------------------------------

TRAIN = ["train", "--model", "bernoulli_vae", "--guide", "mean_field", "--data", "digits"]


def train_cli(out: Path, *extra: str) -> list[str]:
    return [*TRAIN, "--epochs", "2", "--out", str(out), "--no-progress", *extra]


#: Settings of a short pv.train on digits.
SMALL = dict(epochs=2, batch_size=100, lr=1e-3, progress=False)


def small_vae():
    """The bundled bernoulli_vae with the mean_field guide, for 64-pixel digits."""
    return pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0)


def metric_epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- bad input: one line naming the key, option or file ------------------------------------------


def one_line_error(error_type, call, *words):
    """Run ``call``, expect ``error_type``; its message is one line holding every word."""
    with pytest.raises(error_type) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    for word in words:
        assert word in message, (word, message)
    return caught.value


def model_file(tmp_path, text, name="m.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load_model(path, guide="mean_field", data_shape=(64,)):
    return lambda: pv.load(path, guide, data_shape=data_shape)


# -- results ---------------------------------------------------------------------------------


def check_views(result, name: str) -> dict:
    """The four views of ``result`` hold no tensor, repr is one line, to_dict is strict JSON;
    returns to_dict() after a round trip through JSON."""
    text, line, markdown = str(result), repr(result), result._repr_markdown_()
    for view in (text, line, markdown):
        assert "tensor(" not in view
    assert line.startswith(f"{name}(") and "\n" not in line and len(line) < 300
    assert markdown.startswith("**") and "\n|---|" in markdown
    d = result.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    return d


# -- data ------------------------------------------------------------------------------------


def grey(n, *shape, seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


HAVE_MNIST = (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists()
HAVE_BINARIZED_MNIST = (SHARED_DATA / "binarized-mnist" / "binarized_mnist.npz").exists()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"no MNIST copy in {SHARED_DATA}")
needs_binarized_mnist = pytest.mark.skipif(
    not HAVE_BINARIZED_MNIST, reason=f"no binarized MNIST copy in {SHARED_DATA}"
)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def sha256_of_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# -- linear_gaussian in closed form (the models of conftest's ppca fixtures) -------------------


def exact_log_px(vae, x):
    """log p(x) of linear_gaussian in closed form: N(x; b, WWᵀ + σ²I)."""
    decoder = vae.likelihood.net.layers[0]
    W, b = decoder.weight.detach(), decoder.bias.detach()
    var = (2 * vae.likelihood.family.log_scale).exp().detach()
    return dist.MultivariateNormal(b, W @ W.T + var * torch.eye(len(b))).log_prob(x).double()


def closed_form_elbo(vae, x, beta=1.0):
    """Mean (β-weighted) ELBO per datapoint of linear_gaussian with a diagonal Gaussian guide,
    in closed form: E_q log N(x; Wz + b, σ²I) − β KL(q ‖ N(0, I)); differentiable."""
    (d,), latent = vae.data_shape, vae.inference["z"].family.size
    h = vae.inference["z"].net([x])
    loc, scale = h[:, :latent], F.softplus(h[:, latent:]) + MIN_SCALE
    decoder = vae.likelihood.net.layers[0]
    W, b = decoder.weight, decoder.bias
    var = (2 * vae.likelihood.family.log_scale).exp()
    residual = ((x - loc @ W.T - b) ** 2).sum(-1) + (scale**2 @ (W**2).sum(0))
    expected_log_lik = -0.5 * d * torch.log(2 * math.pi * var) - residual / (2 * var)
    kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1)
    return (expected_log_lik - beta * kl).mean()


def shift_encoder(vae, by):
    """Move the guide's mean away from the posterior: a poor proposal, a real amortization gap."""
    with torch.no_grad():
        vae.inference["z"].net.layers[0].bias[:2] += by


# -- hand-written pairs ----------------------------------------------------------------------


def hand_written_pair():
    """``(model, guide, x)``: z ~ N(0, 1), x | z ~ N(z, 0.5²), q(z | x) = N(0.8 x, 0.9²), and six
    datapoints."""

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("latent", dist.Normal(0.0, 1.0))
            pyro.sample("obs", dist.Normal(z, 0.5), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("latent", dist.Normal(0.8 * x, 0.9))

    return model, guide, torch.linspace(-2, 2, 6)


class ExampleVAE(nn.Module):
    """Pyro's examples/vae pair in miniature: an encoder and a decoder registered with
    pyro.module, a latent site ``latent`` and an observed site ``obs``."""

    def __init__(self, z_dim=3, hidden=32, x_dim=64):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(
            nn.Linear(x_dim, hidden), nn.Softplus(), nn.Linear(hidden, 2 * z_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.Softplus(), nn.Linear(hidden, x_dim)
        )

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(x.new_zeros(x.shape[0], self.z_dim), 1.0).to_event(1)
            z = pyro.sample("latent", prior)
            pyro.sample("obs", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            h = self.encoder(x)
            loc, scale = h[:, : self.z_dim], F.softplus(h[:, self.z_dim :]) + 1e-3
            pyro.sample("latent", dist.Normal(loc, scale).to_event(1))

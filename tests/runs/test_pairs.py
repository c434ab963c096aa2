"""pv.train on model/guide pairs written by hand, with Pyro's own conventions (sites ``latent``
and ``obs``), parameters in nn.Modules, PyroModules or pyro.param."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam
from torch import nn

import pyro_vae as pv
from tests.helpers import ExampleVAE


def test_pyros_example_vae_trains_with_any_elbo_objective():
    digits = pv.load_dataset("digits", binarization="static")
    for objective in ("trace", "trace_mean_field", "iwae:k=3"):
        torch.manual_seed(0)
        vae = ExampleVAE(z_dim=4)
        before = pv.elbo(vae.model, vae.guide, digits.test, num_samples=5)
        result = pv.train(
            vae, "digits", binarization="static", objective=objective, epochs=3, progress=False
        )
        after = pv.elbo(vae.model, vae.guide, digits.test, num_samples=5)
        stderr = math.hypot(before.mean_stderr, after.mean_stderr)
        assert after.mean - before.mean > 4 * stderr, objective
        assert result.vae is vae and result.final["step"] == "pyro"
    ll = pv.log_likelihood(vae.model, vae.guide, digits.test[:20], num_samples=50)
    assert torch.isfinite(ll.log_px).all()


def test_a_tuple_of_functions_with_pyro_params_trains():
    x_all = pv.load_dataset("linear-gaussian", n_train=400, n_test=100)

    def model(x):
        w = pyro.param("w", torch.zeros(5, 2))
        b = pyro.param("b", torch.zeros(5))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z @ w.T + b, 0.5).to_event(1), obs=x)

    def guide(x):
        a = pyro.param("a", torch.zeros(2, 5))
        s = pyro.param("s", torch.ones(2), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x @ a.T, s).to_event(1))

    result = pv.train(
        (model, guide),
        "linear-gaussian",
        epochs=3,
        lr=0.05,
        progress=False,
        data_options={"n_train": 400, "n_test": 100},
    )
    history = [r["test_elbo"] for r in result.history]
    assert history[-1] > history[0] + 1  # several nats: w starts at 0, far from the truth
    assert result.config.objective.name == "trace"  # no spec check vouches for more
    assert torch.equal(result.dataset.test, x_all.test)


class PyroModuleVAE(PyroModule):
    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.zeros(1))
        self.guide_loc = PyroParam(torch.zeros(1))

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(self.loc, 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.guide_loc + 0.5 * x, 0.8).to_event(1))


def test_a_pyro_module_pair_trains_its_pyro_params():
    vae = PyroModuleVAE()
    pv.train(vae, "mixture-1d", epochs=2, lr=0.05, progress=False)
    assert vae.loc.item() != 0.0 and vae.guide_loc.item() != 0.0


def test_what_a_hand_written_pair_cannot_do_is_refused_clearly(tmp_path):
    vae = ExampleVAE(z_dim=4)
    with pytest.raises(pv.PyroVaeError, match="run directories are for spec-built models"):
        pv.train(vae, "digits", out=tmp_path / "run", epochs=1)
    assert not (tmp_path / "run").exists()
    with pytest.raises(pv.PyroVaeError, match="got function"):
        pv.train(lambda x: None, "digits", epochs=1)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(pyro.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x[:, 0])

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(pv.PyroVaeError, match="no parameters to train"):
        pv.train((model, guide), "mixture-1d", epochs=1)


class Labelled(nn.Module):
    """An M2-like pair called as model(x, y): a label it observes, one-hot, like Pyro's ss-vae."""

    def __init__(self, classes=10, z_dim=4, x_dim=64):
        super().__init__()
        self.decoder = nn.Linear(z_dim + classes, x_dim)
        self.encoder = nn.Linear(x_dim + classes, 2 * z_dim)
        self.z_dim, self.classes = z_dim, classes

    def model(self, x, y=None):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data"):
            z = pyro.sample("z", dist.Normal(torch.zeros(len(x), self.z_dim), 1.0).to_event(1))
            prior = torch.ones(len(x), self.classes) / self.classes
            y = pyro.sample("y", dist.OneHotCategorical(prior), obs=y)
            logits = self.decoder(torch.cat([z, y], -1))
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x, y=None):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data"):
            if y is None:
                y = pyro.sample("y", dist.OneHotCategorical(torch.ones(len(x), self.classes) / 10))
            h = self.encoder(torch.cat([x, y], -1))
            loc, scale = h[:, : self.z_dim], nn.functional.softplus(h[:, self.z_dim :]) + 1e-3
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def test_a_pair_called_with_more_than_x_trains_on_named_arrays():
    pair = Labelled()
    result = pv.train(pair, "digits", args=("x", "labels_onehot"), epochs=2, binarization="static")
    assert result.config.args == ("x", "labels_onehot")
    first, last = (r["test_elbo"] for r in (result.history[0], result.history[-1]))
    assert math.isfinite(last) and last > first  # log p(x, y): it learns
    with pytest.raises(pv.DataError, match="has no array 'label'; it has \\['x', 'labels'"):
        pv.train(Labelled(), "digits", args=("x", "label"), epochs=1)


def test_a_model_that_observes_nothing_with_the_arguments_given_is_refused():
    class Conditional(nn.Module):  # Pyro's CVAE: without its output, model(x) observes nothing
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(64, 2)

        def model(self, xs, ys=None):
            pyro.module("net", self)
            with pyro.plate("data"):
                z = pyro.sample("z", dist.Normal(self.net(xs), 1.0).to_event(1))
                if ys is not None:
                    pyro.sample("y", dist.Normal(z.sum(-1), 1.0), obs=ys)
                else:
                    pyro.deterministic("y", z.sum(-1))

        def guide(self, xs, ys=None):
            with pyro.plate("data"):
                pyro.sample("z", dist.Normal(self.net(xs), 1.0).to_event(1))

    with pytest.raises(pv.PyroVaeError, match="the model observes nothing when called with 1"):
        pv.train(Conditional(), "digits", epochs=1)


class Flattening(ExampleVAE):
    """A model that cannot take a particle dimension: it flattens z to (batch, -1) first."""

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(0.0, 1.0).expand([self.z_dim]).to_event(1))
            logits = self.decoder(z.reshape(len(x), -1))
            pyro.sample("obs", dist.Bernoulli(logits=logits).to_event(1), obs=x)


@pytest.mark.filterwarnings("ignore:the model does not run with a particle dimension")
def test_a_pair_that_cannot_broadcast_trains_with_several_particles_looped():
    vae = Flattening()
    pair = (vae.model, vae.guide)
    result = pv.train(pair, "digits", num_particles=3, epochs=1, binarization="static")
    assert result.config.objective.num_particles == 3
    assert math.isfinite(result.final["train_elbo"]) and math.isfinite(result.final["test_elbo"])


def test_collate_runs_once_per_batch_for_model_and_guide():
    calls = []

    def collate(x):
        calls.append(len(x))
        return (x,)

    result = pv.train(
        ExampleVAE(), "digits", collate=collate, epochs=1, batch_size=50, binarization="static"
    )
    steps = math.ceil(len(result.dataset.train) / 50)
    assert math.isfinite(result.final["test_elbo"])
    assert steps <= len(calls) <= steps + 10, (steps, len(calls))  # a few more: the checks

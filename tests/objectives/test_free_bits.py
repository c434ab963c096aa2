"""Free bits (Kingma et al. 2016): the ELBO at λ = 0, the floor on each group's batch-mean KL
in closed form, groups per site and per coordinate, masks, and pairs written by hand."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pyro_vae as pv
from pyro_vae.objectives.free_bits import FreeBitsELBO
from pyro_vae.objectives.registry import ObjectiveChoice
from tests.helpers import SMALL, small_vae


def _same_draws(fn, seed=0):
    pyro.set_rng_seed(seed)
    return fn()


@pytest.mark.parametrize(
    "per, estimator, analytic",
    # Sampled per coordinate, a batch-mean KL estimate can fall below 0, where λ = 0 lifts it.
    [("site", Trace_ELBO, False), ("site", TraceMeanField_ELBO, True),
     ("dim", TraceMeanField_ELBO, True)],
)  # fmt: skip
def test_at_zero_it_is_the_elbo_of_the_estimator_it_takes_its_kl_from(per, estimator, analytic):
    vae, x = small_vae(), pv.load_dataset("digits", binarization="static").test[:50]
    expected = _same_draws(lambda: estimator().differentiable_loss(vae.model, vae.guide, x))
    free = FreeBitsELBO(0.0, per, analytic_kl=analytic)
    got = _same_draws(lambda: free.differentiable_loss(vae.model, vae.guide, x))
    assert torch.allclose(got, expected, rtol=1e-6)


class LinearPair:
    """z ~ N(0, I_2) per datapoint in a sizeless plate named "batch", x ~ N(w·z, 1); the guide
    N(a·x, s) with fixed a and s, so each coordinate's KL is known in closed form. The model
    takes an extra argument, and ``masked`` rows are masked out of the latent's terms."""

    def __init__(self, a=(0.5, -1.0), s=(0.3, 2.0)):
        self.a = torch.tensor(a, requires_grad=True)
        self.s = torch.tensor(s)

    def model(self, x, noise=1.0, masked=None):
        with pyro.plate("batch"), pyro.poutine.mask(mask=True if masked is None else masked):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("batch"):
            pyro.sample("x", dist.Normal(z.sum(-1), noise), obs=x)

    def guide(self, x, noise=1.0, masked=None):
        with pyro.plate("batch"):
            pyro.sample("z", dist.Normal(self.a * x[:, None], self.s).to_event(1))

    def kl(self, x) -> torch.Tensor:
        """KL(q ‖ p) per datapoint and coordinate."""
        loc, s = self.a * x[:, None], self.s
        return 0.5 * (loc**2 + s**2 - 1) - s.log()


def test_the_floor_applies_to_the_batch_mean_kl_of_each_group():
    pair, x = LinearPair(), torch.linspace(-2, 2, 8)
    per_dim = pair.kl(x).mean(0).detach()  # [small, large]: one coordinate under the floor
    lam = float(per_dim.mean())
    assert per_dim.min() < lam < per_dim.max()
    base = _same_draws(lambda: FreeBitsELBO(0.0, "dim", True).loss(pair.model, pair.guide, x, 1.0))
    for per, groups in (("dim", per_dim), ("site", per_dim.sum(0, keepdim=True))):
        got = _same_draws(
            lambda per=per: FreeBitsELBO(lam, per, True).loss(pair.model, pair.guide, x, 1.0)
        )
        raised = len(x) * float((groups.clamp(min=lam) - groups).sum())
        assert got - base == pytest.approx(raised, rel=1e-5)
    kls = FreeBitsELBO(lam, "dim", True).group_kls(pair.model, pair.guide, x)
    assert torch.allclose(kls["z"], per_dim)


def test_a_group_under_its_floor_gets_no_gradient_from_its_kl():
    """With x independent of z, only the KL moves the guide: at a floor above every group's
    KL the guide's parameters get no gradient at all."""
    pair, x = LinearPair(), torch.linspace(-2, 2, 8)

    def model(x, noise=1.0):
        with pyro.plate("batch"):
            pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(0.0, noise), obs=x)

    for lam, moves in ((0.0, True), (100.0, False)):
        pair.a.grad = None
        FreeBitsELBO(lam, "dim", True).differentiable_loss(model, pair.guide, x).backward()
        assert bool((pair.a.grad != 0).any()) == moves


def test_masked_rows_add_no_kl():
    pair, x = LinearPair(), torch.linspace(-2, 2, 8)
    masked = torch.arange(8) < 4
    kls = FreeBitsELBO(0.0, "dim", True).group_kls(pair.model, pair.guide, x, 1.0, masked)
    expected = (pair.kl(x) * masked[:, None]).sum(0) / 8
    assert torch.allclose(kls["z"], expected.detach())


def test_groups_per_dim_need_factorized_distributions():
    def model(x):
        with pyro.plate("data", len(x)):
            mix = dist.MixtureSameFamily(
                dist.Categorical(torch.ones(3)), dist.Normal(torch.zeros(3, 2), 1.0).to_event(1)
            )
            z = pyro.sample("z", mix)
            pyro.sample("x", dist.Normal(z.sum(-1), 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))

    x = torch.zeros(4)
    assert torch.isfinite(FreeBitsELBO(0.5, "site").differentiable_loss(model, guide, x))
    with pytest.raises(pv.ModelGuideError, match="not a factorized one.*per site"):
        FreeBitsELBO(0.5, "dim").differentiable_loss(model, guide, x)


def test_objectives_without_a_kl_term_refuse_free_bits(tmp_path, refused):
    with pytest.raises(pv.PyroVaeError, match="free bits .* use one of trace, trace_mean_field"):
        ObjectiveChoice.parse("iwae:k=5").free_bits(small_vae(), 0.5)
    refused(
        ["train", "--model", "bernoulli_vae", "--out", str(tmp_path / "r"), "--free-bits", "1",
         "--objective", "iwae:k=2"],
        "free bits", "iwae",
    )  # fmt: skip


def test_a_run_trains_with_free_bits_and_records_them(tmp_path):
    settings = {**SMALL, "free_bits": 2.0, "free_bits_per": "dim"}
    floored = pv.train(small_vae(), "digits", out=tmp_path / "fb", **settings)
    plain = pv.train(small_vae(), "digits", **SMALL)
    assert floored.history[-1]["step"] == "pyro"
    # The training objective pays at least λ per coordinate: far below the test ELBO at first.
    assert floored.history[0]["train_elbo"] < plain.history[0]["train_elbo"] - 50
    config = (tmp_path / "fb" / "config.json").read_text()
    assert '"free_bits": 2.0' in config and '"free_bits_per": "dim"' in config
    assert "free bits | 2 nats per dim" in (tmp_path / "fb" / "report.md").read_text()

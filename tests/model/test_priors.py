"""Learned priors: mixture_normal, flow_normal and the VampPrior, against hand computations."""

import math
import textwrap

import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F

import pyro_vae as pv
from pyro_vae.model.families import MIN_SCALE


def model_spec(tmp_path, prior, options, dim=3):
    path = tmp_path / f"{prior}.toml"
    path.write_text(
        textwrap.dedent(f"""
        [latent.z]
        family = "{prior}"
        dim = {dim}
        {options}
        [observed.x]
        family = "bernoulli"
        given = ["z"]
        net = {{ kind = "mlp", hidden = [16] }}
    """)
    )
    return path


def guide_spec(tmp_path, family, options="", given='["x"]'):
    path = tmp_path / f"guide_{family}.toml"
    path.write_text(
        f'[latent.z]\nfamily = "{family}"\n{options}\ngiven = {given}\n'
        'net = { kind = "mlp", hidden = [16] }\n'
    )
    return path


def test_mixture_prior_density_is_the_sum_over_its_components(tmp_path):
    vae = pv.load(
        model_spec(tmp_path, "mixture_normal", "components = 4"),
        "mean_field",
        data_shape=(10,),
        seed=0,
    )
    family = vae.generative["z"].family
    with torch.no_grad():
        family.logits.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
        family.log_scale.uniform_(-0.5, 0.5)
    z = torch.randn(7, 3) * 2
    by_hand = torch.stack(
        [
            family.logits.log_softmax(0)[c]
            + dist.Normal(family.loc[c], family.log_scale[c].exp()).log_prob(z).sum(-1)
            for c in range(4)
        ]
    ).logsumexp(0)
    assert torch.allclose(vae.generative["z"]({}).log_prob(z), by_hand, atol=1e-5)
    assert family.loc.std() > 0.5  # components start apart, not all at 0


@pytest.mark.parametrize(
    "guide, options", [("diagonal_normal", ""), ("full_normal", ""), ("iaf", "flows = 2")]
)
def test_vamp_prior_is_the_mixture_of_the_guide_at_its_pseudo_inputs(tmp_path, guide, options):
    vae = pv.load(
        model_spec(tmp_path, "vamp", "pseudo_inputs = 6"),
        guide_spec(tmp_path, guide, options),
        data_shape=(10,),
        seed=0,
    )
    prior = vae.generative["z"].family
    encoder = vae.inference["z"]
    z = torch.randn(5, 3)
    # One component at a time, with no broadcasting between values and components.
    per_component = torch.stack(
        [encoder({"x": u[None]}).log_prob(z) for u in prior.pseudo_inputs], -1
    )
    by_hand = per_component.logsumexp(-1) - math.log(6)
    assert torch.allclose(vae.generative["z"]({}).log_prob(z), by_hand, atol=1e-5)
    if guide == "diagonal_normal":  # and, for the diagonal guide, from the net's raw output
        h = encoder.net([prior.pseudo_inputs])
        loc, scale = h[:, :3], F.softplus(h[:, 3:]) + MIN_SCALE
        manual = dist.Normal(loc, scale).log_prob(z[:, None]).sum(-1).logsumexp(-1) - math.log(6)
        assert torch.allclose(by_hand, manual, atol=1e-5)
    # The encoder's weights are the guide's: not duplicated in the model's parameters.
    model_params = {id(p) for p in vae.generative.parameters()}
    assert not model_params & {id(p) for p in encoder.parameters()}
    assert id(prior.pseudo_inputs) in model_params


def test_vamp_needs_a_guide_of_x_alone(tmp_path):
    model = model_spec(tmp_path, "vamp", "pseudo_inputs = 4")
    path = tmp_path / "no_x.toml"
    path.write_text('[latent.z]\nfamily = "diagonal_normal"\n')
    with pytest.raises(pv.SpecError, match=r"no_x.toml: latent.z.given: the 'vamp' prior of 'z'"):
        pv.load(model, path, data_shape=(10,))


def test_flow_prior_density_integrates_to_one_and_matches_its_samples(tmp_path):
    vae = pv.load(
        model_spec(tmp_path, "flow_normal", "flows = 3", dim=2),
        "mean_field",
        data_shape=(10,),
        seed=0,
    )
    family = vae.generative["z"].family
    with torch.no_grad():  # move the flows away from the identity they start near
        for p in family.flows.parameters():
            p.add_(0.3 * torch.randn_like(p))
    prior = vae.generative["z"]({})
    grid = torch.linspace(-8, 8, 801)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        density = prior.log_prob(zz).exp().reshape(801, 801)
    step = (grid[1] - grid[0]).item()
    assert density.sum().item() * step**2 == pytest.approx(1.0, abs=2e-3)
    # Samples run the flows backwards; pushed forwards again they must be standard normal.
    with torch.no_grad():
        samples = prior.sample((20000,))
        eps = samples
        for flow in family.flows:
            eps = flow(eps)
    assert (eps.mean(0).abs() < 4 / math.sqrt(20000)).all()
    assert torch.allclose(eps.var(0), torch.ones(2), atol=4 * math.sqrt(2 / 20000))
    # The density is the change of variables through the flows, Jacobian by autograd.
    z = torch.randn(3, 2)

    def forward(v):
        for flow in family.flows:
            v = flow(v)
        return v

    for point in z:
        jacobian = torch.autograd.functional.jacobian(forward, point)
        expected = dist.Normal(0.0, 1.0).log_prob(forward(point)).sum() + torch.logdet(jacobian)
        assert prior.log_prob(point).item() == pytest.approx(expected.item(), abs=1e-4)


@pytest.mark.parametrize(
    "prior, options",
    [
        ("mixture_normal", "components = 3"),
        ("flow_normal", "flows = 2"),
        ("vamp", "pseudo_inputs = 10"),
    ],
)
def test_learned_priors_train_and_come_back_from_their_checkpoint(tmp_path, prior, options):
    run = tmp_path / "run"
    vae = pv.load(
        model_spec(tmp_path, prior, options, dim=4), "mean_field", data_shape=(64,), seed=0
    )
    z = torch.randn(6, 4)
    before = vae.generative["z"]({}).log_prob(z).detach()
    result = pv.train(vae, "digits", epochs=2, out=run, progress=False)
    after = result.vae.generative["z"]({}).log_prob(z).detach()
    assert not torch.allclose(before, after)  # the prior was trained
    assert result.final["step"] == "fused"  # the fused step covers learned priors
    loaded, _ = pv.load_run(run)
    assert torch.equal(loaded.generative["z"]({}).log_prob(z).detach(), after)
    assert loaded.sample(4).shape == (4, 64)


@pytest.mark.parametrize(
    "prior, body, key, words",
    [
        ("mixture_normal", "components = 1", "components", "expected an integer >= 2, got 1"),
        ("mixture_normal", "", "components", "required key is missing"),
        ("vamp", "pseudo_inputs = 0", "pseudo_inputs", "expected a positive integer, got 0"),
        ("vamp", "pseudo_input = 5", "pseudo_input", "did you mean 'pseudo_inputs'?"),
        ("flow_normal", "flows = 2\nhidden = [2]", "hidden", "at least dim = 3, got [2]"),
    ],
)
def test_bad_prior_options_name_the_key(tmp_path, prior, body, key, words):
    path = model_spec(tmp_path, prior, body)
    with pytest.raises(pv.SpecError) as caught:
        pv.load(path, "mean_field", data_shape=(10,))
    assert str(caught.value).startswith(f"{path}: latent.z.{key}: ") and words in str(caught.value)


def test_vamp_density_in_blocks_equals_all_at_once(tmp_path, monkeypatch):
    from pyro_vae.model import priors

    vae = pv.load(
        model_spec(tmp_path, "vamp", "pseudo_inputs = 6"),
        guide_spec(tmp_path, "full_normal"),
        data_shape=(10,),
        seed=0,
    )
    z = torch.randn(2, 5, 3)  # (particles, datapoints, dim), as inside a particles plate
    whole = vae.generative["z"]({}).log_prob(z)
    monkeypatch.setattr(priors, "PAIRS_PER_BLOCK", 40)  # two values per block
    assert whole.shape == (2, 5)
    assert torch.allclose(vae.generative["z"]({}).log_prob(z), whole, atol=1e-6)

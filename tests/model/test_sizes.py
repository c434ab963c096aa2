"""Pairs far too large to allocate are refused by the key that sizes them, before anything is
allocated, and the limit comes from the environment; the count of values behind the refusal is
exact for every family, guide family and net."""

from __future__ import annotations

import time

import pytest
import torch

import pyro_vae as pv
from pyro_vae.bundled import bundled_dir, bundled_names
from pyro_vae.model import sizes
from pyro_vae.model.families import FAMILIES, Family
from pyro_vae.model.guide_families import GUIDE_FAMILIES
from pyro_vae.model.nets import NETS
from pyro_vae.spec.resolve import read_guide, read_model
from tests.helpers import load_model, model_file, one_line_error

BERNOULLI_VAE = (bundled_dir("models") / "bernoulli_vae.toml").read_text()
GAUSSIAN_VAE = (bundled_dir("models") / "gaussian_vae.toml").read_text()


def _allocated_while(call):
    """(result or error, seconds, largest tensor allocated) of ``call``; tensors are seen through
    torch's allocation of parameters (nn.Linear, nn.Parameter go through torch.empty)."""
    largest = [0]
    original = torch.empty

    def watched(*args, **kwargs):
        tensor = original(*args, **kwargs)
        largest[0] = max(largest[0], tensor.numel())
        return tensor

    start = time.perf_counter()
    torch.empty = watched
    try:
        with pytest.raises(pv.SpecError) as caught:
            call()
    finally:
        torch.empty = original
    return caught.value, time.perf_counter() - start, largest[0]


@pytest.mark.parametrize(
    "model, old, new, guide, shape, key",
    [
        ("bernoulli_vae", "dim = 50", "dim = 10000000", "mean_field", (64,), "latent.z.dim"),
        (
            "bernoulli_vae",
            "hidden = [200, 200]",
            "hidden = [100000, 100000]",
            "mean_field",
            (64,),
            "observed.x.net.hidden",
        ),
        ("bernoulli_vae", "dim = 50", "dim = 100000", "full_normal", (64,), "latent.z.dim"),
        ("conv_vae", "kernel = 3", "kernel = 99999", "conv", (1, 28, 28), "observed.x.net.kernel"),
        ("conv_vae", "stride = 2", "stride = 100000", "conv", (1, 28, 28), "observed.x.net"),
        (
            "vamp_vae",
            "pseudo_inputs = 500",
            "pseudo_inputs = 1000000000",
            "mean_field",
            (784,),
            "latent.z.pseudo_inputs",
        ),
    ],
)
def test_a_pair_too_large_is_refused_by_key_before_any_allocation(
    tmp_path, model, old, new, guide, shape, key
):
    text = (bundled_dir("models") / f"{model}.toml").read_text()
    assert old in text
    path = model_file(tmp_path, text.replace(old, new))
    error, seconds, largest = _allocated_while(load_model(path, guide, shape))
    assert error.key == key and str(error).startswith(f"{path}: {key}: ")
    assert "above the limit of 2 GiB (PYRO_VAE_MAX_BYTES)" in str(error)
    assert "\n" not in str(error)
    assert seconds < 5 and largest < 10**6


def test_the_parameter_count_is_named_in_the_message(tmp_path):
    path = model_file(tmp_path, BERNOULLI_VAE.replace("[200, 200]", "[100000, 100000]"))
    message = str(one_line_error(pv.SpecError, load_model(path)))
    # 200·10⁵ (z → h1) + 10¹⁰ (h1 → h2) + 10⁵·64 (h2 → x) weights, with their biases.
    # The guide's 64-200-200-100 encoder, and the prior's buffer of 50 zeros.
    decoder = 50 * 100_000 + 100_000 + 100_000**2 + 100_000 + 100_000 * 64 + 64
    encoder = 64 * 200 + 200 + 200 * 200 + 200 + 200 * 100 + 100
    total = decoder + encoder + 50
    assert f"would hold {total:,} parameters (37.3 GiB of float32)" in message
    # Every weight of a layer with a hidden side is blamed on hidden; the 64 output biases not.
    assert f"{decoder - 64:,} of them are sized by this key" in message


def test_the_limit_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(sizes.MAX_BYTES_ENV, "1000")
    one_line_error(
        pv.SpecError,
        lambda: pv.load("bernoulli_vae", data_shape=(64,)),
        "above the limit of 1000 bytes",
    )
    path = model_file(tmp_path, BERNOULLI_VAE.replace("dim = 50", "dim = 10000000"))
    model, guide = read_model(path), read_guide("mean_field")
    monkeypatch.delenv(sizes.MAX_BYTES_ENV)
    one_line_error(pv.SpecError, lambda: sizes.check_sizes(model, guide, 64), "dim")
    monkeypatch.setenv(sizes.MAX_BYTES_ENV, str(2**40))
    counts, _ = sizes.value_counts(model, guide, 64)
    assert sum(counts.values()) * 4 < 2**40  # allowed now (not built: 22 GiB)
    sizes.check_sizes(model, guide, 64)  # no SpecError under the raised limit
    for bad in ("lots", "-5", "0", "1e9", "١٠٠"):
        monkeypatch.setenv(sizes.MAX_BYTES_ENV, bad)
        one_line_error(
            pv.PyroVaeError,
            lambda: pv.load("bernoulli_vae", data_shape=(64,)),
            "PYRO_VAE_MAX_BYTES",
            "expected a whole number of bytes",
        )


def _real_values(vae) -> int:
    """Float32 values of the distinct storages of a built pair's parameters and buffers."""
    storages = {}
    for tensor in [*vae.parameters(), *vae.buffers()]:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()) // 4


#: Guide entries that, with the bundled ones, build every guide family with and without inputs.
EXTRA_GUIDES = {
    "low_rank": '[latent.z]\nfamily = "low_rank_normal"\nrank = 3\ngiven = ["x"]\n'
    'net = { kind = "mlp", hidden = [16] }\n',
    "low_rank_global": '[latent.z]\nfamily = "low_rank_normal"\nrank = 2\n',
    "full_global": '[latent.z]\nfamily = "full_normal"\n',
    "iaf_global": '[latent.z]\nfamily = "iaf"\nflows = 3\nhidden = [64, 64]\n',
    "diagonal_global": '[latent.z]\nfamily = "diagonal_normal"\n',
    "iaf_context": '[latent.z]\nfamily = "iaf"\ncontext = 5\ngiven = ["x"]\n'
    'net = { kind = "linear" }\n',
}

#: Models that, with the bundled ones, build every family, scale mode and net kind.
EXTRA_MODELS = {
    "fixed_scale": GAUSSIAN_VAE.replace('scale = "learned"', "scale = 0.1"),
    "per_dim": GAUSSIAN_VAE.replace('scale = "learned"', 'scale = "learned_per_dim"'),
    "net_scale": GAUSSIAN_VAE.replace('scale = "learned"', 'scale = "net"'),
    "learned_prior": BERNOULLI_VAE.replace('"standard_normal"', '"normal"'),
    "continuous": BERNOULLI_VAE.replace('"bernoulli"', '"continuous_bernoulli"'),
    "linear": BERNOULLI_VAE.replace(
        'kind = "mlp", hidden = [200, 200], activation = "tanh"', 'kind = "linear"'
    ),
    "gated": BERNOULLI_VAE.replace(
        'kind = "mlp", hidden = [200, 200], activation = "tanh"',
        'kind = "gated_mlp", hidden = [30, 20]',
    ),
}


def test_the_count_equals_the_values_of_the_built_modules(tmp_path):
    """Every bundled model with every bundled guide (where they fit), the extra models and
    guides above, on flat and image data: the count is exact, so the limit is exact too."""
    models = {name: name for name in bundled_names("models")}
    models.update({n: model_file(tmp_path, t, f"{n}.toml") for n, t in EXTRA_MODELS.items()})
    guides = {name: name for name in bundled_names("guides")}
    guides.update({n: model_file(tmp_path, t, f"g_{n}.toml") for n, t in EXTRA_GUIDES.items()})
    built = set()
    for model in models.values():
        for guide in guides.values():
            for shape in [(64,), (1, 8, 8), (3, 5, 6), (7, 6)]:
                try:
                    vae = pv.load(model, guide, data_shape=shape)
                except pv.SpecError:
                    continue  # a pair that does not fit (a conv guide on flat data, ...)
                counts, _ = sizes.value_counts(
                    vae.model_spec, vae.guide_spec, vae.data_shape[-1], vae.image_shape
                )
                assert sum(counts.values()) == _real_values(vae), (model, guide, shape)
                built |= {n.family for n in vae.model_spec.latents.values()}
                built |= {vae.model_spec.observed.family}
                built |= {n.family for n in vae.guide_spec.latents.values()}
                built |= {n.net.kind for n in vae.guide_spec.latents.values() if n.net}
                built |= {vae.model_spec.observed.net.kind}
                built |= {n.transition.kind for n in vae.model_spec.chains.values()}
    every = set(FAMILIES.names()) | set(GUIDE_FAMILIES.names()) | set(NETS.names())
    assert every <= built, every - built
    # Each entry counts its own tensors: no family falls back on the base class's count.
    counted = {
        n for n in FAMILIES.names() if FAMILIES.get(n).count.__func__ is not Family.count.__func__
    }
    assert counted == set(FAMILIES.names())
    counted = {n for n in GUIDE_FAMILIES.names() if GUIDE_FAMILIES.get(n).count is not None}
    assert counted | {"enumerate"} == set(GUIDE_FAMILIES.names())
    assert all(callable(NETS.get(n).count) for n in NETS.names())


def test_a_conv_encoder_with_a_second_input_is_counted_exactly(tmp_path):
    model = model_file(
        tmp_path,
        '[latent.z1]\nfamily = "standard_normal"\ndim = 3\n'
        '[latent.z2]\nfamily = "normal"\ndim = 4\ngiven = ["z1"]\nnet = { kind = "linear" }\n'
        '[observed.x]\nfamily = "bernoulli"\ngiven = ["z2"]\n'
        'net = { kind = "conv", channels = [8, 4] }\n',
    )
    guide = model_file(
        tmp_path,
        '[latent.z2]\nfamily = "diagonal_normal"\ngiven = ["x"]\n'
        'net = { kind = "conv", channels = [5], stride = 3, kernel = 5 }\n'
        '[latent.z1]\nfamily = "diagonal_normal"\ngiven = ["z2", "x"]\n'
        'net = { kind = "conv", channels = [6, 7] }\n',
        "g.toml",
    )
    vae = pv.load(model, guide, data_shape=(2, 9, 7))
    counts, maps = sizes.value_counts(vae.model_spec, vae.guide_spec, 126, (2, 9, 7))
    assert sum(counts.values()) == _real_values(vae)
    assert set(maps) == {
        (str(model), "observed.x.net"),
        (str(guide), "latent.z2.net"),
        (str(guide), "latent.z1.net"),
    }

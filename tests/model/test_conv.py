"""Convolutional nets: encoders of image x, transposed-conv decoders to image x."""

import textwrap

import numpy as np
import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.model.conv import ConvDecoder, ConvEncoder


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 5, 7)])
def test_conv_vae_shapes_for_any_image_size(shape):
    vae = pv.load("conv_vae", data_shape=shape, seed=0)
    assert isinstance(vae.likelihood.net, ConvDecoder)
    assert isinstance(vae.inference["z"].net, ConvEncoder)
    d = int(np.prod(shape))
    x = torch.rand(4, d).round()
    assert vae.sample(3).shape == (3, d) and vae.reconstruct(x).shape == (4, d)
    # Leading dims (particles, datapoints) pass through both nets.
    z = torch.randn(2, 4, 32)
    assert vae.likelihood.net([z]).shape == (2, 4, d)
    assert vae.inference["z"].net([x]).shape == (4, 64)
    assert torch.isfinite(
        torch.tensor(pv.log_likelihood(vae.model, vae.guide, x, num_samples=8).mean)
    )


def test_decoder_output_is_parameter_major_in_the_datas_pixel_order(tmp_path):
    """A Gaussian decoder with a net scale has 2 numbers per pixel: its flat output is every
    pixel's mean in (C, H, W) order, then every pixel's scale; flattening the conv output's
    maps must give exactly that, for several channels."""
    spec = tmp_path / "m.toml"
    spec.write_text(
        textwrap.dedent("""
        [latent.z]
        family = "standard_normal"
        dim = 3
        [observed.x]
        family = "normal"
        given = ["z"]
        net = { kind = "conv", channels = [4], kernel = 3, stride = 2 }
    """)
    )
    vae = pv.load(spec, "mean_field", data_shape=(2, 5, 6), seed=0)
    decoder = vae.likelihood.net
    z = torch.randn(7, 3)
    maps = decoder.upsample(decoder.project(z).reshape(-1, *decoder.start))  # (7, 2·2, 6, 6)
    maps = maps[..., :5, :6].reshape(7, 2, 2, 5, 6)  # (batch, parameter, channel, row, column)
    flat = decoder([z])
    assert torch.equal(flat[:, :60], maps[:, 0].reshape(7, 60))
    assert torch.equal(flat[:, 60:], maps[:, 1].reshape(7, 60))
    # An image's pixel (c, h, w) is entry c·H·W + h·W + w of its row: the mean's too.
    px = vae.likelihood({"z": z})
    assert torch.equal(px.mean.reshape(7, 2, 5, 6), maps[:, 0])


def test_conv_encoder_joins_vector_inputs_after_its_features(tmp_path):
    guide = tmp_path / "g.toml"
    guide.write_text(
        textwrap.dedent("""
        [latent.z2]
        family = "diagonal_normal"
        given = ["x"]
        net = { kind = "conv", channels = [8] }
        [latent.z1]
        family = "diagonal_normal"
        given = ["x", "z2"]
        net = { kind = "conv", channels = [8, 8], kernel = 5 }
    """)
    )
    vae = pv.load("hierarchical_vae", guide, data_shape=(1, 8, 8), seed=0)
    result = pv.train(vae, "digits", epochs=1, progress=False)
    assert np.isfinite(result.final["test_elbo"])


def test_conv_vae_trains_on_digits_and_on_colour_images(tmp_path):
    digits = pv.train(
        pv.load("conv_vae", data_shape=(1, 8, 8), seed=0), "digits", epochs=3, progress=False
    )
    elbos = [r["test_elbo"] for r in digits.history]
    assert elbos[-1] > elbos[0] + 3  # nats: it learns (one epoch's estimate varies by ~0.5)
    path = tmp_path / "colour.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        train=(rng.random((200, 3, 6, 6)) > 0.5).astype(np.float32),
        test=(rng.random((50, 3, 6, 6)) > 0.5).astype(np.float32),
    )
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "conv_vae",
                "--data",
                str(path),
                "--epochs",
                "1",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    vae, _ = pv.load_run(run)
    assert vae.image_shape == (3, 6, 6) and (run / "plots" / "samples.png").exists()


@pytest.mark.parametrize(
    "net, words",
    [
        (
            '{ kind = "conv", channels = [8], kernel = 4 }',
            "expected an odd positive integer, got 4",
        ),
        ('{ kind = "conv", channels = [] }', "expected a non-empty list"),
        ('{ kind = "conv", chanels = [8] }', "did you mean 'channels'?"),
    ],
)
def test_bad_conv_options_name_the_key(tmp_path, net, words):
    spec = tmp_path / "m.toml"
    spec.write_text(
        f'[latent.z]\nfamily = "standard_normal"\ndim = 2\n[observed.x]\n'
        f'family = "bernoulli"\ngiven = ["z"]\nnet = {net}\n'
    )
    with pytest.raises(pv.SpecError) as caught:
        pv.load(spec, "mean_field", data_shape=(1, 8, 8))
    assert str(caught.value).startswith(f"{spec}: observed.x.net.") and words in str(caught.value)


def test_conv_on_flat_data_or_between_latents_is_refused(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--model",
                "conv_vae",
                "--data",
                "linear-gaussian",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "conv_vae.toml: observed.x.net: a 'conv' net needs image data" in err
    assert not (tmp_path / "r").exists()
    spec = tmp_path / "h.toml"
    spec.write_text(
        textwrap.dedent("""
        [latent.z2]
        family = "standard_normal"
        dim = 4
        [latent.z1]
        family = "normal"
        dim = 4
        given = ["z2"]
        net = { kind = "conv", channels = [8] }
        [observed.x]
        family = "bernoulli"
        given = ["z1"]
        net = { kind = "mlp", hidden = [8] }
    """)
    )
    with pytest.raises(pv.SpecError, match="h.toml: latent.z1.net: a 'conv' net needs image"):
        pv.load(spec, "hierarchical_vae", data_shape=(1, 8, 8))
    assert main(["check", "conv_vae"]) == 0 and "via conv[64, 32]" in capsys.readouterr().out

"""Pictures of a trained run's latent space (``pyro-vae sample --interpolate --attributes``); a run
whose data are not images is refused."""

import pyro_vae as pv
from pyro_vae.cli import main


def test_sample_draws_interpolations_and_attribute_vectors(digits_run, tmp_path, capsys):
    assert main(["sample", str(digits_run), "--interpolate", "--attributes"]) == 0
    printed = capsys.readouterr().out
    for name in ("interpolations.png", "attributes.png"):
        assert name in printed and (digits_run / "plots" / name).stat().st_size > 0
    lg = tmp_path / "lg"
    pv.train(
        pv.load("linear_gaussian", data_shape=(5,), seed=0),
        "linear-gaussian",
        epochs=1,
        out=lg,
        progress=False,
        data_options={"n_train": 100, "n_test": 20},
    )
    assert main(["sample", str(lg), "--interpolate"]) == 2
    assert "is not made of images" in capsys.readouterr().err

"""The bundled sigmoid belief network (models/sbn.toml, guides/sbn.toml): binary latent units
declared in a spec, trained by the score-function estimators, estimated by importance
sampling; the estimators that move latents on the real line refuse it in one line."""

import math

import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.objectives.registry import ObjectiveChoice


def test_the_sbn_is_declared_with_binary_latents():
    vae = pv.load("sbn", data_shape=(64,), seed=0)
    x, latents = vae.sample(5, return_latents=True)
    h = latents["h"]
    assert h.shape == (5, 200) and set(h.unique().tolist()) <= {0.0, 1.0}
    assert not vae.inference["h"].family.reparameterized
    for name in ("rws", "vimco", "trace", "trace_graph", "tvo", "relaxed"):
        assert ObjectiveChoice(name, 2 if name in ("rws", "vimco") else 1).usable_with(vae)
    for name in ("trace_mean_field", "iwae", "stl"):  # no reparameterization: refused
        assert not ObjectiveChoice(name).usable_with(vae)


@pytest.mark.parametrize(
    "objective",
    [
        "vimco:k=5",
        "rws:k=5",
        "tvo:k=5,partitions=5",
        "trace_graph:baseline=nn",
        "relaxed:temperature=0.5",
    ],
)
def test_the_sbn_trains_and_its_log_likelihood_rises(objective, tmp_path):
    vae = pv.load("sbn", data_shape=(64,), seed=0)
    x = pv.load_dataset("digits", binarization="static").test[:40]
    before = pv.log_likelihood(vae.model, vae.guide, x, num_samples=200, seed=0).mean
    result = pv.train(vae, "digits", objective=objective, epochs=4, progress=False)
    after = pv.log_likelihood(vae.model, vae.guide, x, num_samples=200, seed=0)
    assert math.isfinite(after.mean) and after.mean > before + 5
    elbos = [r["train_elbo"] for r in result.history]
    assert elbos[-1] > elbos[0] and result.final["step"] == "pyro"


def test_estimators_that_move_latents_refuse_the_sbn_in_one_line(tmp_path, capsys):
    run = tmp_path / "sbn"
    pv.train(pv.load("sbn", data_shape=(64,), seed=0), "digits", objective="vimco:k=3",
             epochs=1, out=run, progress=False)  # fmt: skip
    assert main(["evaluate", str(run), "--num-samples", "20", "--max-data", "5", "--ais"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "latent site 'h' is discrete without an enumerable" in err
    assert main(["evaluate", str(run), "--num-samples", "20", "--max-data", "5"]) == 0
    assert torch.isfinite(pv.load_run(run)[0].sample(2)).all()

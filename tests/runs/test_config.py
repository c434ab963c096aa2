"""A run's configuration: config.json keeps its format and older runs load; a run on a data file
records the file and refuses it once it changed."""

import json

import numpy as np
import pytest

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.runs.config import TrainConfig
from tests.helpers import SMALL, grey, small_vae


def test_config_json_keeps_its_format_and_older_runs_load(tmp_path):
    run = tmp_path / "run"
    pv.train(small_vae(), "digits", out=run, objective="iwae:k=2", **{**SMALL, "epochs": 1})
    meta = json.loads((run / "config.json").read_text())
    # config.json as written before TrainConfig held an ObjectiveChoice: flat fields.
    assert meta["config"] == {
        "data": "digits",
        "objective": "iwae",
        "num_particles": 2,
        "objective_options": {},
        "epochs": 1,
        "batch_size": 100,
        "lr": 1e-3,
        "eps": 1e-8,
        "lr_decay": 1.0,
        "kl_weight": 1.0,
        "kl_warmup": 0,
        "seed": 0,
        "binarization": "dynamic",
        "data_options": {},
        "fused": True,
    }
    vae, config = pv.load_run(run)
    assert config.objective == ObjectiveChoice("iwae", 2)
    assert pv.TrainConfig.from_dict(config.to_dict()) == config
    # Runs from before β existed load as trained with the ELBO.
    older = {k: v for k, v in meta["config"].items() if k not in ("kl_weight", "kl_warmup")}
    assert pv.TrainConfig.from_dict(older) == config
    meta["config"]["objective"] = "iwea"
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(
        pv.CheckpointError, match="config.json: damaged run configuration .*did you mean 'iwae'"
    ):
        pv.load_run(run)


def test_a_run_on_a_file_records_it_and_refuses_it_once_changed(tmp_path, capsys):
    path = tmp_path / "mine.npy"
    np.save(path, grey(120, 8))
    run = tmp_path / "run"
    argv = ["train", "--model", "gaussian_vae", "--data", str(path), "--epochs", "1"]
    assert main([*argv, "--out", str(run), "--no-progress"]) == 0
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["data"] == str(path.resolve())
    assert set(config["data_options"]) == {"sha256", "test_fraction", "split_seed"}
    assert main(["evaluate", str(run), "--num-samples", "5", "--no-progress"]) == 0
    np.save(path, grey(120, 8, seed=5))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--num-samples", "5", "--no-progress"]) == 2
    assert "the data changed since" in capsys.readouterr().err


def test_the_selection_settings_are_written_only_when_set_and_read_back():
    plain = TrainConfig().to_dict()
    for name in ("validation", "early_stop", "free_bits", "free_bits_per", "tensorboard"):
        assert name not in plain  # the files of older runs read back the same
    config = TrainConfig(validation=500, early_stop=5, free_bits=0.5, free_bits_per="dim",
                         tensorboard=True)  # fmt: skip
    config.validate()
    again = TrainConfig.from_dict(config.to_dict())
    again.validate()
    assert again == config


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"validation": 0}, "validation must be"),
        ({"validation": "mine"}, "validation must be"),
        ({"validation": 10, "early_stop": 0}, "early_stop must be a whole number >= 1"),
        ({"early_stop": 3}, "no validation split"),
        ({"free_bits": -1.0}, "free_bits must be a finite number >= 0"),
        ({"free_bits_per": "layer"}, "free_bits_per must be one of"),
        ({"tensorboard": "yes"}, "tensorboard must be true or false"),
    ],
)
def test_bad_selection_settings_are_refused_naming_them(settings, words):
    with pytest.raises(pv.PyroVaeError, match=words):
        TrainConfig(**settings).validate()

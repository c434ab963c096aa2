"""Training runs: run directories, exact resume, divergence, damaged checkpoints, the CLI."""

import json
from pathlib import Path

import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.objectives.registry import ObjectiveChoice

SPECS = Path(__file__).parent / "specs"

SMALL = dict(epochs=2, batch_size=100, lr=1e-3, progress=False)


def small_vae():
    return pv.load("bernoulli_vae", "mean_field", data_shape=(64,), seed=0)


def test_run_directory_contents(tmp_path):
    run = tmp_path / "run"
    result = pv.train(small_vae(), "digits", out=run, **SMALL)
    names = {p.name for p in run.iterdir()}
    assert {
        "model.toml",
        "guide.toml",
        "config.json",
        "checkpoint.safetensors",
        "metrics.jsonl",
        "report.json",
        "report.md",
        "plots",
    } <= names
    assert {p.name for p in (run / "plots").iterdir()} == {
        "elbo.png",
        "samples.png",
        "reconstructions.png",
    }
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    report = json.loads((run / "report.json").read_text())
    assert report["final_test_elbo"] == pytest.approx(result.final["test_elbo"])
    assert report["config"]["binarization"] == "dynamic"  # chosen for the Bernoulli likelihood
    assert "![elbo](plots/elbo.png)" in (run / "report.md").read_text()


def test_resume_continues_exactly(tmp_path):
    straight = pv.train(small_vae(), "digits", out=tmp_path / "a", **SMALL)
    pv.train(small_vae(), "digits", out=tmp_path / "b", **{**SMALL, "epochs": 1})
    resumed = pv.resume(tmp_path / "b", epochs=2, progress=False)
    for (name, p), q in zip(
        straight.vae.state_dict().items(), resumed.vae.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    assert resumed.history == [
        {**r, "seconds": s["seconds"]}
        for r, s in zip(straight.history, resumed.history, strict=True)
    ]


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    pv.train(small_vae(), "digits", out=run, **{**SMALL, "epochs": 1})
    before = (run / "checkpoint.safetensors").read_bytes()
    from pyro_vae.model import families

    original = families.Bernoulli.forward
    monkeypatch.setattr(
        families.Bernoulli, "forward", lambda self, raw=None: original(self, raw * float("nan"))
    )
    with pytest.raises(pv.TrainingDiverged, match="epoch 2.*checkpoint of epoch 1 is kept"):
        pv.resume(run, epochs=3, progress=False)
    assert (run / "checkpoint.safetensors").read_bytes() == before
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_damaged_or_pickled_checkpoint_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    pv.train(small_vae(), "digits", out=run, **{**SMALL, "epochs": 1})
    checkpoint = run / "checkpoint.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(pv.CheckpointError, match="checkpoint.safetensors: not a readable"):
        pv.load_run(run)
    torch.save({"model": torch.zeros(3)}, checkpoint)  # a pickle is never unpickled
    assert main(["sample", str(run)]) == 2
    err = capsys.readouterr().err
    assert "not a readable pyro_vae checkpoint" in err and "Traceback" not in err


def test_cli_train_and_refuse_to_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        "--model",
        "bernoulli_vae",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--out",
        str(run),
        "--no-progress",
    ]
    assert main(args) == 0
    assert "test ELBO" in capsys.readouterr().out
    before = (run / "checkpoint.safetensors").read_bytes()
    assert main(args) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (run / "checkpoint.safetensors").read_bytes() == before
    assert main(["sample", str(run), "--n", "16"]) == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--data", "digitz"], "did you mean 'digits'"),
        (["--objective", "trace_meanfield"], "did you mean 'trace_mean_field'"),
        (["--data", "mixture-1d"], "binar"),
        (["--objective", "renyi:beta=2"], "no option 'beta' (options: alpha)"),
        (["--objective", "renyi:alpha=1"], "alpha = 1 is the ELBO"),
        (["--objective", "iwae:k=0"], "k must be >= 1"),
        (["--objective", "iwae:k"], "expected name:k=K,option=value"),
    ],
)
def test_cli_train_bad_input_exits_2(tmp_path, capsys, args, words):
    base = {"--model": "bernoulli_vae", "--out": str(tmp_path / "r"), "--epochs": "1"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["train", *[item for pair in base.items() for item in pair]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_mean_field_objective_refuses_what_it_cannot_do():
    mixture = pv.load("mixture_1d", data_shape=(1,))
    with pytest.raises(pv.SpecError, match="latent.c.family: objective 'trace_mean_field' needs"):
        ObjectiveChoice("trace_mean_field").build(mixture)
    ObjectiveChoice("trace").build(mixture)
    vae = pv.load("hierarchical_vae", SPECS / "bottom_up.toml", data_shape=(64,))
    with pytest.raises(pv.SpecError, match="bottom_up.toml: latent.z2.given: .*before 'z1'"):
        ObjectiveChoice("trace_mean_field").build(vae)


def test_trace_and_mean_field_agree_in_expectation():
    """Both estimate the same ELBO; their means over repeats agree within 4 standard errors."""
    vae = pv.load("linear_gaussian", data_shape=(5,))
    x = pv.load_dataset("linear-gaussian").test[:50]
    repeats, particles = 200, 20

    def draws(elbo_class):
        elbo = elbo_class(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
        with torch.no_grad():
            return torch.tensor([-elbo.loss(vae.model, vae.guide, x) for _ in range(repeats)])

    a, b = draws(Trace_ELBO), draws(TraceMeanField_ELBO)
    stderr = (a.var() / repeats + b.var() / repeats).sqrt()
    assert (a.mean() - b.mean()).abs() < 4 * stderr
    assert b.var() < a.var()  # the analytic KL removes part of the noise


def test_cli_data_options(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "linear_gaussian",
        "--data",
        "linear-gaussian",
        "--epochs",
        "1",
        "--data-option",
        "n_train=300",
        "--out",
        str(run),
        "--no-progress",
    ]
    assert main(argv) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["num_train"] == 300 and report["config"]["data_options"] == {"n_train": 300}
    assert main([*argv[:-3], "--data-option", "n_train", "--out", str(tmp_path / "b")]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_resume_rebuilds_the_metrics_from_the_checkpoint(tmp_path):
    straight = pv.train(small_vae(), "digits", out=tmp_path / "a", **SMALL)
    run = tmp_path / "b"
    pv.train(small_vae(), "digits", out=run, **{**SMALL, "epochs": 1})
    (run / "metrics.jsonl").write_text("")  # as if we stopped between checkpoint and metrics
    resumed = pv.resume(run, epochs=2, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    for p, q in zip(straight.vae.parameters(), resumed.vae.parameters(), strict=True):
        assert torch.equal(p, q)


def test_resume_only_changes_epochs_and_lr(tmp_path, capsys):
    run = tmp_path / "run"
    pv.train(small_vae(), "digits", out=run, **{**SMALL, "epochs": 1})
    assert main(["train", "--resume", str(run), "--batch-size", "10"]) == 2
    assert "only --epochs and --lr can change, not --batch-size" in capsys.readouterr().err
    assert (
        main(["train", "--resume", str(run), "--epochs", "2", "--lr", "5e-4", "--no-progress"]) == 0
    )
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["epochs"] == 2 and config["lr"] == 5e-4


def test_default_objective_suits_the_model():
    mixture = pv.load("mixture_1d", data_shape=(1,), seed=0)
    result = pv.train(mixture, "mixture-1d", epochs=1, progress=False)
    assert result.config.objective == ObjectiveChoice("trace")
    enumerated = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    trained = pv.train(enumerated, "mixture-1d", epochs=1, progress=False)
    assert trained.config.objective.name == "trace_enum"
    trained = pv.train(small_vae(), "digits", epochs=1, progress=False)
    assert trained.config.objective.name == "trace_mean_field"


def test_resume_refuses_data_options(tmp_path, capsys):
    run = tmp_path / "run"
    pv.train(small_vae(), "digits", out=run, **{**SMALL, "epochs": 1})
    assert main(["train", "--resume", str(run), "--data", "mnist"]) == 2
    assert "not --data" in capsys.readouterr().err


def test_cli_objective_settings_reach_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--model", "bernoulli_vae", "--data", "digits", "--epochs", "1"]
    argv += ["--objective", "renyi:k=3,alpha=0.25", "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["objective"], config["num_particles"]) == ("renyi", 3)
    assert config["objective_options"] == {"alpha": 0.25}
    report = (run / "report.md").read_text()
    assert "`renyi` (3 particle(s), alpha = 0.25)" in report
    # --no-fused: the ELBO objectives step with Pyro's estimator.
    argv = ["train", "--model", "bernoulli_vae", "--data", "digits", "--epochs", "1", "--no-fused"]
    assert main([*argv, "--out", str(tmp_path / "pyro"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "pyro" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["step"] == "pyro"


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

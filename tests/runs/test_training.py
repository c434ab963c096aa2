"""Training runs: the run directory, exact resume, divergence, resume's refusals, and interruptions
(SIGKILL at random instants, Ctrl-C) that lose nothing."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.runs.checkpoint import Checkpoint
from tests.helpers import SMALL, metric_epochs, small_vae, train_cli


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


def test_resume_refuses_data_options(tmp_path, capsys):
    run = tmp_path / "run"
    pv.train(small_vae(), "digits", out=run, **{**SMALL, "epochs": 1})
    assert main(["train", "--resume", str(run), "--data", "mnist"]) == 2
    assert "not --data" in capsys.readouterr().err


# -- resume: validated before anything is written --------------------------------------------------


@pytest.mark.parametrize(
    "options, words",
    [
        (["--lr", "inf"], "argument --lr: must be a finite number > 0"),
        (["--lr", "nan"], "argument --lr"),
        (["--epochs", "1"], "already trained 2 epochs"),
        (["--epochs", "0"], "argument --epochs"),
    ],
)
def test_resume_refuses_bad_options_without_touching_the_run(
    run, refused, options, words, snapshot
):
    before = snapshot(run)
    refused(["train", "--resume", str(run), *options], words)
    assert snapshot(run) == before


def test_resume_through_the_api_refuses_an_infinite_lr(run, snapshot):
    before = snapshot(run)
    with pytest.raises(pv.PyroVaeError, match="lr must be a finite number"):
        pv.resume(run, epochs=3, lr=float("inf"), progress=False)
    assert snapshot(run) == before
    json.loads((run / "config.json").read_text())  # still strict JSON (no Infinity)


def test_metrics_lost_after_the_checkpoint_are_rebuilt_from_it(run):
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')  # epoch 2's line never written
    pv.resume(run, epochs=3, progress=False)
    epochs = metric_epochs(run)
    assert epochs == [1, 2, 3]


# -- a run that fails in its first epoch -----------------------------------------------------------


def test_a_run_that_diverged_in_its_first_epoch_resumes_with_a_smaller_lr(
    tmp_path, capsys, monkeypatch
):
    from pyro_vae.model import families

    out = tmp_path / "run"
    original = families.Bernoulli.forward
    with monkeypatch.context() as patch:
        patch.setattr(
            families.Bernoulli, "forward", lambda self, raw=None: original(self, raw * float("nan"))
        )
        assert main(train_cli(out)) == 3
    err = capsys.readouterr().err
    assert "checkpoint of epoch 0 is kept" in err and f"--resume {out} --lr" in err
    assert Checkpoint(out / "checkpoint.safetensors").epoch == 0
    assert main(["train", "--resume", str(out), "--lr", "5e-4", "--no-progress"]) == 0
    epochs = metric_epochs(out)
    assert epochs == [1, 2]


# -- kill -9 at any instant, and Ctrl-C ------------------------------------------------------------


def test_sigkill_at_random_instants_loses_nothing(tmp_path):
    """Train with SIGKILL at random instants (near checkpoint writes among them), resuming after
    each; the run ends with the weights and metrics of an uninterrupted run."""
    epochs = "30"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads: the same summation order
    straight = tmp_path / "straight"
    cli = [sys.executable, "-m", "pyro_vae"]
    subprocess.run([*cli, *train_cli(straight, "--epochs", epochs)], env=env, check=True)
    run = tmp_path / "killed"
    rng = random.Random(1)
    command = [sys.executable, "-m", "pyro_vae", *train_cli(run, "--epochs", epochs)]
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        begun = time.monotonic()
        while not (run / "checkpoint.safetensors").exists() and time.monotonic() - begun < 120:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        # Whatever the instant, the checkpoint is whole, and metrics.jsonl is behind it at most.
        checkpoint = Checkpoint(run / "checkpoint.safetensors")
        assert [r["epoch"] for r in checkpoint.metrics] == list(range(1, checkpoint.epoch + 1))
        lines = (run / "metrics.jsonl").read_text().split("\n")
        assert all(json.loads(line)["epoch"] <= checkpoint.epoch for line in lines if line)
        command = [sys.executable, "-m", "pyro_vae", "train", "--resume", str(run)]
    assert kills >= 2
    subprocess.run([*cli, "train", "--resume", str(run)], env=env, check=True)
    assert (run / "metrics.jsonl").read_text().count("\n") == int(epochs)
    a, b = (
        Checkpoint(straight / "checkpoint.safetensors"),
        Checkpoint(run / "checkpoint.safetensors"),
    )
    assert a.model.keys() == b.model.keys()
    for key in a.model:
        assert torch.equal(a.model[key], b.model[key]), key
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().split("\n") if line]
    reference = [
        json.loads(line) for line in (straight / "metrics.jsonl").read_text().split("\n") if line
    ]
    assert [m["test_elbo"] for m in metrics] == [m["test_elbo"] for m in reference]


def _wait_for(predicate, timeout: float = 120) -> None:
    began = time.monotonic()
    while not predicate() and time.monotonic() - began < timeout:
        time.sleep(0.01)


def test_ctrl_c_in_training_exits_130_and_resumes_exactly(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "pyro_vae"]
    straight, run = tmp_path / "straight", tmp_path / "interrupted"
    subprocess.run([*cli, *train_cli(straight, "--epochs", "6")], env=env, check=True)
    proc = subprocess.Popen(
        [*cli, *train_cli(run, "--epochs", "6")], env=env, stderr=subprocess.PIPE
    )
    _wait_for(lambda: (run / "metrics.jsonl").exists() and metric_epochs(run))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err.decode()  # 0: it finished before the signal came
    assert b"Traceback" not in err
    subprocess.run([*cli, "train", "--resume", str(run)], env=env, check=True)
    a, b = (
        Checkpoint(straight / "checkpoint.safetensors"),
        Checkpoint(run / "checkpoint.safetensors"),
    )
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)

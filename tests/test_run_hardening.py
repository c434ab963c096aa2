"""A run directory against a hostile user and a hard kill: each defect's reproduction as a test.

Every refusal is one line ``error: ...`` with exit status 2 and leaves the files of the run as
they were; a process killed with SIGKILL at any instant leaves a run that resumes to the same
weights as an uninterrupted one.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.runs.checkpoint import Checkpoint, save_checkpoint
from pyro_vae.runs.run_dir import RunDir

TRAIN = ["train", "--model", "bernoulli_vae", "--guide", "mean_field", "--data", "digits"]


def train_cli(out: Path, *extra: str) -> list[str]:
    return [*TRAIN, "--epochs", "2", "--out", str(out), "--no-progress", *extra]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("hardening") / "run"
    assert main(train_cli(run)) == 0
    return run


@pytest.fixture
def run(finished_run, tmp_path):
    """A fresh copy of a finished 2-epoch digits run (``R`` of the issue)."""
    copy = tmp_path / "R"
    subprocess.run(["cp", "-r", str(finished_run), str(copy)], check=True)
    return copy


def metric_epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- checkpoints: checksum, finite weights, metadata ----------------------------------------


def test_flipped_bits_in_the_tensors_are_refused_everywhere(run, refused, snapshot):
    path = run / "checkpoint.safetensors"
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # after safetensors' header
    rng = random.Random(0)
    for _ in range(200):
        at = rng.randrange(start, len(data))
        data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    before = snapshot(run)
    for argv in (["evaluate", str(run), "--num-samples", "2"], ["sample", str(run)]):
        refused(argv, "checkpoint.safetensors: damaged", "checksum")
    refused(["train", "--resume", str(run), "--epochs", "3"], "damaged")
    assert snapshot(run) == before


def test_a_nan_weight_is_refused_without_a_traceback(run, refused):
    vae, _ = pv.load_run(run)
    with torch.no_grad():
        next(vae.parameters())[0, 0] = float("nan")
    save_checkpoint(run / "checkpoint.safetensors", vae, info={"epoch": 2})
    for argv in (["evaluate", str(run)], ["sample", str(run)]):
        refused(argv, "NaN or infinite")


def test_a_non_integer_epoch_in_the_metadata_is_refused(run, refused):
    vae, _ = pv.load_run(run)
    save_checkpoint(run / "checkpoint.safetensors", vae, info={"epoch": "two"})
    refused(["evaluate", str(run)], "epoch is 'two'")


def test_a_weights_only_checkpoint_evaluates_but_does_not_resume(run, refused, snapshot):
    vae, _ = pv.load_run(run)
    save_checkpoint(run / "checkpoint.safetensors", vae, info={"epoch": 2})
    before = snapshot(run)
    refused(["train", "--resume", str(run), "--epochs", "3"], "weights only")
    assert snapshot(run) == before
    assert main(["sample", str(run), "--output", str(run / "s.png")]) == 0


# -- resume: validated before anything is written --------------------------------------------


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


def test_a_torn_metrics_line_is_dropped_on_resume(run):
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_el')  # a write cut short by a crash
    result = pv.resume(run, epochs=3, progress=False)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert [r["epoch"] for r in result.history] == [1, 2, 3]


def test_metrics_lost_after_the_checkpoint_are_rebuilt_from_it(run):
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')  # epoch 2's line never written
    pv.resume(run, epochs=3, progress=False)
    epochs = metric_epochs(run)
    assert epochs == [1, 2, 3]


# -- one writer --------------------------------------------------------------------------------


def test_a_second_writer_is_refused(run, refused, snapshot):
    before = snapshot(run)
    with RunDir(run).lock():
        refused(["train", "--resume", str(run), "--epochs", "3"], "in use by another")
        refused(["evaluate", str(run)], f"pid {os.getpid()}")
    assert snapshot(run) == before
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0


def test_two_concurrent_resumes_write_every_epoch_once(run):
    argv = [sys.executable, "-m", "pyro_vae", "train", "--resume", str(run), "--epochs", "12"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(p.wait(timeout=300) for p in procs)
    errors = [p.stderr.read() for p in procs]
    assert codes[0] == 0
    if codes[1] != 0:  # the two overlapped: the second was refused
        assert codes[1] == 2 and any("in use by another" in e for e in errors), errors
    epochs = metric_epochs(run)
    assert epochs == list(range(1, 13))


# -- the other files of a run ------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda r: (r / "model.toml").unlink(), ["model.toml: missing"]),
        (lambda r: (r / "guide.toml").write_bytes(b"\xff\xfe\x00\x81" * 50), ["guide.toml"]),
        (lambda r: (r / "config.json").write_text("{"), ["config.json: damaged"]),
        (lambda r: (r / "config.json").write_text("[]"), ["config.json: damaged"]),
        (
            lambda r: _edit_config(r, lambda m: m.pop("data_shape")),
            ["config.json: damaged", "'data_shape' is None"],
        ),
        (lambda r: _edit_config(r, lambda m: m.update(data_shape="64")), ["data_shape"]),
        (lambda r: _edit_config(r, lambda m: m["config"].update(epochs="2")), ["epochs"]),
        (lambda r: _edit_config(r, lambda m: m["config"].update(seed=-1)), ["seed"]),
        (lambda r: _edit_config(r, lambda m: m["config"].update(colour=1)), ["colour"]),
    ],
)
def test_damaged_run_files_give_one_line(run, refused, damage, words, snapshot):
    damage(run)
    before = snapshot(run)
    for argv in (["evaluate", str(run)], ["sample", str(run)], ["train", "--resume", str(run)]):
        refused(argv, *words)
    assert snapshot(run) == before


def _edit_config(run: Path, edit) -> None:
    meta = json.loads((run / "config.json").read_text())
    edit(meta)
    (run / "config.json").write_text(json.dumps(meta))


# -- options, checked before any directory is made ---------------------------------------------


@pytest.mark.parametrize(
    "options, words",
    [
        (["--seed", "-1"], "argument --seed: must be a whole number from 0 to 4,294,967,295"),
        (["--seed", str(2**32)], "argument --seed"),
        (["--lr", "inf"], "argument --lr"),
        (["--lr-decay", "inf"], "argument --lr-decay"),
        (["--kl-weight", "nan"], "argument --kl-weight"),
        (["--eps", "0"], "argument --eps"),
        (["--epochs", "1.5"], "argument --epochs: expected a whole number"),
        (["--batch-size", "0"], "argument --batch-size"),
        (["--num-particles", "99999999999"], "argument --num-particles"),
        (["--objective", "renyi:alpha=nan"], "alpha"),
        (["--objective", "iwae:k=99999999999"], "k"),
    ],
)
def test_bad_options_are_refused_before_any_directory(tmp_path, refused, options, words):
    out = tmp_path / "new"
    refused(train_cli(out, *options), *words)
    assert not out.exists()


def test_out_must_be_a_new_or_empty_directory(tmp_path, refused):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    refused(train_cli(existing), "notes.txt: exists and is not a directory")
    refused(train_cli(existing / "run"), "which is a file")
    assert existing.read_text() == "keep me"


def test_a_step_too_large_for_the_machine_is_refused_with_its_size(tmp_path, refused, monkeypatch):
    import pyro_vae.runs.memory as memory

    monkeypatch.setattr(memory, "device_bytes", lambda device: 50 * 2**20)  # a 50 MiB machine
    out = tmp_path / "new"
    err = refused(train_cli(out, "--objective", "iwae:k=1000"), "--batch-size 100")
    assert "iwae(K=1000)" in err and "100,000 rows" in err and "GiB" in err
    assert not out.exists()
    assert main(train_cli(out, "--objective", "iwae:k=2", "--epochs", "1")) == 0


@pytest.mark.parametrize(
    "options, words",
    [
        (["--n", "0"], "argument --n"),
        (["--n", str(10**9)], "argument --n"),
        (["--output", "samples.txt"], "--output samples.txt: expected the path of a .png file"),
        (["--seed", "-5"], "argument --seed"),
    ],
)
def test_sample_refuses_bad_options(run, refused, options, words, snapshot):
    before = snapshot(run)
    refused(["sample", str(run), *options], *words)
    assert snapshot(run) == before


def test_sample_output_that_is_a_directory_is_refused(run, tmp_path, refused):
    folder = tmp_path / "pictures.png"
    folder.mkdir()
    refused(["sample", str(run), "--output", str(folder)], "expected the path of a .png")


# -- a run that fails in its first epoch ----------------------------------------------------


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


# -- kill -9 at any instant ----------------------------------------------------------------


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


# -- more interruptions ----------------------------------------------------------------------


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


def test_sigkill_in_evaluate_leaves_a_run_that_evaluates(run, snapshot):
    before = snapshot(run)
    argv = [sys.executable, "-m", "pyro_vae", "evaluate", str(run), "--num-samples", "2000"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4.0)
    proc.kill()
    proc.wait()
    json.loads((run / "report.json").read_text())  # whole: either the old or the new report
    for name in ("checkpoint.safetensors", "config.json", "metrics.jsonl", "model.toml"):
        assert (run / name).read_bytes() == before[name]
    assert main(["evaluate", str(run), "--num-samples", "4", "--max-data", "10"]) == 0
    assert not list(run.glob(".*.tmp"))


def test_temporary_files_of_a_killed_writer_are_removed(run):
    stale = run / ".checkpoint.safetensors.99999.tmp"
    stale.write_bytes(b"half a checkpoint")
    pv.resume(run, epochs=3, progress=False)
    assert not stale.exists()
    assert Checkpoint(run / "checkpoint.safetensors").epoch == 3


def test_a_write_that_fails_midway_keeps_the_previous_checkpoint(run, monkeypatch):
    import safetensors.torch

    from pyro_vae.runs import checkpoint as checkpoint_module

    before = (run / "checkpoint.safetensors").read_bytes()

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device", filename)

    monkeypatch.setattr(checkpoint_module, "save_file", full_disk)
    with pytest.raises((OSError, pv.PyroVaeError)):
        pv.resume(run, epochs=3, progress=False)
    monkeypatch.setattr(checkpoint_module, "save_file", safetensors.torch.save_file)
    assert (run / "checkpoint.safetensors").read_bytes() == before
    assert not list(run.glob(".*.tmp"))
    assert pv.resume(run, epochs=3, progress=False).history[-1]["epoch"] == 3


def test_ais_chains_too_large_for_the_machine_are_refused_before_sampling(
    run, refused, monkeypatch, snapshot
):
    import pyro_vae.runs.memory as memory

    monkeypatch.setattr(memory, "device_bytes", lambda device: 20 * 2**20)  # a 20 MiB machine
    before = snapshot(run)
    argv = ["evaluate", str(run), "--ais", "--ais-samples", "100000", "--num-samples", "2"]
    err = refused(argv, "--ais-samples 100000 with --batch-size 100", "GiB")
    assert "rows scored at once" in err
    assert snapshot(run) == before

"""A run directory: its files damaged or missing are refused in one line, one writer at a time,
--out new or empty, a torn metrics line and a killed writer's temporary files cleaned up on
resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.runs.checkpoint import Checkpoint
from pyro_vae.runs.run_dir import RunDir
from tests.helpers import metric_epochs, train_cli

# -- one writer ------------------------------------------------------------------------------------


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


# -- the files of a run ----------------------------------------------------------------------------


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


def test_out_must_be_a_new_or_empty_directory(tmp_path, refused):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    refused(train_cli(existing), "notes.txt: exists and is not a directory")
    refused(train_cli(existing / "run"), "which is a file")
    assert existing.read_text() == "keep me"


def test_a_torn_metrics_line_is_dropped_on_resume(run):
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_el')  # a write cut short by a crash
    result = pv.resume(run, epochs=3, progress=False)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert [r["epoch"] for r in result.history] == [1, 2, 3]


def test_temporary_files_of_a_killed_writer_are_removed(run):
    stale = run / ".checkpoint.safetensors.99999.tmp"
    stale.write_bytes(b"half a checkpoint")
    pv.resume(run, epochs=3, progress=False)
    assert not stale.exists()
    assert Checkpoint(run / "checkpoint.safetensors").epoch == 3

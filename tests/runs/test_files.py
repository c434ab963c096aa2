"""Run files are written so that a crash never leaves a half-written one: a folder that cannot be
made or written is named, a failed write keeps the old file, evaluate killed midway leaves a run
that evaluates."""

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyro_vae.cli import main
from pyro_vae.errors import PyroVaeError
from pyro_vae.runs.files import atomic_path, check_writable, ensure_dir, write_text_atomic


def test_ensure_dir_names_the_folder(tmp_path, monkeypatch):
    assert ensure_dir(tmp_path / "a" / "b").is_dir()
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(PyroVaeError, match=f"^{file}: exists and is not a directory$"):
        ensure_dir(file)
    with pytest.raises(PyroVaeError, match=f"^{file / 'c' / 'd'}: lies under {file}, which is"):
        ensure_dir(file / "c" / "d")
    for code, words in ((errno.EACCES, "Permission denied"), (errno.ENOSPC, "No space left")):

        def refuse(self, *args, code=code, **kwargs):
            raise OSError(code, os.strerror(code), str(self))

        monkeypatch.setattr(Path, "mkdir", refuse)
        with pytest.raises(PyroVaeError, match=f"^{tmp_path / 'new'}: cannot be created .{words}"):
            ensure_dir(tmp_path / "new")
        monkeypatch.setattr(Path, "touch", refuse)
        with pytest.raises(PyroVaeError, match=f"^{tmp_path}: cannot be written to .{words}"):
            check_writable(tmp_path)
    monkeypatch.undo()
    assert check_writable(tmp_path) == tmp_path
    assert sorted(tmp_path.iterdir()) == [tmp_path / "a", file]  # the probe is gone


def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path):
    from safetensors import SafetensorError

    path = tmp_path / "checkpoint.safetensors"
    write_text_atomic(path, "old")
    message = (
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
        'left on device" })'
    )
    with pytest.raises(PyroVaeError) as caught, atomic_path(path) as tmp:
        tmp.write_text("half")
        raise SafetensorError(message)
    assert (
        str(caught.value)
        == f"{path}: cannot be written (No space left on device); it is left as it was"
    )
    assert path.read_text() == "old" and sorted(tmp_path.iterdir()) == [path]
    with pytest.raises(ValueError, match="not a write"), atomic_path(path):
        raise ValueError("not a write")  # other errors pass through unchanged
    assert path.read_text() == "old"


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

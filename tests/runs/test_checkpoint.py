"""Checkpoints: a damaged one (flipped bits, a NaN weight, a bad epoch, a pickle) is refused in one
line everywhere, a weights-only one evaluates but does not resume, and a write that fails midway
keeps the previous one."""

import random
from pathlib import Path

import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.runs.checkpoint import save_checkpoint
from tests.helpers import SMALL, small_vae


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

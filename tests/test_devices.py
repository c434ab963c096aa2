"""Devices: naming them, refusing the absent ones, and device-free checkpoints (CPU here)."""

import pytest
import torch
from safetensors import safe_open

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.devices import module_device, resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_device_names_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected is None and not torch.backends.mps.is_available():
        assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "cpu:1", "tpu:0", ""):
        with pytest.raises(pv.PyroVaeError, match="expected one of auto, cpu, cuda, cuda:N, mps"):
            resolve_device(bad)


@no_cuda
def test_absent_devices_are_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(pv.PyroVaeError, match="this machine has no CUDA device"):
        resolve_device("cuda:1")
    out = tmp_path / "run"
    code = main(["train", "--model", "bernoulli_vae", "--out", str(out), "--device", "cuda"])
    assert code == 2
    assert "--device 'cuda': this machine has no CUDA device" in capsys.readouterr().err
    assert not out.exists()


def test_models_move_and_checkpoints_are_device_free(tmp_path):
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0, device="cpu")
    assert module_device(vae) == torch.device("cpu")
    run = tmp_path / "run"
    pv.train(vae, "digits", epochs=1, out=run, progress=False, device="cpu")
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        # Loaded without a device map, every tensor comes back on the CPU it was saved from.
        assert all(f.get_tensor(k).device.type == "cpu" for k in f.keys())  # noqa: SIM118
    loaded, _ = pv.load_run(run, device="cpu")
    assert module_device(loaded) == torch.device("cpu")
    result = pv.resume(run, epochs=2, progress=False, device="cpu")
    assert [r["epoch"] for r in result.history] == [1, 2]

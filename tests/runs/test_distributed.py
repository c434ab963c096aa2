"""torchrun on 2 CPU processes (gloo, bound to 127.0.0.1): data-parallel training that follows
the single-process run, resume, and sharded evaluation that gathers the same numbers."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

TIMEOUT = 300  # seconds: every launch stops by itself


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(threads: int | None = None) -> dict:
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONWARNINGS": "ignore"}
    env.pop("WORLD_SIZE", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m",
        "pyro_vae",
        *args,
    ]
    return subprocess.run(
        command, env=environment(), capture_output=True, text=True, timeout=TIMEOUT
    )


def single(*args: str, threads: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pyro_vae", *args],
        env=environment(threads),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training (digits, 2 epochs, batch 100, seed 0) by 2 processes and by 1."""
    root = tmp_path_factory.mktemp("distributed")
    train = ["train", "--model", "bernoulli_vae", "--data", "digits", "--epochs", "2"]
    flags = ["--no-progress", "--device", "cpu"]
    parallel = torchrun(*train, "--out", str(root / "two"), *flags)
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    alone = single(*train, "--out", str(root / "one"), *flags)
    assert alone.returncode == 0, alone.stderr[-2000:]
    return root / "two", root / "one"


def test_data_parallel_training_follows_the_single_process_run(runs):
    two, one = runs
    a, b = metrics(two), metrics(one)
    assert [r["epoch"] for r in a] == [1, 2] and all(r["step"] == "fused" for r in a)
    # Same draws, same batches: the runs differ only in the order floating-point sums are
    # taken (each process sums its shard, then the gradients are averaged), so by rounding.
    for x, y in zip(a, b, strict=True):
        assert x["train_elbo"] == pytest.approx(y["train_elbo"], rel=1e-6)
        assert x["test_elbo"] == pytest.approx(y["test_elbo"], rel=1e-6)
    wa, wb = (load_file(str(r / "checkpoint.safetensors")) for r in (two, one))
    weights = [k for k in wa if k.startswith("model/")]
    assert weights and set(wa) == set(wb) | {"rng/torch.rank1"}
    for key in weights:
        assert torch.allclose(wa[key], wb[key], rtol=1e-4, atol=1e-6), key
    # Rank 0 alone wrote the run directory: each epoch once.
    assert (two / "report.md").exists() and len(a) == 2


def test_resume_under_torchrun_continues_like_one_process(runs):
    two, one = runs
    parallel = torchrun("train", "--resume", str(two), "--epochs", "3", "--no-progress")
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    alone = single("train", "--resume", str(one), "--epochs", "3", "--no-progress")
    assert alone.returncode == 0, alone.stderr[-2000:]
    a, b = metrics(two), metrics(one)
    assert [r["epoch"] for r in a] == [1, 2, 3]
    assert a[-1]["test_elbo"] == pytest.approx(b[-1]["test_elbo"], rel=1e-5)


def test_sharded_evaluation_gathers_the_numbers_of_one_process(runs):
    two, _ = runs
    evaluate = ["evaluate", str(two), "--num-samples", "100", "--max-data", "41", "--no-progress"]
    parallel = torchrun(*evaluate, "--batch-size", "6")
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    assert parallel.stdout.count("Evaluation of log p(x)") == 1  # rank 0 reports
    sharded = dict(np.load(two / "evaluation.npz"))
    report = json.loads((two / "report.json").read_text())["evaluation"]
    assert report["processes"] == 2 and report["num_data"] == 41
    # One process with one thread, as each of torchrun's: the same numbers, bit for bit.
    alone = single(*evaluate, threads=1)
    assert alone.returncode == 0, alone.stderr[-2000:]
    whole = dict(np.load(two / "evaluation.npz"))
    assert len(sharded["test_index"]) == 41 and len(set(sharded["test_index"])) == 41
    for key in ("test_index", "log_px", "stderr", "ess", "khat", "elbo", "elbo_stderr"):
        assert np.array_equal(sharded[key], whole[key]), key


def test_commands_that_run_in_one_process_are_refused_under_torchrun(runs):
    two, _ = runs
    result = torchrun("sample", str(two))
    assert result.returncode != 0
    assert "error: torchrun runs train and evaluate in several processes" in result.stderr
    # Our processes print one line each; the traceback torchrun itself prints when a child
    # fails is its own (ChildFailedError), not one of ours.
    assert "PyroVaeError" not in result.stderr and "pyro_vae/cli.py" not in result.stderr

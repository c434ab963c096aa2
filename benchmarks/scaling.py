"""1 → N process scaling on this machine: training epochs and importance-sampling evaluation,
one process (all cores as threads) against ``torchrun --nproc_per_node=N`` (the cores shared out,
one share per process), measured in the same run.

Training: ``pyro-vae train`` of the bundled ``bernoulli_vae`` on binarized MNIST (global batch
``--batch-size``), ``--epochs`` epochs; the time is the epochs' own (``seconds`` in
metrics.jsonl, so start-up and data loading are left out), and the test ELBOs of both runs are
printed to show that they follow each other. Evaluation: ``pyro-vae evaluate`` of the
single-process run with K = ``--num-samples`` on ``--eval-data`` test images; the time is
importance sampling's own (``seconds`` in the evaluation report), and the largest per-datapoint
difference of log p̂ between the two is printed.

    PYRO_VAE_DATA=../shared/data python benchmarks/scaling.py --json scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int) -> None:
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    if processes == 1:
        command = [sys.executable, "-m", "pyro_vae", *args]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=1",
            f"--nproc_per_node={processes}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            "-m",
            "pyro_vae",
            *args,
        ]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--eval-data", type=int, default=200)
    parser.add_argument("--json")
    args = parser.parse_args()
    n = args.processes
    with tempfile.TemporaryDirectory() as tmp:
        runs = {p: Path(tmp) / f"train_{p}" for p in (1, n)}
        for p, run in runs.items():
            launch(
                [
                    "train",
                    "--model",
                    "bernoulli_vae",
                    "--data",
                    "binarized-mnist",
                    "--epochs",
                    str(args.epochs),
                    "--batch-size",
                    str(args.batch_size),
                    "--out",
                    str(run),
                    "--device",
                    "cpu",
                    "--no-progress",
                ],
                p,
            )
        history = {
            p: [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            for p, run in runs.items()
        }
        train_seconds = {p: sum(r["seconds"] for r in h) for p, h in history.items()}
        evaluation = {}
        for p in (1, n):
            launch(
                [
                    "evaluate",
                    str(runs[1]),
                    "--num-samples",
                    str(args.num_samples),
                    "--max-data",
                    str(args.eval_data),
                    "--device",
                    "cpu",
                    "--no-progress",
                ],
                p,
            )
            report = json.loads((runs[1] / "report.json").read_text())["evaluation"]
            evaluation[p] = {
                "seconds": report["seconds"],
                "log_px": np.load(runs[1] / "evaluation.npz")["log_px"],
            }
    difference = np.abs(evaluation[1]["log_px"] - evaluation[n]["log_px"]).max()
    result = {
        "processes": n,
        "cpu_count": os.cpu_count(),
        "train_epoch_seconds": {p: s / args.epochs for p, s in train_seconds.items()},
        "train_speedup": train_seconds[1] / train_seconds[n],
        "test_elbo": {p: h[-1]["test_elbo"] for p, h in history.items()},
        "evaluate_seconds": {p: e["seconds"] for p, e in evaluation.items()},
        "evaluate_speedup": evaluation[1]["seconds"] / evaluation[n]["seconds"],
        "evaluate_max_abs_difference": float(difference),
    }
    print(f"{os.cpu_count()} cores; 1 process against {n} (torchrun, gloo)")
    print(
        f"training, binarized MNIST, batch {args.batch_size}: "
        f"{result['train_epoch_seconds'][1]:.1f} s/epoch → "
        f"{result['train_epoch_seconds'][n]:.1f} s/epoch ({result['train_speedup']:.2f}×); "
        f"final test ELBO {result['test_elbo'][1]:.4f} and {result['test_elbo'][n]:.4f}"
    )
    print(
        f"evaluation, K = {args.num_samples}, {args.eval_data} images: "
        f"{result['evaluate_seconds'][1]:.1f} s → {result['evaluate_seconds'][n]:.1f} s "
        f"({result['evaluate_speedup']:.2f}×); largest |Δ log p̂| {difference:.2e}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

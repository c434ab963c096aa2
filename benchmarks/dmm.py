"""The bundled deep Markov model on ``mnist-rows``: its speed against Pyro's ``examples/dmm.py``,
and the table of what it estimates.

``--speed``: one training epoch of the bundled ``dmm`` pair (``pv.train``, Trace_ELBO, batch
20) against one epoch of Pyro's ``DMM`` class with its own defaults (z 100, emission 100,
transition 200, a ReLU RNN of 600; ClippedAdam, Trace_ELBO, batch 20, its ``get_mini_batch``:
sorted, reversed and packed sequences), imported from a Pyro checkout's ``examples/dmm.py``, on
the same ``--rows`` sequences of binarized MNIST rows. Both run here, one after the other; the
ratio ours / Pyro's is the number (< 1: ours is faster). Our epoch includes its test ELBO, on
100 sequences. Ours is timed twice: with its fused step (the default: the model's terms of all
steps in one batched call, :mod:`pyro_vae.objectives.fused_sequence`) and with Pyro's traced
``Trace_ELBO`` on the same pair (``fused=False``).

``--table``: train the bundled pair for ``--epochs`` on all of ``mnist-rows`` (unless the run
directory under ``--out`` has its checkpoint) and evaluate it on ``--max-data`` test sequences
(``pyro-vae evaluate``: ELBO, log p̂ by importance sampling, the gap, per sequence and per time
step), then AIS on ``--ais-data`` of them (evenly spread), beside their IS estimates.

    python benchmarks/dmm.py --speed --pyro-examples ../pyro/examples [--rows 2000]
    python benchmarks/dmm.py --table --epochs 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam

import pyro_vae as pv

BATCH = 20


def pyro_epoch_seconds(examples: Path, rows: torch.Tensor) -> float:
    """One epoch of Pyro's DMM as its ``main`` trains one (without KL annealing's bookkeeping,
    whose cost is one multiplication per site)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from pyro_examples import load_examples  # beside this script

    module = load_examples(examples)["dmm"]
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    dmm = module.DMM(input_dim=rows.shape[-1])
    adam = ClippedAdam({"lr": 3e-4, "betas": (0.96, 0.999), "clip_norm": 10.0, "lrd": 0.99996,
                        "weight_decay": 2.0})  # fmt: skip
    svi = SVI(dmm.model, dmm.guide, adam, loss=Trace_ELBO())
    lengths = torch.full((len(rows),), rows.shape[1], dtype=torch.long)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    began = time.perf_counter()
    for batch in order.split(BATCH):
        svi.step(*module.poly.get_mini_batch(batch, rows, lengths))
    return time.perf_counter() - began


def ours_epoch_seconds(rows: torch.Tensor, test: torch.Tensor, folder: Path, fused=True) -> float:
    path = folder / "rows.npz"
    n, steps = len(rows), rows.shape[1]
    np.savez(path, train=rows.numpy(), test=test.numpy(),
             train_lengths=np.full(n, steps), test_lengths=np.full(len(test), steps))  # fmt: skip
    vae = pv.load("dmm", data_shape=tuple(rows.shape[1:]), seed=0)
    pyro.set_rng_seed(0)
    trained = pv.train(vae, str(path), epochs=1, batch_size=BATCH, lr=3e-4, objective="trace",
                       fused=fused)  # fmt: skip
    return trained.history[-1]["seconds"]


def speed(examples: Path, n: int) -> dict:
    data = pv.load_dataset("mnist-rows")
    rows, test = data.train[:n], data.test[:100]
    with tempfile.TemporaryDirectory() as folder:
        ours = ours_epoch_seconds(rows, test, Path(folder))
        traced = ours_epoch_seconds(rows, test, Path(folder), fused=False)
    theirs = pyro_epoch_seconds(examples, rows)
    return {"rows": n, "batch": BATCH, "ours_seconds": round(ours, 2),
            "ours_traced_seconds": round(traced, 2), "pyro_seconds": round(theirs, 2),
            "ratio": round(ours / theirs, 3), "ratio_traced": round(traced / theirs, 3),
            "threads": torch.get_num_threads()}  # fmt: skip


def table(epochs: int, out: Path, num_samples: int, ais_steps: int, max_data: int,
          ais_data: int) -> dict:  # fmt: skip
    """Train (unless the run is there), evaluate (IS, ELBO, gap, per step) on ``max_data`` test
    sequences, and AIS on the first ``ais_data`` of them beside their IS estimates."""
    run = out / f"dmm-{epochs}ep"
    began = time.perf_counter()
    if not (run / "checkpoint.safetensors").exists():
        vae = pv.load("dmm", data_shape=(28, 28), seed=0)
        pv.train(vae, "mnist-rows", epochs=epochs, batch_size=BATCH, lr=3e-4, out=run,
                 progress=True)  # fmt: skip
    trained = time.perf_counter() - began
    evaluation = pv.evaluate_run(run, num_samples=num_samples, max_data=max_data, progress=True)
    r = evaluation.report
    ais = _ais(run, evaluation, ais_data, ais_steps)
    return {"epochs": epochs, "train_seconds": round(trained), "test_sequences": r.num_data,
            "elbo": r.elbo.mean, "is_log_px": r.log_px.mean, "is_stderr": r.log_px.mc_stderr,
            "gap": r.gap.mean, "khat_median": r.khat_median, "per_step": vars(r.steps),
            "ais": ais, "run": str(run)}  # fmt: skip


def _ais(run: Path, evaluation, n: int, steps: int) -> dict:
    """AIS on ``n`` of the evaluated sequences, with their IS estimates for comparison."""
    from pyro_vae.runs.config import prepare_data
    from pyro_vae.runs.run_dir import load_run

    vae, config = load_run(run)
    vae.eval()
    data = prepare_data(vae, config)
    # Evenly spread over the evaluated sequences (test splits are often sorted by class).
    picked = torch.linspace(0, evaluation.num_data - 1, n).round().long()
    rows = torch.as_tensor(evaluation.setup.test_index)[picked]
    x, lengths = data.array("x", "test")[rows], data.array("lengths", "test")[rows]
    pyro.set_rng_seed(0)
    began = time.perf_counter()
    with pyro.validation_enabled(False):
        found = pv.log_likelihood(vae.model, vae.guide, x, lengths, method="ais",
                                  num_samples=16, num_steps=steps, progress=True)  # fmt: skip
    is_values = evaluation.log_likelihood.log_px[picked].double()
    return {"sequences": n, "steps": steps, "chains": 16, "log_px": found.mean,
            "stderr": found.mean_stderr, "is_log_px_same_sequences": float(is_values.mean()),
            "elbo_same_sequences": float(evaluation.gap.elbo.elbo[picked].double().mean()),
            "seconds": round(time.perf_counter() - began)}  # fmt: skip


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--pyro-examples", type=Path)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--ais-steps", type=int, default=200)
    parser.add_argument("--max-data", type=int, default=500)
    parser.add_argument("--ais-data", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    results = {"date": time.strftime("%Y-%m-%d")}
    if args.speed:
        if args.pyro_examples is None:
            parser.error("--speed needs --pyro-examples (a Pyro checkout's examples/ folder)")
        results["speed"] = speed(args.pyro_examples, args.rows)
    if args.table:
        results["table"] = table(args.epochs, args.out, args.num_samples, args.ais_steps,
                                 args.max_data, args.ais_data)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dmm.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

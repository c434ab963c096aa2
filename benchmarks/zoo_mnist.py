"""A paper-style table on statically binarized MNIST: richer priors and posteriors against the
mean-field VAE, trained with the same nets, epochs and seed, and scored the same way.

Every entry uses the same nets, 784-200-200-50 with ReLU, in the decoder and the encoder
(``benchmarks/specs/zoo/``); only the prior, the variational family or the objective changes.
(ReLU rather than the tanh of the IWAE paper's nets: with tanh nets the VampPrior's encoder
collapsed onto its prior within a few hundred steps in our runs, with or without KL warm-up.)

==================  ==================  ================  ======================================
entry               model / guide       objective         what changes
==================  ==================  ================  ======================================
VAE (mean field)    vae / mean_field    trace_mean_field  nothing: the baseline
IWAE k=5            vae / mean_field    iwae:k=5          the training bound
VampPrior           vamp / mean_field   trace_mean_field  p(z): 500 pseudo-inputs
IAF guide           vae / iaf           trace_mean_field  q(z|x): 2 inverse autoregressive flows
full-cov. guide     vae / full_normal   trace_mean_field  q(z|x): full covariance, L from the net
full-cov. relative  vae / full_normal_  trace_mean_field  the same, L = diag(σ)(I + M) (the net's
                    relative                              off-diagonals relative to each row's σ)
==================  ==================  ================  ======================================

Each is trained for ``--epochs`` epochs (batch 100, Adam, lr 1e-3, seed 0) on the 50,000
training images, with the 10,000 validation images as its validation split; then ``pyro-vae
evaluate --checkpoint best`` estimates log p(x) at the best epoch by the validation ELBO, by
importance sampling with ``--num-samples`` (5000) samples from the guide on ``--eval-data`` test
images (a seeded random subset, the same for every row); the table gives the test NLL =
−log p̂(x), the ELBO, the gap, how many datapoints have Pareto k̂ > 0.7 (where log p̂ is
unreliable, likely too low), and each row's NLL paired with the baseline's on the same images,
with the standard error of the paired differences. Published numbers come from runs of
hundreds to thousands of epochs, so the comparison that matters is the one between rows.
Existing run directories under ``--out`` are resumed, so an interrupted table continues.

    PYRO_VAE_DATA=../shared/data python benchmarks/zoo_mnist.py --epochs 20 --out runs/zoo
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import pyro_vae as pv
from pyro_vae.results.stats import Difference
from pyro_vae.runs.run_dir import CHECKPOINT, checkpoint_epoch

SPECS = Path(__file__).parent / "specs" / "zoo"

#: (label, model, guide, objective, published NLL on static MNIST, where it comes from).
ENTRIES = [
    ("VAE (mean field)", "vae", "mean_field", "trace_mean_field", 89.9, "VAE"),
    ("IWAE k=5", "vae", "mean_field", "iwae:k=5", 87.1, "IWAE, k=50"),
    ("VampPrior", "vamp", "mean_field", "trace_mean_field", 85.57, "Tomczak & Welling 2018"),
    ("IAF guide", "vae", "iaf", "trace_mean_field", None, ""),
    ("full-cov. guide", "vae", "full_normal", "trace_mean_field", None, ""),
    ("full-cov. relative", "vae", "full_normal_relative", "trace_mean_field", None, ""),
]


def run_entry(label, model, guide, objective, args) -> dict:
    run = Path(args.out) / label.lower().replace(".", "").replace(" ", "_")
    began = time.perf_counter()
    if (run / CHECKPOINT).exists():
        if checkpoint_epoch(run) < args.epochs:
            pv.resume(run, epochs=args.epochs, progress=args.progress)
    else:
        vae = pv.load(
            SPECS / f"{model}.toml", SPECS / f"{guide}.toml", data_shape=(1, 28, 28), seed=0
        )
        pv.train(
            vae,
            "binarized-mnist",
            objective=objective,
            epochs=args.epochs,
            batch_size=100,
            lr=1e-3,
            seed=0,
            validation="own",
            out=run,
            progress=args.progress,
        )
    train_seconds = time.perf_counter() - began
    evaluation = pv.evaluate_run(
        run,
        num_samples=args.num_samples,
        max_data=args.eval_data,
        checkpoint="best",
        progress=args.progress,
    )
    e = evaluation.to_dict()  # the report section: the same numbers as report.json
    arrays = evaluation.arrays()
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        "label": label,
        "run": str(run),
        "objective": objective,
        "epochs": checkpoint_epoch(run),
        "train_seconds": sum(r["seconds"] for r in history),
        "wall_seconds_this_call": train_seconds,
        "nll": -e["log_px"]["mean"],
        "nll_mc_stderr": e["log_px"]["mc_stderr"],
        "nll_datapoint_stderr": e["log_px"]["datapoint_stderr"],
        "elbo": e["elbo"]["mean"],
        "gap": e["gap"]["mean"],
        "khat_above_0.7": e["khat_above_0.7"],
        "num_data": e["num_data"],
        "eval_seconds": e["seconds"],
        "best_epoch": e["checkpoint_epoch"],
        "log_px": arrays["log_px"].tolist(),  # per test image, for the paired differences
        "test_index": arrays["test_index"].tolist(),
    }


def paired(baseline: dict, row: dict) -> tuple[float, float]:
    """Mean and standard error of the per-image NLL differences (row − baseline)."""
    if row["test_index"] != baseline["test_index"]:
        raise ValueError(f"{row['label']}: scored on other test images than the baseline")
    both = np.isfinite(row["log_px"]) & np.isfinite(baseline["log_px"])
    found = Difference.of(-(np.asarray(row["log_px"]) - np.asarray(baseline["log_px"]))[both])
    return found.mean, found.stderr


def markdown(rows: list[dict], args) -> str:
    published = {label: (nll, source) for label, *_, nll, source in ENTRIES}
    lines = [
        f"Statically binarized MNIST, {rows[0]['epochs']} epochs each (batch 100, Adam 1e-3, seed "
        f"0), 784-200-200-50 ReLU nets, each at its best epoch by the validation ELBO; log p̂(x) "
        f"by importance sampling with K = "
        f"{args.num_samples} on {rows[0]['num_data']} random test images (seed 0).",
        "",
        "| model | best epoch | test NLL | ELBO | gap | k̂ > 0.7 | train s | published NLL |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        nll, source = published[r["label"]]
        reference = f"{nll} ({source})" if nll is not None else "–"
        lines.append(
            f"| {r['label']} | {r['best_epoch']} | "
            f"{r['nll']:.2f} ± {r['nll_datapoint_stderr']:.2f} | "
            f"{r['elbo']:.2f} | {r['gap']:.2f} | {r['khat_above_0.7']} of {r['num_data']} | "
            f"{r['train_seconds']:.0f} | {reference} |"
        )
    lines += ["", "Paired with the baseline on the same test images (± over datapoints):", ""]
    for r in rows[1:]:
        mean, stderr = paired(rows[0], r)
        lines.append(f"- {r['label']}: NLL {mean:+.2f} ± {stderr:.2f} nats")
    lines += [
        "",
        "± is the standard error over datapoints. Published numbers come from much longer "
        "training (hundreds to thousands of epochs, with warm-up and early stopping), so they "
        "are lower; the comparison that matters is between the rows above.",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--eval-data", type=int, default=1000, help="test images scored")
    parser.add_argument("--out", default="runs/zoo")
    parser.add_argument("--only", nargs="+", help="labels of the entries to run")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args()
    rows = []
    for label, model, guide, objective, *_ in ENTRIES:
        if args.only and label not in args.only:
            continue
        rows.append(run_entry(label, model, guide, objective, args))
        shown = {k: v for k, v in rows[-1].items() if k not in ("log_px", "test_index")}
        print(json.dumps(shown), flush=True)
    out = Path(args.out)
    (out / "zoo.json").write_text(json.dumps(rows, indent=2) + "\n")
    text = markdown(rows, args)
    (out / "zoo.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""The conditional and semi-supervised models declared in TOML, against the published tables.

    python benchmarks/conditional.py [--out DIR] [--cvae-epochs E] [--m2-epochs E]
        [--draws 3] [--labels 100 3000] [--max-test N] [--pyro-examples PYRO/examples]

1. **CVAE** (bundled ``cvae``, Sohn et al. 2015) on the quadrant task of Pyro's CVAE tutorial,
   1 / 2 / 3 quadrants given: the negative conditional log-likelihood −log p(x | c) of the
   quadrants to predict, by importance sampling (K samples from q(z | x, c)), next to the ELBO
   (the tutorial's kind of number) and to a baseline network (an MLP from the input quadrants to
   the others' pixel probabilities, trained by the same cross-entropy; its NLL is exact).
2. **M2** (bundled ``ss_vae``, Kingma et al. 2014, classification term α = 46 as in Pyro's
   example) on MNIST with 100 and 3000 labels, ``--draws`` class-balanced label draws each: the
   classifier q(y | x)'s test accuracy, mean and spread.
3. With ``--pyro-examples`` (the ``examples/`` folder of a Pyro checkout): the training speed of
   ``ss_vae`` per epoch against Pyro's own ``ss_vae_M2`` (its ``SSVAE``, losses and epoch loop,
   imported, not copied) with the same nets on the same rows, as a ratio measured in this run.

Data: pixels are binarized (a fresh Bernoulli draw of the grey levels each epoch; one fixed draw
for the test rows), so that a Bernoulli likelihood is a density and the nats are log-likelihoods;
Pyro's tutorials score grey levels with the same cross-entropy, which is not one. Writes
``conditional.md`` and ``conditional.json``; needs MNIST (``PYRO_VAE_DATA`` or the loader's
download).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import pyro_vae as pv
from pyro_vae.runs.config import data_shapes
from pyro_vae.spec.resolve import read_model

#: Pyro's CVAE tutorial (50 epochs, early stopping with patience 3): −log p(x | c) estimated with
#: the ELBO, and the baseline network's cross-entropy, for 1 / 2 / 3 quadrants given.
PUBLISHED_CVAE = {1: (71.8, 100.4), 2: (51.0, 61.9), 3: (24.2, 25.4)}
#: Test accuracy: Pyro's SS-VAE tutorial; Kingma et al. (2014), M2, 1 − error.
PUBLISHED_M2 = {100: (0.932, 1 - 0.1197), 600: (0.944, 1 - 0.0494), 1000: (0.949, 1 - 0.0360),
                3000: (0.958, 1 - 0.0392)}  # fmt: skip


def cvae_task(given: int, epochs: int, max_test: int, num_samples: int) -> dict:
    """Train the bundled cvae on one quadrant task; −log p(x | c) by IS, −ELBO, baseline."""
    natural = pv.load_dataset("mnist-quadrants", given=given)
    vae = pv.load("cvae", data_shape=data_shapes(read_model("cvae"), natural), seed=0)
    began = time.perf_counter()
    trained = pv.train(
        vae, "mnist-quadrants", data_options={"given": given}, epochs=epochs, batch_size=128
    )
    seconds = time.perf_counter() - began
    data = trained.dataset
    x, c = data.test[:max_test], data.array("given", "test")[:max_test]
    ll = pv.log_likelihood(vae.model, vae.guide, x, c, num_samples=num_samples, seed=0)
    bound = pv.elbo(vae.model, vae.guide, x, c, num_samples=num_samples, seed=1)
    baseline = baseline_nll(data, epochs, max_test)
    return {
        "given": given,
        "estimand": ll.estimand.log_p(),
        "nll_is": -float(ll.mean),
        "nll_is_stderr": float(ll.mean_stderr),
        "khat_above_0.7": int((ll.khat > 0.7).sum()),
        "nll_elbo": -float(bound.elbo.mean()),
        "nll_baseline": baseline,
        "train_seconds": seconds,
    }


def baseline_nll(data, epochs: int, max_test: int) -> float:
    """A deterministic MLP (input → 500 → 500 → output logits), trained with Adam on the same
    binarized rows by cross-entropy; its test cross-entropy is its exact −log p(x | c)."""
    torch.manual_seed(0)
    inputs, outputs = data.columns["given"][0].shape[1], data.train.shape[1]
    net = nn.Sequential(
        nn.Linear(inputs, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, outputs)
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    c_train, generator = data.array("given", "train"), torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for rows in torch.randperm(len(c_train), generator=generator).split(128):
            target = torch.bernoulli(data.train_intensities[rows], generator=generator)
            loss = F.binary_cross_entropy_with_logits(net(c_train[rows]), target, reduction="sum")
            optimizer.zero_grad()
            (loss / len(rows)).backward()
            optimizer.step()
    with torch.no_grad():
        logits = net(data.array("given", "test")[:max_test])
        nll = F.binary_cross_entropy_with_logits(logits, data.test[:max_test], reduction="none")
    return float(nll.sum(-1).mean())


def m2_accuracy(labelled: int, draw: int, epochs: int) -> dict:
    """Train the bundled ss_vae with ``labelled`` labels (label draw ``draw``); test accuracy."""
    natural = pv.load_dataset("mnist")
    vae = pv.load("ss_vae", data_shape=data_shapes(read_model("ss_vae"), natural), seed=draw)
    began = time.perf_counter()
    trained = pv.train(
        vae, "mnist", data_options={"labelled": labelled}, seed=draw, epochs=epochs,
        batch_size=200,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    data = trained.dataset
    probs = torch.cat([vae.classify(x)["y"] for x in data.test.split(1000)])
    accuracy = float((probs.argmax(-1) == data.test_labels).float().mean())
    return {"labelled": labelled, "draw": draw, "accuracy": accuracy, "train_seconds": seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--cvae-epochs", type=int, default=10)
    parser.add_argument("--m2-epochs", type=int, default=10)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--labels", type=int, nargs="*", default=[100, 3000])
    parser.add_argument("--quadrants", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument(
        "--merge", type=Path, help="a conditional.json of an earlier run whose rows to keep"
    )
    parser.add_argument("--max-test", type=int, default=2000)
    parser.add_argument("--num-samples", type=int, default=100)
    parser.add_argument("--pyro-examples", type=Path)
    parser.add_argument("--speed-rows", type=int, default=10000)
    args = parser.parse_args(argv)
    results = {"settings": vars(args) | {"out": str(args.out), "pyro_examples": None}}
    results["settings"]["merge"] = None
    earlier = json.loads(args.merge.read_text()) if args.merge else {}
    results["cvae"] = earlier.get("cvae", []) + [
        report(cvae_task(g, args.cvae_epochs, args.max_test, args.num_samples))
        for g in args.quadrants
    ]
    results["m2"] = earlier.get("m2", []) + [
        report(m2_accuracy(n, d, args.m2_epochs)) for n in args.labels for d in range(args.draws)
    ]
    if args.pyro_examples:
        from conditional_speed import m2_speed  # beside this script

        results["speed"] = report(m2_speed(args.pyro_examples, args.speed_rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "conditional.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "conditional.md").write_text(markdown(results))
    print(markdown(results))


def report(row: dict) -> dict:
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def markdown(results: dict) -> str:
    s = results["settings"]
    lines = [
        f"# Conditional and semi-supervised models ({time.strftime('%Y-%m-%d')})",
        "",
        f"CVAE: {s['cvae_epochs']} epochs, batch 128, Adam 1e-3; −log p(x | c) by importance "
        f"sampling with K = {s['num_samples']} on {s['max_test']} test rows (nats).",
        "",
        "| quadrants given | CVAE, IS | CVAE, −ELBO | baseline | tutorial CVAE (−ELBO) "
        "| tutorial baseline | k̂ > 0.7 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["cvae"]:
        paper = PUBLISHED_CVAE[r["given"]]
        lines.append(
            f"| {r['given']} | {r['nll_is']:.1f} ± {r['nll_is_stderr']:.2f} | "
            f"{r['nll_elbo']:.1f} | {r['nll_baseline']:.1f} | {paper[0]} | {paper[1]} | "
            f"{r['khat_above_0.7']} |"
        )
    lines += [
        "",
        f"M2: {s['m2_epochs']} epochs, batch 200, Adam 1e-3, classify = 46; test accuracy over "
        f"{s['draws']} label draws.",
        "",
        "| labels | accuracy, mean | min – max | Pyro tutorial | Kingma et al. M2 |",
        "|---|---|---|---|---|",
    ]
    for n in s["labels"]:
        acc = [r["accuracy"] for r in results["m2"] if r["labelled"] == n]
        tutorial, kingma = (f"{v:.3f}" for v in PUBLISHED_M2[n]) if n in PUBLISHED_M2 else "––"
        spread = statistics.stdev(acc) if len(acc) > 1 else float("nan")
        lines.append(
            f"| {n} | {statistics.mean(acc):.3f} (sd {spread:.3f}) | {min(acc):.3f} – "
            f"{max(acc):.3f} | {tutorial} | {kingma} |"
        )
    if "speed" in results:
        sp = results["speed"]
        lines += [
            "",
            f"Training speed, {sp['rows']} MNIST rows ({sp['labelled']} labelled), batch 200: "
            f"ss_vae {sp['ours_seconds']:.1f} s per epoch, Pyro's ss_vae_M2 "
            f"{sp['pyro_seconds']:.1f} s; ratio {sp['ratio']:.2f} (ours / Pyro's).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

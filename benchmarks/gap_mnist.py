"""Why the ELBO is loose on binarized MNIST: the bundled bernoulli_vae (784-200-200-50 tanh,
mean-field guide) trained with the analytic-KL ELBO, then evaluated on a seeded random subset
of the test images with importance sampling and AIS side by side (each timed), the gap split
into approximation and amortization gaps, ELBO surgery and active units.

    PYRO_VAE_DATA=../shared/data python benchmarks/gap_mnist.py --epochs 50 --out runs/gap
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyro_vae as pv
from pyro_vae.runs.run_dir import CHECKPOINT, checkpoint_epoch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument(
        "--eval-data", type=int, default=500, help="test images evaluated (a seeded random subset)"
    )
    parser.add_argument("--num-samples", type=int, default=5000, help="K for importance sampling")
    parser.add_argument("--ais-samples", type=int, default=16)
    parser.add_argument("--ais-steps", type=int, default=500)
    parser.add_argument("--out", default="runs/gap")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args()
    run = Path(args.out)
    if not (run / CHECKPOINT).exists():
        vae = pv.load("bernoulli_vae", "mean_field", data_shape=(1, 28, 28), seed=0)
        pv.train(
            vae,
            "binarized-mnist",
            objective="trace_mean_field",
            epochs=args.epochs,
            batch_size=100,
            lr=1e-3,
            seed=0,
            out=run,
            progress=args.progress,
        )
    elif checkpoint_epoch(run) < args.epochs:
        pv.resume(run, epochs=args.epochs, progress=args.progress)
    e = pv.evaluate_run(
        run,
        num_samples=args.num_samples,
        max_data=args.eval_data,
        ais=True,
        ais_samples=args.ais_samples,
        ais_steps=args.ais_steps,
        decompose=True,
        surgery=True,
        progress=args.progress,
    ).to_dict()  # the report section: the same numbers as report.json
    a, d, s = e["ais"], e["decomposition"], e["surgery"]
    usage = e["latent_usage"]["latents"]["z"]
    rows = [
        (
            "log p̂(x), IS",
            e["log_px"],
            f"K = {e['num_samples']}, {e['seconds']:.0f} s "
            f"(with the ELBO), k̂ > 0.7 on {e['khat_above_0.7']} of {e['num_data']}",
        ),
        (
            "log p̂(x), AIS",
            a["log_px"],
            f"{a['num_samples']} chains × {a['num_steps']} steps, "
            f"{a['seconds']:.0f} s, AIS − IS = {a['minus_is']['mean']:+.2f} ± "
            f"{a['minus_is']['stderr']:.2f}",
        ),
        ("ELBO (amortized q)", e["elbo"], ""),
        (
            "ELBO (q refined per datapoint)",
            d["elbo_refined"],
            f"{d['converged']} of {e['num_data']} converged, {d['seconds']:.0f} s",
        ),
        ("approximation gap", d["approximation_gap"], "log p̂ (AIS) − refined ELBO"),
        ("amortization gap", d["amortization_gap"], "refined ELBO − ELBO"),
    ]
    lines = [
        f"bernoulli_vae / mean_field, {checkpoint_epoch(run)} epochs on binarized MNIST; the "
        f"{e['num_data']} random test images (seed 0)",
        "",
        "| quantity | nats per datapoint | note |",
        "|---|---|---|",
        *[
            f"| {name} | {stats['mean']:.2f} ± {stats['mc_stderr']:.2f} | {note} |"
            for name, stats, note in rows
        ],
        f"| average KL | {s['average_kl']:.2f} ± {s['average_kl_stderr']:.2f} | |",
        f"| mutual information | {s['mutual_information']:.2f} ± "
        f"{s['mutual_information_stderr']:.2f} | log N = {s['log_num_data']:.2f} |",
        f"| marginal KL | {s['marginal_kl']:.2f} ± {s['marginal_kl_stderr']:.2f} | |",
        f"| active units | {usage['active_units']} of {usage['dims']} | "
        f"KL {usage['kl_total']:.2f} |",
    ]
    text = "\n".join(lines) + "\n"
    (run / "gap.md").write_text(text)
    (run / "gap.json").write_text(json.dumps(e, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Published log-likelihoods on statically binarized MNIST, reproduced with each paper's recipe,
side by side with the paper and the closest peer (pythae's reproduction table).

Each row is a recipe (:data:`RECIPES`): the nets (specs under ``benchmarks/specs/``), the
objective, the optimizer, the learning-rate schedule, KL warm-up, the validation split and the
number of epochs the paper trained. A row runs its recipe in full (``--budget 1``) or a stated
fraction of its epochs (``--budget 0.05``); the schedule is the recipe's own either way (the
fraction runs its first epochs), so a row at a fraction is where the full recipe would be after
those epochs, and its learning curve (the validation ELBO per epoch and per CPU hour, with its
slope over the last quarter) says where it is heading. Existing run directories under
``--out`` are resumed, so a row may span several sittings.

Every row is scored at its **best checkpoint by the validation ELBO** (the 10,000 validation
images): log p̂(x) by importance sampling with 200 samples on all 10,000 test images (the
peer's measure), with 5000 samples and by AIS on ``--eval-data`` seeded random test images,
each with its standard error and its count of datapoints with Pareto k̂ > 0.7.

    PYRO_VAE_DATA=../shared/data python benchmarks/reproduce.py --only vae --out runs/reproduce

Writes ``reproduce.json``, ``reproduce.md`` and ``curves.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pyro_vae as pv  # noqa: E402
from pyro_vae.runs.run_dir import CHECKPOINT, checkpoint_epoch  # noqa: E402

SPECS = Path(__file__).parent / "specs"


@dataclass(frozen=True)
class Recipe:
    """One published number and how it was reached: the settings ``pv.train`` takes."""

    label: str
    model: Path | str  # a spec file, or the name of a bundled spec
    guide: Path | str
    epochs: int  # the paper's (or the peer's) number of epochs
    settings: dict
    published: float  # test NLL, nats
    source: str
    peer_table: float | None = None  # the peer's reproduction table
    peer_measured: float | None = None  # the peer's code at its setting, run on this machine
    notes: list[str] = field(default_factory=list)


#: Tomczak & Welling (2018)'s training: Adam 5e-4, batch 100, KL warm-up over 100 epochs, up to
#: 2000 epochs, stopped after 50 without a better validation ELBO.
TOMCZAK = dict(objective="trace_mean_field", batch_size=100, lr=5e-4, kl_warmup=100, early_stop=50)

RECIPES = {
    "vae": Recipe(
        "VAE (pythae's setting)",
        SPECS / "reproduce" / "vae_400_40.toml",
        SPECS / "reproduce" / "encoder_400_relu.toml",
        500,
        dict(
            objective="trace_mean_field",
            batch_size=100,
            lr=1e-4,
            lr_schedule=f"multistep:milestones=200+350,gamma={10 ** (-1 / 5):.6f}",
        ),
        89.9,
        "Rezende & Mohamed 2015",
        peer_table=89.78,
        peer_measured=92.59,
        notes=[
            "peer measured: pythae's own code and pipeline at this setting, 500 epochs, IS-200 "
            "on all 10,000 test images (measured on this machine when the issue was filed)"
        ],
    ),
    "gated_vae": Recipe(
        "VAE, gated nets, warm-up",
        SPECS / "reproduce" / "vae_gated.toml",
        SPECS / "reproduce" / "encoder_gated.toml",
        2000,
        TOMCZAK,
        88.56,
        "Tomczak & Welling 2018",
        notes=["their one-layer VAE with the standard prior: the recipe that reached ≤ 89.9"],
    ),
    "vamp": Recipe(
        "VampPrior (500 pseudo-inputs)",
        SPECS / "reproduce" / "vamp_gated.toml",
        SPECS / "reproduce" / "encoder_gated.toml",
        2000,
        TOMCZAK,
        85.57,
        "Tomczak & Welling 2018",
        peer_table=85.79,
    ),
    "iwae": Recipe(
        "IWAE k=50",
        "bernoulli_vae",  # the bundled specs: the IWAE paper's 784-200-200-50 tanh nets
        "mean_field",
        3280,
        dict(objective="iwae:k=50", batch_size=20, lr=1e-3, eps=1e-4, lr_schedule="iwae"),
        87.1,
        "Burda et al. 2016",
        peer_table=86.82,
    ),
}


def train_row(recipe: Recipe, run: Path, epochs: int, progress: bool) -> None:
    """Train (or resume) the recipe's run to ``epochs`` epochs, with the validation split."""
    if (run / CHECKPOINT).exists():
        if checkpoint_epoch(run) < epochs:
            pv.resume(run, epochs=epochs, progress=progress)
        return
    vae = pv.load(recipe.model, recipe.guide, data_shape=(1, 28, 28), seed=0)
    settings = dict(recipe.settings, epochs=epochs, seed=0, validation="own", progress=progress)
    pv.train(vae, "binarized-mnist", out=run, **settings)


def score_row(run: Path, args) -> dict:
    """The best checkpoint's log p̂: IS-200 on every test image; IS-5000 and AIS on a subset."""
    every = pv.evaluate_run(
        run, num_samples=200, elbo_samples=10, checkpoint="best", progress=args.progress
    ).report
    subset = pv.evaluate_run(
        run,
        num_samples=5000,
        max_data=args.eval_data,
        ais=True,
        ais_samples=args.ais_samples,
        ais_steps=args.ais_steps,
        decompose=args.decompose,
        checkpoint="best",
        progress=args.progress,
    ).report
    split = subset.decomposition
    gaps = {} if split is None else {
        "elbo_subset": subset.elbo.mean,
        "elbo_refined": split.elbo_refined.mean,
        "approximation_gap": split.approximation_gap.mean,
        "approximation_stderr": split.approximation_gap.datapoint_stderr,
        "amortization_gap": split.amortization_gap.mean,
        "amortization_stderr": split.amortization_gap.datapoint_stderr,
        "converged": split.converged,
    }  # fmt: skip
    return {
        "gap_split": gaps,
        "best_epoch": every.checkpoint_epoch,
        "is200": _nll(every.log_px, every.khat_above, every.num_data),
        "is5000": _nll(subset.log_px, subset.khat_above, subset.num_data),
        "ais": _nll(subset.ais.log_px, None, subset.num_data),
        "elbo": every.elbo.mean,
    }


def _nll(stats, khat_above, n) -> dict:
    return {
        "nll": -stats.mean,
        "stderr": stats.datapoint_stderr,
        "mc_stderr": stats.mc_stderr,
        "khat_above_0.7": khat_above,
        "num_data": n,
    }


def learning_curve(run: Path) -> dict:
    """Validation ELBO per epoch and per CPU hour, and its slope over the last quarter."""
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = np.array([r["epoch"] for r in history])
    valid = np.array([r["valid_elbo"] for r in history])
    hours = np.cumsum([r["seconds"] for r in history]) / 3600
    tail = slice(len(history) * 3 // 4, None)
    slope = np.polyfit(epochs[tail], valid[tail], 1)[0] if len(history) >= 8 else math.nan
    return {
        "epochs": epochs.tolist(),
        "valid_elbo": valid.tolist(),
        "cpu_hours": hours.tolist(),
        "slope_per_100_epochs": float(slope * 100),
        "hours_per_100_epochs": float(hours[-1] / len(history) * 100),
    }


def run_row(key: str, args) -> dict:
    recipe = RECIPES[key]
    epochs = max(1, round(recipe.epochs * args.budget)) if key != "vae" else args.vae_epochs
    run = Path(args.out) / key
    began = time.perf_counter()
    train_row(recipe, run, epochs, args.progress)
    row = {"key": key, "label": recipe.label, "epochs": epochs, "recipe_epochs": recipe.epochs}
    row.update(score_row(run, args))
    row["curve"] = learning_curve(run)
    row["wall_seconds_this_call"] = time.perf_counter() - began
    return row


def markdown(rows: list[dict], args) -> str:
    lines = [
        "Statically binarized MNIST (50,000 train, 10,000 validation, 10,000 test), each row at "
        "its best checkpoint by the validation ELBO. Test NLL in nats (± over datapoints); "
        f"IS-5000 and AIS ({args.ais_samples} chains × {args.ais_steps} steps) on "
        f"{args.eval_data} seeded random test images.",
        "",
        "| recipe | epochs (of) | best | IS-200, all | IS-5000 | AIS | k̂>0.7 (5000) | paper "
        "| peer table | peer code | slope /100 ep | CPU h /100 ep |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        recipe = RECIPES[r["key"]]
        lines.append(
            f"| {r['label']} | {r['epochs']} ({r['recipe_epochs']}) | {r['best_epoch']} | "
            f"{_cell(r['is200'])} | {_cell(r['is5000'])} | {_cell(r['ais'])} | "
            f"{r['is5000']['khat_above_0.7']} of {r['is5000']['num_data']} | "
            f"{recipe.published} ({recipe.source}) | {_or_dash(recipe.peer_table)} | "
            f"{_or_dash(recipe.peer_measured)} | {r['curve']['slope_per_100_epochs']:+.2f} | "
            f"{r['curve']['hours_per_100_epochs']:.2f} |"
        )
    notes = [f"- {RECIPES[r['key']].label}: {n}" for r in rows for n in RECIPES[r["key"]].notes]
    lines += ["", *notes] if notes else []
    split = [r for r in rows if r["gap_split"]]
    if split:
        lines += [
            "",
            f"The gap split (Cremer, Li & Duvenaud 2018) on the {args.eval_data} images, log p̂ "
            "from AIS: approximation = log p̂ − ELBO of q refined per datapoint; amortization = "
            "refined − amortized ELBO (± over datapoints).",
            "",
            "| recipe | log p̂ (AIS) | refined ELBO | ELBO | approximation | amortization | "
            "converged |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in split:
            g = r["gap_split"]
            lines.append(
                f"| {r['label']} | {-r['ais']['nll']:.2f} | {g['elbo_refined']:.2f} | "
                f"{g['elbo_subset']:.2f} | {g['approximation_gap']:.2f} ± "
                f"{g['approximation_stderr']:.2f} | {g['amortization_gap']:.2f} ± "
                f"{g['amortization_stderr']:.2f} | {g['converged']} of {r['ais']['num_data']} |"
            )
    return "\n".join(lines) + "\n"


def _cell(nll: dict) -> str:
    return f"{nll['nll']:.2f} ± {nll['stderr']:.2f}"


def _or_dash(value) -> str:
    return "–" if value is None else f"{value}"


def plot_curves(rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        c = r["curve"]
        axes[0].plot(c["epochs"], c["valid_elbo"], label=r["label"])
        axes[1].plot(c["cpu_hours"], c["valid_elbo"], label=r["label"])
    for ax, x in zip(axes, ("epoch", "CPU hours (this machine)"), strict=True):
        ax.set_xlabel(x)
        ax.set_ylabel("validation ELBO (nats)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--vae-epochs", type=int, default=500, help="the VAE row (500: in full)")
    parser.add_argument("--budget", type=float, default=0.05, help="fraction of other rows' epochs")
    parser.add_argument("--eval-data", type=int, default=1000, help="test images for IS-5000/AIS")
    parser.add_argument("--ais-samples", type=int, default=16)
    parser.add_argument("--ais-steps", type=int, default=500)
    parser.add_argument(
        "--decompose",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="split the gap into approximation and amortization parts on the same images",
    )
    parser.add_argument("--out", default="runs/reproduce")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for key in args.only:
        rows.append(run_row(key, args))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}), flush=True)
    (out / "reproduce.json").write_text(json.dumps(rows, indent=2) + "\n")
    text = markdown(rows, args)
    (out / "reproduce.md").write_text(text)
    plot_curves(rows, out / "curves.png")
    print(text)


if __name__ == "__main__":
    main()

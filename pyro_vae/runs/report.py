"""Training reports: ``report.json`` (numbers), ``report.md`` (for people), ``plots/*.png``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..tables import fmt, markdown_table
from . import plots
from .files import write_text_atomic


def write_training_report(run_dir: Path, vae, dataset, config, history: list[dict]) -> dict:
    """Plots and reports of a finished run; returns the report as a dict."""
    run_dir = Path(run_dir)
    title = f"{Path(vae.model_spec.path).stem} / {Path(vae.guide_spec.path).stem} on {dataset.name}"
    figures = {"elbo": plots.elbo_curves(history, run_dir / "plots" / "elbo.png", title)}
    generator_state = torch.get_rng_state()  # report sampling must not change a resumed run
    torch.manual_seed(config.seed)
    if dataset.image_shape is not None:
        figures["samples"] = plots.image_grid(
            vae.sample(64),
            dataset.image_shape,
            run_dir / "plots" / "samples.png",
            "samples (mean of p(x | z), z ~ p(z))",
        )
        originals = dataset.test[:16]
        figures["reconstructions"] = plots.image_grid(
            torch.cat([originals, vae.reconstruct(originals)]),
            dataset.image_shape,
            run_dir / "plots" / "reconstructions.png",
            "test images (top) and reconstructions (bottom)",
            columns=16,
        )
    else:
        figures["data_vs_model"] = plots.data_vs_model(
            dataset.test,
            vae.sample(len(dataset.test), mean=False),
            run_dir / "plots" / "data_vs_model.png",
            title,
        )
    torch.set_rng_state(generator_state)

    final = history[-1] if history else {}
    report = {
        "model": vae.model_spec.path,
        "model_description": vae.model_spec.description,
        "guide": vae.guide_spec.path,
        "data": dataset.name,
        "data_shape": list(vae.data_shape),
        "num_train": len(dataset.train),
        "num_test": len(dataset.test),
        "config": config.to_dict(),
        "num_parameters": sum(p.numel() for p in vae.parameters()),
        "epochs_done": final.get("epoch", 0),
        "final_train_elbo": final.get("train_elbo"),
        "final_test_elbo": final.get("test_elbo"),
        "best_test_elbo": max((r["test_elbo"] for r in history), default=None),
        "train_seconds": sum(r["seconds"] for r in history),
        "plots": {k: str(v.relative_to(run_dir)) for k, v in figures.items()},
    }
    previous = run_dir / "report.json"
    if previous.exists():  # keep an evaluation made before a resumed run ended
        evaluation = json.loads(previous.read_text(encoding="utf-8")).get("evaluation")
        # An evaluation of an earlier checkpoint no longer describes this model.
        if evaluation and evaluation.get("checkpoint_epoch") == report["epochs_done"]:
            report["evaluation"] = evaluation
    render_report(run_dir, report)
    return report


def render_report(run_dir: Path, report: dict) -> None:
    """Write ``report.json`` and ``report.md`` (atomically) from the report dict."""
    write_text_atomic(Path(run_dir) / "report.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(Path(run_dir) / "report.md", _markdown(report))


def _markdown(r: dict) -> str:
    if "config" not in r:  # a run stopped before its training report: evaluation only
        return "\n".join(["# Report", "", *_evaluation_markdown(r["evaluation"])]) + "\n"
    c = r["config"]
    options = "".join(f", {k} = {v:g}" for k, v in c.get("objective_options", {}).items())
    lines = [
        f"# Training report: {Path(r['model']).stem} / {Path(r['guide']).stem} on {r['data']}",
        "",
        r["model_description"],
        "",
        *markdown_table(
            ["setting", "value"],
            [
                ["objective", f"`{c['objective']}` ({c['num_particles']} particle(s){options})"],
                ["epochs", r["epochs_done"]],
                ["KL weight β", _kl_weight(c)],
                ["batch size, lr, eps", f"{c['batch_size']}, {c['lr']:g}, {c['eps']:g}"],
                [
                    "data",
                    f"{r['data']} ({r['num_train']} train / {r['num_test']} test, "
                    f"binarization {c['binarization']})",
                ],
                ["parameters", f"{r['num_parameters']:,}"],
                ["seed", c["seed"]],
            ],
        ),
        "",
        *markdown_table(
            ["result (nats per datapoint)", "value"],
            [
                ["final train ELBO", fmt(r["final_train_elbo"])],
                ["final test ELBO", fmt(r["final_test_elbo"])],
                ["best test ELBO", fmt(r["best_test_elbo"])],
                ["training time", f"{r['train_seconds']:.1f} s"],
            ],
        ),
        "",
    ]
    lines += [f"![{name}]({path})" for name, path in r["plots"].items()]
    if "evaluation" in r:
        lines += ["", *_evaluation_markdown(r["evaluation"])]
    return "\n".join(lines) + "\n"


def _kl_weight(config: dict) -> str:
    """β, with its warm-up; runs written before β existed trained the ELBO (β = 1)."""
    beta, warmup = config.get("kl_weight", 1.0), config.get("kl_warmup", 0)
    text = f"{beta:g}" + (" (the ELBO)" if beta == 1 and not warmup else "")
    return text + (f", ramped from 0 over {warmup} epoch(s)" if warmup else "")


def _evaluation_markdown(e: dict) -> list[str]:
    def row(label, stats):
        return [label, *(fmt(stats[k], ".3f") for k in ("mean", "mc_stderr", "datapoint_stderr"))]

    lines = [
        f"## Evaluation on the {e['split']} set ({e['num_data']} datapoints)",
        "",
        f"log p̂(x) by importance sampling with K = {e['num_samples']} samples from the guide; "
        f"ELBO with {e['elbo_samples']} samples (`{e['elbo_estimator']}`). The gap "
        "log p̂(x) − ELBO estimates KL(q(z|x) ‖ p(z|x)).",
        "",
        *markdown_table(
            ["nats per datapoint", "mean", "Monte Carlo stderr", "stderr over datapoints"],
            [row("log p̂(x)", e["log_px"]), row("ELBO", e["elbo"]), row("gap", e["gap"])],
        ),
        "",
        f"Median effective sample size {e['ess_median']:.1f} of {e['num_samples']}; median "
        f"Pareto k̂ {fmt(e['khat_median'], '.3f')}"
        f"; {e['khat_above_0.7']} datapoints with k̂ > 0.7 (estimate unreliable there), "
        f"{e.get('khat_undefined', 0)} where k̂ is undefined (too few distinct weights). "
        f"{e['seconds']:.1f} s, peak memory {e['peak_rss_mb']:.0f} MB.",
        "",
        *markdown_table(
            ["K", "log p̂(x)", "Monte Carlo stderr"],
            [
                [c["num_samples"], fmt(c["log_px"], ".3f"), fmt(c["mc_stderr"], ".3f")]
                for c in e["log_px_by_num_samples"]
            ],
        ),
        "",
    ]
    return lines + [f"![{name}]({path})" for name, path in e["plots"].items()]

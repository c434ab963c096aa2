"""Training reports: ``report.json`` (numbers), ``report.md`` (for people), ``plots/*.png``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from . import plots


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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
        "config": dataclasses.asdict(config),
        "num_parameters": sum(p.numel() for p in vae.parameters()),
        "epochs_done": final.get("epoch", 0),
        "final_train_elbo": final.get("train_elbo"),
        "final_test_elbo": final.get("test_elbo"),
        "best_test_elbo": max((r["test_elbo"] for r in history), default=None),
        "train_seconds": sum(r["seconds"] for r in history),
        "plots": {k: str(v.relative_to(run_dir)) for k, v in figures.items()},
    }
    _write(run_dir / "report.json", json.dumps(report, indent=2) + "\n")
    _write(run_dir / "report.md", _markdown(report))
    return report


def _markdown(r: dict) -> str:
    c = r["config"]
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        f"# Training report: {Path(r['model']).stem} / {Path(r['guide']).stem} on {r['data']}",
        "",
        r["model_description"],
        "",
        "| setting | value |",
        "|---|---|",
        f"| objective | `{c['objective']}` ({c['num_particles']} particle(s)) |",
        f"| epochs | {r['epochs_done']} |",
        f"| batch size, lr, eps | {c['batch_size']}, {c['lr']:g}, {c['eps']:g} |",
        f"| data | {r['data']} ({r['num_train']} train / {r['num_test']} test, "
        f"binarization {c['binarization']}) |",
        f"| parameters | {r['num_parameters']:,} |",
        f"| seed | {c['seed']} |",
        "",
        "| result (nats per datapoint) | value |",
        "|---|---|",
        f"| final train ELBO | {fmt(r['final_train_elbo'])} |",
        f"| final test ELBO | {fmt(r['final_test_elbo'])} |",
        f"| best test ELBO | {fmt(r['best_test_elbo'])} |",
        f"| training time | {r['train_seconds']:.1f} s |",
        "",
    ]
    lines += [f"![{name}]({path})" for name, path in r["plots"].items()]
    return "\n".join(lines) + "\n"

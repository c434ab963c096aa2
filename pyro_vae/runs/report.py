"""Training reports: ``report.json`` (numbers), ``report.md`` (for people), ``plots/*.png``.

``report.json`` is read back by later steps (an evaluation adds its section, a resumed run
keeps an evaluation of its checkpoint): :func:`read_report` refuses one that is damaged with a
:class:`~pyro_vae.errors.CheckpointError` naming it, before anything is replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..devices import fork_rng, module_device
from ..errors import CheckpointError
from ..objectives.registry import setting_text
from ..results.evaluation import EvaluationReport, headline, section
from ..results.schema import from_json
from ..results.tables import fmt, markdown_table
from . import plots
from .conditional import class_grid, completion_grid
from .files import exists, read_json, write_text_atomic
from .selection import best_epoch, stopped_early

REPORT = "report.json"


def write_training_report(run_dir: Path, vae, dataset, config, history: list[dict]) -> dict:
    """Plots and reports of a finished run; returns the report as a dict."""
    run_dir = Path(run_dir)
    model, guide = _spec_origins(run_dir, vae)
    title = f"{Path(model).stem} / {Path(guide).stem} on {dataset.name}"
    figures = {"elbo": plots.elbo_curves(history, run_dir / "plots" / "elbo.png", title)}
    device = module_device(vae)
    with fork_rng(device):  # report sampling must not change a resumed run
        torch.manual_seed(config.seed)
        figures.update(_sample_figures(run_dir, vae, dataset, title))
    final = history[-1] if history else {}
    report = {
        "model": model,
        "model_description": vae.model_spec.description,
        "guide": guide,
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
    best = best_epoch(history)
    if best is not None:
        report["best_epoch"] = best
        report["best_valid_elbo"] = next(r["valid_elbo"] for r in history if r["epoch"] == best)
    stopped = stopped_early(history, config.early_stop)
    if stopped is not None:
        report["stopped_early"] = stopped
    # Keep an evaluation made before a resumed run ended; an evaluation of an earlier
    # checkpoint no longer describes this model. The training report replaces report.json as
    # a whole, so one that cannot be read has no evaluation to keep.
    evaluation = _previous_evaluation(run_dir)
    if evaluation and _describes(evaluation, report):
        report["evaluation"] = evaluation
    render_report(run_dir, report)
    return report


def _spec_origins(run_dir: Path, vae) -> tuple[str, str]:
    """The spec files the run was made from, as ``config.json`` records them (a resumed run is
    rebuilt from its own copies, ``model.toml`` and ``guide.toml``, which say nothing)."""
    try:
        meta = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        return str(meta["model_spec"]), str(meta["guide_spec"])
    except (OSError, ValueError, KeyError, TypeError):
        return vae.model_spec.path, vae.guide_spec.path


def _describes(evaluation: dict, report: dict) -> bool:
    """Whether the weights ``evaluation`` scored are still the run's checkpoint it names."""
    which = "best_epoch" if evaluation.get("checkpoint") == "best" else "epochs_done"
    return evaluation.get("checkpoint_epoch") == report.get(which)


def _previous_evaluation(run_dir: Path) -> dict | None:
    """The evaluation section of the run's current ``report.json`` if it is readable and
    renders; None otherwise."""
    try:
        evaluation = read_report(run_dir).get("evaluation")
    except CheckpointError:
        return None
    return evaluation if evaluation and _renders({"evaluation": evaluation}) is None else None


def read_report(run_dir: str | Path) -> dict:
    """The run's ``report.json`` ({} when it has none), checked: a JSON object whose training
    part (everything but the ``evaluation`` section, which an evaluation replaces) renders
    as ``report.md``.

    :raises CheckpointError: naming the file when it cannot be read, is not JSON, not an
        object, or lacks a key the report needs.
    """
    path = Path(run_dir) / REPORT
    advice = "delete it to have a new one written"
    if not exists(path):
        return {}
    try:
        report = read_json(path)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; {advice}") from None
    if not isinstance(report, dict):
        problem = f"a JSON {type(report).__name__}, not an object"
    else:
        problem = _renders({k: v for k, v in report.items() if k != "evaluation"})
    if problem:
        raise CheckpointError(f"{path}: damaged report ({problem}); {advice}")
    return report


def _renders(report: dict) -> str | None:
    """None if ``report`` renders as Markdown; else what is wrong with it."""
    try:
        _markdown(report)
    except KeyError as e:
        return f"no key {e}"
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        return str(e)
    return None


def render_report(run_dir: Path, report: dict) -> None:
    """Write ``report.json`` and ``report.md`` (atomically) from the report dict; the
    Markdown is made first, so that a report that cannot be rendered replaces neither."""
    markdown = _markdown(report)
    write_text_atomic(Path(run_dir) / REPORT, json.dumps(report, indent=2) + "\n")
    write_text_atomic(Path(run_dir) / "report.md", markdown)


def _markdown(r: dict) -> str:
    evaluation = r.get("evaluation")
    evaluation = from_json(EvaluationReport, evaluation) if evaluation else None
    head = headline(evaluation) if evaluation else []
    if "config" not in r:  # a run stopped before its training report: evaluation only
        body = section(evaluation) if evaluation else []
        return "\n".join(["# Report", "", *head, *body]) + "\n"
    c = r["config"]
    options = "".join(
        f", {k} = {setting_text(v)}" for k, v in c.get("objective_options", {}).items()
    )
    lines = [
        f"# Training report: {Path(r['model']).stem} / {Path(r['guide']).stem} on {r['data']}",
        "",
        r["model_description"],
        "",
        *head,
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
                *_recipe_rows(c),
            ],
        ),
        "",
        *markdown_table(
            ["result (nats per datapoint)", "value"],
            [
                ["final train ELBO", fmt(r["final_train_elbo"])],
                ["final test ELBO", fmt(r["final_test_elbo"])],
                ["best test ELBO", fmt(r["best_test_elbo"])],
                *_selection_rows(r),
                ["training time", f"{r['train_seconds']:.1f} s"],
            ],
        ),
        "",
    ]
    lines += [f"![{name}]({path})" for name, path in r["plots"].items()]
    if evaluation:
        lines += ["", *section(evaluation)]
    return "\n".join(lines) + "\n"


def _recipe_rows(c: dict) -> list[list]:
    """The settings of the recipe beyond the basics, where the run has them."""
    rows = []
    if c.get("lr_schedule"):
        rows.append(["learning-rate schedule", f"`{c['lr_schedule']}`"])
    if c.get("free_bits"):
        rows.append(["free bits", f"{c['free_bits']:g} nats per {c.get('free_bits_per', 'site')}"])
    if c.get("validation") is not None:
        held = c["validation"]
        split = "the data set's own" if held == "own" else f"{held} train rows held out"
        rows.append(["validation split", split])
    if c.get("early_stop"):
        rows.append(["early stopping", f"after {c['early_stop']} epochs without a new best"])
    return rows


def _selection_rows(r: dict) -> list[list]:
    """The best epoch by the validation ELBO and where training stopped early, if it did."""
    rows = []
    if "best_epoch" in r:
        best = f"{fmt(r['best_valid_elbo'])} (epoch {r['best_epoch']}: best.safetensors)"
        rows.append(["best validation ELBO", best])
    if "stopped_early" in r:
        rows.append(["stopped early", f"after epoch {r['stopped_early']}"])
    return rows


def _kl_weight(config: dict) -> str:
    """β, with its warm-up; runs written before β existed trained the ELBO (β = 1)."""
    beta, warmup = config.get("kl_weight", 1.0), config.get("kl_warmup", 0)
    text = f"{beta:g}" + (" (the ELBO)" if beta == 1 and not warmup else "")
    return text + (f", ramped from 0 over {warmup} epoch(s)" if warmup else "")


def _sample_figures(run_dir: Path, vae, dataset, title: str) -> dict[str, Path]:
    """The figures of a model's draws: completions of test inputs for a model with inputs;
    else, for images, samples, reconstructions and draws per value of each partially observed
    node, and for vectors the data against samples."""
    plots_dir, device = run_dir / "plots", module_device(vae)
    if vae.model_spec.inputs:
        if not dataset.parts:
            return {}
        return {"completions": completion_grid(vae, dataset, plots_dir / "completions.png")}
    if dataset.is_sequence:
        return _sequence_figures(plots_dir, vae, dataset)
    if dataset.image_shape is None:
        drawn = vae.sample(len(dataset.test), mean=False).cpu()
        path = plots_dir / "data_vs_model.png"
        return {"data_vs_model": plots.data_vs_model(dataset.test, drawn, path, title)}
    originals = dataset.test[:16]
    figures = {
        "samples": plots.image_grid(
            vae.sample(64).cpu(),
            dataset.image_shape,
            plots_dir / "samples.png",
            "samples (mean of p(x | z), z ~ p(z))",
        ),
        "reconstructions": plots.image_grid(
            torch.cat([originals, vae.reconstruct(originals.to(device)).cpu()]),
            dataset.image_shape,
            plots_dir / "reconstructions.png",
            "test images (top) and reconstructions (bottom)",
            columns=16,
        ),
    }
    for node in vae.model_spec.partial:
        path = plots_dir / f"samples_by_{node}.png"
        figures[f"samples_by_{node}"] = class_grid(vae, dataset.image_shape, path, node)
    return figures


def _sequence_figures(plots_dir: Path, vae, dataset) -> dict[str, Path]:
    """Sequences drawn from the model beside the data's: as images of T rows of D values where
    the values are binary (mnist-rows: digits again), else each dimension against t."""
    device = module_device(vae)
    originals = dataset.test[:16]
    lengths = dataset.array("lengths", "test")[:16]
    if vae.likelihood.family.support != "binary":
        drawn = vae.sample(4, mean=False).cpu()
        path = plots_dir / "sequences.png"
        return {"sequences": plots.sequence_lines(originals[:4], lengths[:4], drawn, path)}
    shape = (1, *dataset.event_shape)
    rebuilt = vae.reconstruct(originals.to(device), lengths.to(device)).cpu()
    return {
        "samples": plots.image_grid(vae.sample(64).cpu(), shape, plots_dir / "samples.png",
                                    "sequences drawn (mean of p(x_t | z_t)), one row per step"),
        "reconstructions": plots.image_grid(torch.cat([originals, rebuilt]), shape,
                                            plots_dir / "reconstructions.png",
                                            "test sequences (top) and reconstructions (bottom)",
                                            columns=16),
    }  # fmt: skip

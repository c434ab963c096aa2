"""``pyro-vae compare``: estimator comparisons written as reports.

:func:`compare_run` compares estimators at the parameters of a trained run (or of a freshly
initialized spec) on the first test datapoints; :func:`compare_training` trains the same spec
with each objective for the same budget and seed and evaluates every run the same way. Both
write ``comparison.json``, ``comparison.md`` and PNG plots into their output directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..data import load_dataset
from ..devices import module_device
from ..errors import PyroVaeError
from ..inference.stats import sample_stderr
from ..model.latent_model import load
from ..objectives.comparison import DEFAULT_ESTIMATORS, compare_estimators
from ..objectives.registry import ObjectiveChoice, default_objective
from ..tables import fmt, markdown_table
from . import plots
from .config import TrainConfig, prepare_data
from .evaluate import _json_safe, evaluate_run
from .files import check_writable, write_text_atomic
from .run_dir import CHECKPOINT, CONFIG, RunDir, load_run
from .training import resume, train


def compare_run(
    source: str | Path,
    *,
    guide: str | Path | None = None,
    data: str | None = None,
    out: str | Path | None = None,
    estimators=DEFAULT_ESTIMATORS,
    repeats: int = 100,
    num_data: int = 100,
    reference_samples: int = 5000,
    seed: int = 0,
    progress: bool | None = None,
    data_options: dict | None = None,
    device=None,
) -> dict:
    """Compare estimators on a run directory's model, or on a model spec at initialization.

    :param source: a run directory (with ``config.json``) or a model spec / bundled name.
    :param out: where to write (default: ``<run>/compare``; required for a spec).
    """
    run = Path(source)  # ``source`` itself stays a str: a bare name is a bundled spec
    if (run / CONFIG).exists():
        vae, config = load_run(run, device=device)
        origin = f"run {run}"
        out = Path(out) if out else run / "compare"
    else:
        if out is None:
            raise PyroVaeError(f"{source}: not a run directory; give --out to compare a spec")
        config = TrainConfig(data=data or "digits", seed=seed, data_options=data_options or {})
        natural = load_dataset(config.data, seed=seed, **config.data_options)
        shape = natural.image_shape or tuple(natural.event_shape)
        vae = load(source, guide, data_shape=shape, seed=seed, device=device)
        origin = f"spec {vae.model_spec.path} / {vae.guide_spec.path} at initialization"
        out = Path(out)
    if num_data < 1:
        raise PyroVaeError(f"num_data must be >= 1, got {num_data}")
    check_writable(out)  # before the comparison's minutes of work, not after
    dataset = prepare_data(vae, config)
    vae.eval()
    x = dataset.test[dataset.test_indices(num_data, seed=seed)].to(module_device(vae))
    comparison = compare_estimators(
        vae.model,
        vae.guide,
        x,
        estimators=estimators,
        repeats=repeats,
        reference_samples=reference_samples,
        seed=seed,
        progress=progress,
    )
    summary = _json_safe(
        {"source": origin, "data": dataset.name, "seed": seed, **comparison.summary()}
    )
    rows = [r for r in summary["estimators"] if not r.get("skipped")]
    summary["plots"] = {
        "snr_vs_k": str(plots.snr_vs_k(rows, out / "plots" / "snr_vs_k.png").relative_to(out)),
        "values": str(
            plots.estimator_values(
                rows,
                summary["reference"],
                out / "plots" / "estimator_values.png",
                f"log p̂(x) ({summary['reference_kind']})",
            ).relative_to(out)
        ),
    }
    write_text_atomic(out / "comparison.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "comparison.md", estimators_markdown(summary))
    summary["out"] = str(out)
    return summary


def estimators_markdown(s: dict) -> str:
    ref = (
        "no reference"
        if s["reference"] is None
        else f"reference log p̂(x) = {s['reference']:.3f} ± {s['reference_stderr']:.3f} "
        f"({s['reference_kind']})"
    )
    unreliable = s.get("reference_khat_above_0.7")
    if unreliable:
        ref += (
            f"; Pareto k̂ > 0.7 for {unreliable} of {s['num_data']} datapoints, so the reference "
            "(and its stderr) is not reliable there: log p(x) is likely higher and the biases "
            "of the tighter bounds are understated"
        )
    lines = [
        "# Estimator comparison",
        "",
        f"{s['source']}; {s['num_data']} {s['data']} test datapoints, {s['repeats']} "
        f"repetitions per estimator, seed {s['seed']}; {ref}.",
        "",
        "Values are per datapoint (nats); std is over repetitions; gradient variance is the mean "
        "per-coordinate variance of the per-datapoint gradient; SNR is the mean over coordinates "
        f"of |mean| / std (below about {1 / s['repeats'] ** 0.5:.2f} it cannot be told from 0).",
        "",
    ]
    header = ["estimator", "value", "std", "bias", "guide grad var", "guide SNR"]
    header += ["model grad var", "model SNR", "ms / step"]
    rows = []
    for r in s["estimators"]:
        if r.get("skipped"):
            rows.append([r["estimator"], f"skipped: {r['skipped']}", *[""] * 7])
            continue
        g, m = r["gradients"].get("guide", {}), r["gradients"].get("model", {})
        bias = fmt(r["bias"], ".3f")
        if r["bias"] is not None:
            bias += f" ± {fmt(r['bias_stderr'], '.3f')}"
        rows.append(
            [
                r["estimator"],
                fmt(r["value"], ".3f"),
                fmt(r["value_std"], ".3f"),
                bias,
                fmt(g.get("variance"), ".2e"),
                fmt(g.get("snr")),
                fmt(m.get("variance"), ".2e"),
                fmt(m.get("snr")),
                fmt(r["ms_per_step"], ".1f"),
            ]
        )
    lines += [*markdown_table(header, rows), ""]
    lines += [f"![{name}]({path})" for name, path in s["plots"].items()]
    return "\n".join(lines) + "\n"


def _run_name(choice: ObjectiveChoice) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", choice.label).strip("_")


def compare_training(
    model: str | Path,
    *,
    out: str | Path,
    guide: str | Path | None = None,
    data: str = "digits",
    objectives=None,
    num_samples: int = 1000,
    max_data: int | None = None,
    progress: bool | None = None,
    data_options: dict | None = None,
    device=None,
    **settings,
) -> dict:
    """Train ``model`` once per objective (same seed, epochs and batches), then evaluate each run
    with the same ``log_likelihood`` (``num_samples``) and ELBO on the same test datapoints.

    Each run is a normal run directory ``<out>/<objective>``; an existing one is resumed, so an
    interrupted comparison picks up where it stopped.
    """
    out = check_writable(out)  # the runs and the table go here: refused before training
    seed = settings.get("seed", 0)
    dataset = load_dataset(data, **(data_options or {}))
    shape = dataset.image_shape or tuple(dataset.event_shape)
    vae = load(model, guide, data_shape=shape, seed=seed)
    if objectives is None:
        objectives = [default_objective(vae), "iwae:k=5", "iwae:k=50"]
    choices = [ObjectiveChoice.of(o) for o in objectives]
    for choice in choices:  # refuse a mismatched objective before training anything
        choice.build(vae)
    names = [_run_name(c) for c in choices]
    if len(set(names)) != len(names):
        raise PyroVaeError(f"objectives repeat: {[c.label for c in choices]}")
    runs = {}
    for choice, name in zip(choices, names, strict=True):
        run_dir = out / name
        if (run_dir / CHECKPOINT).exists():
            if RunDir(run_dir).read_config()[0].objective != choice:
                raise PyroVaeError(f"{run_dir}: holds a run of another objective; choose --out")
            result = resume(
                run_dir, epochs=settings.get("epochs"), progress=progress, device=device
            )
        else:
            fresh = load(model, guide, data_shape=shape, seed=seed)
            result = train(
                fresh,
                data,
                out=run_dir,
                progress=progress,
                data_options=data_options or {},
                objective=choice,
                device=device,
                **settings,
            )
        evaluation = evaluate_run(
            run_dir,
            num_samples=num_samples,
            max_data=max_data,
            seed=seed,
            progress=progress,
            device=device,
        )
        runs[choice.label] = {
            "run": str(run_dir),
            "history": result.history,
            "train_seconds": sum(r["seconds"] for r in result.history),
            "final_test_elbo": result.final["test_elbo"],
            "evaluation": {
                k: evaluation[k]
                for k in ("num_data", "num_samples", "log_px", "elbo", "gap", "khat_above_0.7")
            },
        }
    _paired_differences(runs)
    histories = {label: r.pop("history") for label, r in runs.items()}
    summary = _json_safe(
        {
            "model": str(vae.model_spec.path),
            "guide": str(vae.guide_spec.path),
            "data": data,
            "settings": settings,
            "num_samples": num_samples,
            "runs": runs,
        }
    )
    summary["plots"] = {
        "learning_curves": str(
            plots.learning_curves(histories, out / "plots" / "learning_curves.png").relative_to(out)
        )
    }
    write_text_atomic(out / "comparison.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "comparison.md", training_markdown(summary))
    summary["out"] = str(out)
    return summary


def _paired_differences(runs: dict) -> None:
    """Each run's log p̂(x) and ELBO minus the first run's, datapoint by datapoint, with the
    standard error over datapoints: the runs saw the same test points, so the pairing removes
    the spread between easy and hard datapoints from the comparison."""
    arrays = {
        label: np.load(Path(r["run"]) / "evaluation.npz", allow_pickle=False)
        for label, r in runs.items()
    }
    first = next(iter(arrays.values()))
    for label, r in runs.items():
        r["vs_first"] = {}
        for key in ("log_px", "elbo"):
            diff = arrays[label][key] - first[key]
            r["vs_first"][key] = {"mean": float(diff.mean()), "stderr": sample_stderr(diff)}


def training_markdown(s: dict) -> str:
    first = next(iter(s["runs"].values()))["evaluation"]
    lines = [
        "# Training comparison",
        "",
        f"`{Path(s['model']).stem}` / `{Path(s['guide']).stem}` on {s['data']}, settings "
        f"{json.dumps(s['settings'])}; each run evaluated on {first['num_data']} test "
        f"datapoints with log p̂(x) from K = {s['num_samples']} importance samples and the ELBO.",
        "",
    ]
    first = next(iter(s["runs"]))
    rows = []
    for label, r in s["runs"].items():
        e, d = r["evaluation"], r["vs_first"]
        delta = {
            k: fmt(None) if label == first else f"{d[k]['mean']:+.2f} ± {fmt(d[k]['stderr'])}"
            for k in ("elbo", "log_px")
        }
        rows.append(
            [
                label,
                f"{r['train_seconds']:.0f}",
                f"{fmt(e['elbo']['mean'])} ± {fmt(e['elbo']['mc_stderr'])}",
                f"{fmt(e['log_px']['mean'])} ± {fmt(e['log_px']['mc_stderr'])}",
                fmt(e["gap"]["mean"]),
                delta["elbo"],
                delta["log_px"],
                f"{e['khat_above_0.7']} of {e['num_data']}",
            ]
        )
    header = ["objective", "train time (s)", "ELBO", "log p̂(x)", "gap", "Δ ELBO"]
    lines += markdown_table([*header, "Δ log p̂(x)", "k̂ > 0.7"], rows)
    lines += [
        "",
        "ELBO and log p̂(x) ± their Monte Carlo standard error; Δ: the difference from the first "
        f"row ({first}), datapoint by datapoint, ± its standard error over datapoints (every run "
        "saw the same test datapoints, so the differences are paired). k̂ > 0.7: datapoints "
        "where the importance-sampled log p̂(x) is unreliable (likely too low).",
        "",
        *[f"![{name}]({path})" for name, path in s["plots"].items()],
    ]
    return "\n".join(lines) + "\n"

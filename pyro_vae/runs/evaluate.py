"""Evaluate a trained run: importance-sampled log p̂(x), the ELBO and their gap on the test set.

Writes into the run directory ``evaluation.npz`` (per-datapoint arrays, plain NumPy),
``plots/log_px_vs_k.png``, ``plots/gap_hist.png``, ``plots/khat_hist.png``, and adds an
``evaluation`` section to ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from ..inference.elbo import elbo
from ..inference.log_likelihood import log_likelihood
from ..inference.stats import khat_counts, mean_stderr, sample_stderr
from ..objectives.registry import default_objective
from . import plots
from .config import prepare_data
from .files import atomic_path
from .report import render_report
from .run_dir import checkpoint_epoch, load_run


def _json_safe(value):
    """NaN and infinities become None: JSON has no spelling for them."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _curve_points(num_samples: int) -> list[int]:
    """1, 10, 100, ... below K: where to read log p̂ from the first K samples."""
    points, k = [], 1
    while k < num_samples:
        points.append(k)
        k *= 10
    return points


def evaluate_run(
    run_dir: str | Path,
    *,
    num_samples: int = 1000,
    elbo_samples: int = 100,
    max_data: int | None = None,
    batch_size: int = 100,
    seed: int = 0,
    progress: bool | None = None,
) -> dict:
    """Estimate log p(x), the ELBO and the gap for each test datapoint of a run; returns the
    summary that is also written to ``report.json``."""
    run_dir = Path(run_dir)
    vae, config = load_run(run_dir)
    vae.eval()
    dataset = prepare_data(vae, config)
    x = dataset.test if max_data is None else dataset.test[:max_data]
    estimator = "trace_mean_field" if default_objective(vae) == "trace_mean_field" else "trace"
    record_at = _curve_points(num_samples)
    pyro.set_rng_seed(seed)

    columns = {k: [] for k in ("log_px", "stderr", "ess", "khat", "elbo", "elbo_stderr")}
    curve = {k: ([], []) for k in [*record_at, num_samples]}
    if not record_at:  # K = 1: the curve is the single estimate
        record_at = [num_samples]
    began = time.perf_counter()
    with tqdm(
        total=len(x),
        disable=None if progress is None else not progress,
        desc=f"log p(x), K={num_samples}",
        unit="datapoint",
        leave=False,
    ) as bar:
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            ll = log_likelihood(
                vae.model, vae.guide, batch, num_samples=num_samples, record_at=record_at
            )
            bound = elbo(vae.model, vae.guide, batch, num_samples=elbo_samples, objective=estimator)
            for name, value in (
                ("log_px", ll.log_px),
                ("stderr", ll.stderr),
                ("ess", ll.ess),
                ("khat", ll.khat),
                ("elbo", bound.elbo),
                ("elbo_stderr", bound.stderr),
            ):
                columns[name].append(value)
            for k, (values, errors) in (ll.by_num_samples or {}).items():
                curve[k][0].append(values)
                curve[k][1].append(errors)
            bar.update(len(batch))
    seconds = time.perf_counter() - began
    arrays = {k: torch.cat(v).numpy() for k, v in columns.items()}
    arrays["gap"] = arrays["log_px"] - arrays["elbo"]
    arrays["gap_stderr"] = np.hypot(arrays["stderr"], arrays["elbo_stderr"])
    n = len(x)

    def mean_and_errors(values, mc_errors):
        return {
            "mean": float(values.mean()),
            "mc_stderr": mean_stderr(mc_errors),
            "datapoint_stderr": sample_stderr(values),
        }

    curve_summary = []
    for k, (values, errors) in curve.items():
        error = mean_stderr(torch.cat(errors)) if k > 1 else None  # undefined for K = 1
        log_px = torch.cat(values).mean().item()
        curve_summary.append({"num_samples": k, "log_px": log_px, "mc_stderr": error})
    summary = {
        "data": config.data,
        "split": "test",
        "num_data": n,
        "num_samples": num_samples,
        "elbo_samples": elbo_samples,
        "elbo_estimator": estimator,
        "log_px": mean_and_errors(arrays["log_px"], arrays["stderr"]),
        "elbo": mean_and_errors(arrays["elbo"], arrays["elbo_stderr"]),
        "gap": mean_and_errors(arrays["gap"], arrays["gap_stderr"]),
        "ess_median": float(np.median(arrays["ess"])),
        **khat_counts(arrays["khat"]),
        "log_px_by_num_samples": curve_summary,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seed": seed,
        "checkpoint_epoch": checkpoint_epoch(run_dir),
    }
    summary = _json_safe(summary)

    with atomic_path(run_dir / "evaluation.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    plot_dir = run_dir / "plots"
    summary["plots"] = {
        "log_px_vs_k": str(
            plots.log_px_vs_k(
                curve_summary, summary["elbo"]["mean"], plot_dir / "log_px_vs_k.png"
            ).relative_to(run_dir)
        ),
        "gap_hist": str(
            plots.histogram(
                arrays["gap"], plot_dir / "gap_hist.png", "log p̂(x) − ELBO per datapoint (nats)"
            ).relative_to(run_dir)
        ),
        "khat_hist": str(
            plots.histogram(
                arrays["khat"],
                plot_dir / "khat_hist.png",
                "Pareto k̂ per datapoint",
                lines=(0.5, 0.7),
            ).relative_to(run_dir)
        ),
    }
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report["evaluation"] = summary
    render_report(run_dir, report)
    return summary

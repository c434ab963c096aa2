"""Evaluate a trained run on its test set: log p̂(x), the ELBO and their gap, and why the gap is
there.

Always: importance-sampled log p̂(x) (from the guide, or with ``proposal="prior"`` the naive
Monte Carlo estimate) with its standard error, ESS and Pareto k̂, and the ELBO, per datapoint.
On request: ``ais`` (annealed importance sampling, :mod:`pyro_vae.inference.ais`),
``decompose`` (the gap split into approximation and amortization gaps,
:mod:`pyro_vae.inference.gap`), ``surgery`` (average KL = mutual information + marginal KL,
KL per latent dimension, active units: :mod:`pyro_vae.inference.surgery`).

With ``max_data`` it scores a seeded random subset of the test rows
(:meth:`~pyro_vae.data.Dataset.test_indices`), never the first rows, since test splits are often
ordered by class; ``test_index`` in the arrays says which rows.

Writes into the run directory ``evaluation.npz`` (per-datapoint arrays, plain NumPy),
``evaluation.nc`` (the same as an ``arviz.InferenceData``: log p̂ in its ``log_likelihood``
group), plots under ``plots/``, and an ``evaluation`` section in ``report.json`` and
``report.md``. A damaged ``report.json`` or an output folder that cannot be written is refused
before any work; a write that fails (a full disk) leaves the file it would have replaced as it
was (:mod:`pyro_vae.runs.files`).

Datapoints whose estimates are not finite (a log-density that is NaN there), or whose log
weights are so large that their dtype rounds them to steps coarser than 0.1 nat
(:func:`~pyro_vae.inference.weights.precision_lost`), are counted, named in the report, and left
out of every mean; the plots draw what is left.
"""

from __future__ import annotations

import resource
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from ..devices import module_device
from ..inference.elbo import elbo
from ..inference.gap import refined_elbo
from ..inference.log_likelihood import log_likelihood
from ..inference.precision import check_precision
from ..inference.stats import count_non_finite, khat_counts, mean_stderr, sample_stderr
from ..inference.streams import datapoint_seeds
from ..inference.surgery import ACTIVE_THRESHOLD, elbo_surgery, latent_usage
from ..inference.weights import (
    PRECISION_TOLERANCE,
    float_spacing,
    largest_abs_log_weight,
    precision_lost,
)
from ..objectives.registry import ObjectiveChoice, default_objective
from . import plots
from .config import prepare_data
from .distributed import gather, on_main, shard, world
from .files import atomic_path, check_writable
from .memory import check_rows_memory
from .report import health_notes, read_report, render_report
from .run_dir import checkpoint_epoch, load_run, one_writer


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


def _stats(values: np.ndarray, mc_errors: np.ndarray, keep: np.ndarray) -> dict:
    """Mean, Monte Carlo and over-datapoints standard errors of ``values`` where ``keep``;
    None for each where nothing is kept."""
    values, mc_errors = values[keep], mc_errors[keep]
    if not len(values):
        return {"mean": None, "mc_stderr": None, "datapoint_stderr": None}
    return {
        "mean": float(values.mean()),
        "mc_stderr": mean_stderr(mc_errors),
        "datapoint_stderr": sample_stderr(values),
    }


def _median(values: np.ndarray) -> float | None:
    """The median of the finite ``values``; None where there is none."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else None


def _batches(x: torch.Tensor, batch_size: int, progress, desc: str, ids=None):
    """``batch_size`` rows of ``x`` at a time, with a progress bar; with ``ids``, pairs of
    (rows, their ids)."""
    with tqdm(
        total=len(x),
        disable=None if progress is None else not progress,
        desc=desc,
        unit="datapoint",
        leave=False,
    ) as bar:
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            yield batch if ids is None else (batch, ids[start : start + batch_size])
            bar.update(len(batch))


@one_writer
def evaluate_run(
    run_dir: str | Path,
    *,
    num_samples: int = 1000,
    elbo_samples: int = 100,
    max_data: int | None = None,
    batch_size: int = 100,
    seed: int = 0,
    progress: bool | None = None,
    proposal: str = "guide",
    ais: bool = False,
    ais_samples: int = 16,
    ais_steps: int = 500,
    decompose: bool = False,
    surgery: bool = False,
    precision: str = "fp32",
    device=None,
) -> dict:
    """Evaluate each test datapoint of a run; returns the summary that is also written to
    ``report.json`` (see the module docstring for what each option adds)."""
    run_dir = Path(run_dir)
    check_precision(precision)
    # Refused before minutes of sampling, not after: a report.json that cannot be extended
    # and folders that cannot be written.
    report = on_main(lambda: _prepare_outputs(run_dir))
    vae, config = load_run(run_dir, device=device)
    vae.eval()
    dataset = prepare_data(vae, config)
    indices = dataset.test_indices(max_data, seed=seed)
    x = dataset.test[indices].to(module_device(vae))
    estimator = "trace_mean_field" if default_objective(vae) == "trace_mean_field" else "trace"
    pyro.set_rng_seed(seed)
    # Under torchrun each process takes a contiguous shard of the datapoints; rank 0 gathers.
    w = world()
    mine = indices[shard(len(indices), w)]
    x = dataset.test[mine].to(module_device(vae))
    if ais:  # AIS moves every chain of a batch at once, with gradients: checked before any work
        rows = ais_samples * min(batch_size, len(x))
        settings = f"--ais-samples {ais_samples} with --batch-size {batch_size}"
        check_rows_memory(vae, ObjectiveChoice("trace"), x, rows, module_device(vae), settings)
    began = time.perf_counter()
    sampling = _Sampling(
        num_samples, elbo_samples, estimator, proposal, batch_size, progress, seed, precision
    )
    columns, curve = _importance_sampling(vae, x, mine.tolist(), sampling)
    seconds = time.perf_counter() - began
    timings = {}
    if w.rank:  # AIS and refinement draw from the global stream: another one per process
        pyro.set_rng_seed(datapoint_seeds(seed, [w.rank])[0] % 2**32)
    if ais:
        began_ais = time.perf_counter()
        columns.update(_ais(vae, x, ais_samples, ais_steps, batch_size, progress))
        timings["ais"] = time.perf_counter() - began_ais
    steps = 0
    if decompose:
        began_refine = time.perf_counter()
        refined, steps = _decompose(vae, x, elbo_samples, batch_size, progress)
        columns.update(refined)
        timings["decomposition"] = time.perf_counter() - began_refine
    parts = gather((columns, curve, steps))
    if not w.is_main:
        return {}
    arrays = {"test_index": indices.numpy()}
    arrays.update({k: np.concatenate([p[0][k] for p in parts]) for k in columns})
    curve = {k: np.concatenate([p[1][k] for p in parts], axis=1) for k in curve}
    steps = max(p[2] for p in parts)
    arrays["gap"] = arrays["log_px"] - arrays["elbo"]
    arrays["gap_stderr"] = np.hypot(arrays["stderr"], arrays["elbo_stderr"])
    health = _health(arrays, _log_weight_dtype(vae))
    usable = _usable(arrays)
    summary = {}
    if ais:
        summary["ais"] = _ais_summary(arrays, usable, ais_samples, ais_steps, timings["ais"])
    if decompose:
        summary["decomposition"] = _decomposition_summary(
            arrays, usable, steps, timings["decomposition"]
        )
    if surgery:  # the aggregate posterior is over all datapoints: one process
        every = dataset.test[indices].to(module_device(vae))
        summary["surgery"], summary["latent_usage"] = _surgery(vae, every)

    summary = {
        "data": config.data,
        "split": "test",
        "num_data": len(indices),
        "num_test": len(dataset.test),
        "num_samples": num_samples,
        "proposal": proposal,
        "precision": precision,
        "processes": w.size,
        "elbo_samples": elbo_samples,
        "elbo_estimator": estimator,
        "num_used": int(usable.sum()),
        **health,
        "log_px": _stats(arrays["log_px"], arrays["stderr"], usable),
        "elbo": _stats(arrays["elbo"], arrays["elbo_stderr"], usable),
        "gap": _stats(arrays["gap"], arrays["gap_stderr"], usable),
        "ess_median": _median(arrays["ess"][usable]),
        **khat_counts(arrays["khat"][usable]),
        "log_px_by_num_samples": _curve(curve, usable),
        "seconds": seconds,
        **summary,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seed": seed,
        "checkpoint_epoch": checkpoint_epoch(run_dir),
    }
    summary = _json_safe(summary)
    with atomic_path(run_dir / "evaluation.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    with atomic_path(run_dir / "evaluation.nc") as tmp:
        inference_data(arrays).to_netcdf(str(tmp))
    summary["plots"], summary["plots_skipped"] = _plots(run_dir, summary, arrays, usable)
    summary["notes"] = health_notes(summary)
    report["evaluation"] = summary
    render_report(run_dir, report)
    return summary


def _prepare_outputs(run_dir: Path) -> dict:
    """The run's ``report.json`` (empty if none) once it and the folders the evaluation
    writes into are known to be usable; a :class:`~pyro_vae.errors.PyroVaeError` naming the
    file or folder otherwise."""
    report = read_report(run_dir)
    check_writable(run_dir)
    check_writable(run_dir / "plots")
    return report


def _log_weight_dtype(vae) -> torch.dtype:
    """The dtype the pair's log densities are summed in: its parameters' (float32, as a
    rule). Under ``precision="bf16"`` only the nets' products drop to bfloat16; a spec-built
    model's densities stay in float32 (:mod:`~pyro_vae.inference.precision`)."""
    dtypes = [p.dtype for p in vae.parameters() if p.is_floating_point()]
    return dtypes[0] if dtypes else torch.get_default_dtype()


#: The per-datapoint estimates whose non-finite values are counted, where they were computed.
ESTIMATES = ("log_px", "elbo", "gap", "ess", "khat", "ais_log_px", "elbo_refined")
#: Arrays in nats whose size tells how large the log weights behind them are.
LOG_DENSITIES = ("log_px", "elbo", "ais_log_px", "elbo_refined")


def _health(arrays: dict, dtype: torch.dtype) -> dict:
    """Counts of non-finite estimates and of datapoints whose log weights are too large for
    ``dtype``; adds the per-datapoint ``log_weight_magnitude`` and ``precision_lost`` arrays.

    k̂ is counted as non-finite only where the weights themselves are (log p̂ is not finite);
    elsewhere a non-finite k̂ means too few distinct weights (``khat_undefined``).
    """
    magnitude = np.fmax.reduce(
        [arrays["log_weight_magnitude"], *(np.abs(arrays[k]) for k in LOG_DENSITIES if k in arrays)]
    )
    arrays["log_weight_magnitude"] = magnitude
    lost = precision_lost(torch.from_numpy(magnitude), dtype).numpy()
    arrays["precision_lost"] = lost
    non_finite = {k: count_non_finite(arrays[k]) for k in ESTIMATES if k in arrays}
    non_finite["khat"] = int((~np.isfinite(arrays["khat"]) & ~np.isfinite(arrays["log_px"])).sum())
    worst = float(magnitude[lost].max()) if lost.any() else None
    return {
        "non_finite": non_finite,
        "precision_lost": {
            "num_data": int(lost.sum()),
            "dtype": str(dtype).removeprefix("torch."),
            "tolerance": PRECISION_TOLERANCE,
            "max_abs_log_weight": worst,
            "spacing": None if worst is None else float(float_spacing(worst, dtype)),
        },
    }


def _usable(arrays: dict) -> np.ndarray:
    """The datapoints every mean is over: finite log p̂ and ELBO, precision not lost."""
    return np.isfinite(arrays["log_px"]) & np.isfinite(arrays["elbo"]) & ~arrays["precision_lost"]


@dataclass(frozen=True)
class _Sampling:
    """How importance sampling and the ELBO are run on a run's test datapoints."""

    num_samples: int
    elbo_samples: int
    estimator: str  # the ELBO's: "trace" or "trace_mean_field"
    proposal: str
    batch_size: int
    progress: bool | None
    seed: int
    precision: str


def _importance_sampling(
    vae, x, ids, sampling: _Sampling
) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray]]:
    """log p̂(x) by importance sampling and the ELBO, per datapoint; and the curve of log p̂
    against K: for each K, a (2, N) array of the estimate from the first K samples and its
    standard error."""
    num_samples, seed, precision = sampling.num_samples, sampling.seed, sampling.precision
    record_at = _curve_points(num_samples)
    names = ("log_px", "stderr", "ess", "khat", "elbo", "elbo_stderr", "log_weight_magnitude")
    columns = {k: [] for k in names}
    curve = {k: [] for k in [*record_at, num_samples]}
    if not record_at:  # K = 1: the curve is the single estimate
        record_at = [num_samples]
    # Each datapoint draws from its own stream, seeded by (seed, its row in the test set): its
    # numbers do not depend on the batch size, on the subset or on how processes share it.
    batches = _batches(x, sampling.batch_size, sampling.progress, f"log p(x), K={num_samples}", ids)
    for batch, batch_ids in batches:
        streams = {"seed": seed, "datapoint_ids": batch_ids, "precision": precision}
        ll = log_likelihood(
            vae.model,
            vae.guide,
            batch,
            num_samples=num_samples,
            record_at=record_at,
            proposal=sampling.proposal,
            **streams,
        )
        bound = elbo(
            vae.model,
            vae.guide,
            batch,
            num_samples=sampling.elbo_samples,
            objective=sampling.estimator,
            seed=seed + 1,  # independent of the importance samples
            datapoint_ids=batch_ids,
            precision=precision,
        )
        for name, value in (
            ("log_px", ll.log_px),
            ("stderr", ll.stderr),
            ("ess", ll.ess),
            ("khat", ll.khat),
            ("elbo", bound.elbo),
            ("elbo_stderr", bound.stderr),
            ("log_weight_magnitude", largest_abs_log_weight(ll)),
        ):
            columns[name].append(value)
        for k, (values, errors) in (ll.by_num_samples or {}).items():
            curve[k].append(torch.stack([values, errors]))
    return (
        {k: _cat(v) for k, v in columns.items()},
        {k: _cat(v, axis=1, rows=2) for k, v in curve.items()},
    )


def _cat(parts: list[torch.Tensor], axis: int = 0, rows: int = 0) -> np.ndarray:
    """The parts as one float64 NumPy array (an empty one for a shard without datapoints)."""
    if not parts:
        return np.zeros((rows, 0) if rows else 0)
    joined = torch.cat(parts, dim=axis).cpu()
    return (joined if joined.dtype == torch.bool else joined.double()).numpy()


def _curve(curve: dict[int, np.ndarray], usable: np.ndarray) -> list[dict]:
    """Mean log p̂ from the first K samples, for each K, over the usable datapoints whose
    estimate at that K is finite (None where there is none)."""
    points = []
    for k, (values, errors) in curve.items():
        keep = usable & np.isfinite(values)
        mean, error = None, None
        if keep.any():
            mean = float(values[keep].mean())
            if k > 1:  # undefined for K = 1
                error = mean_stderr(torch.from_numpy(errors[keep]))
        points.append({"num_samples": k, "log_px": mean, "mc_stderr": error})
    return points


def _ais(vae, x, num_samples, num_steps, batch_size, progress) -> dict[str, np.ndarray]:
    columns = {"ais_log_px": [], "ais_stderr": [], "ais_acceptance": []}
    for batch in _batches(x, batch_size, progress, f"AIS, {num_samples} chains"):
        ll = log_likelihood(
            vae.model, vae.guide, batch, num_samples=num_samples, method="ais", num_steps=num_steps
        )
        columns["ais_log_px"].append(ll.log_px)
        columns["ais_stderr"].append(ll.stderr)
        columns["ais_acceptance"].append(ll.details["acceptance"].double())
    return {k: _cat(v) for k, v in columns.items()}


def _ais_summary(arrays, usable, num_samples, num_steps, seconds) -> dict:
    """AIS's log p̂ and its difference from importance sampling, over the usable datapoints
    where AIS is finite too."""
    keep = usable & np.isfinite(arrays["ais_log_px"])
    difference = (arrays["ais_log_px"] - arrays["log_px"])[keep]
    acceptance = arrays["ais_acceptance"][np.isfinite(arrays["ais_acceptance"])]
    return {
        "num_samples": num_samples,
        "num_steps": num_steps,
        "log_px": _stats(arrays["ais_log_px"], arrays["ais_stderr"], keep),
        "minus_is": {
            "mean": float(difference.mean()) if len(difference) else None,
            "stderr": sample_stderr(difference),
        },
        "acceptance_mean": float(acceptance.mean()) if len(acceptance) else None,
        "seconds": seconds,
    }


def _decompose(vae, x, elbo_samples, batch_size, progress) -> tuple[dict, int]:
    """The ELBO of q refined per datapoint, and the most refinement steps a batch took."""
    columns = {"elbo_refined": [], "elbo_refined_stderr": [], "refine_converged": []}
    steps = 0
    for batch in _batches(x, batch_size, progress, "refining q per datapoint"):
        with pyro.validation_enabled(False):
            refined, converged, taken = refined_elbo(
                vae.model, vae.guide, batch, num_samples=elbo_samples
            )
        columns["elbo_refined"].append(refined.elbo)
        columns["elbo_refined_stderr"].append(refined.stderr)
        columns["refine_converged"].append(converged)
        steps = max(steps, taken)
    return {k: _cat(v) for k, v in columns.items()}, steps


def _decomposition_summary(arrays, usable, steps: int, seconds: float) -> dict:
    """The two gaps per datapoint (into ``arrays``), against the best log p̂ measured (AIS
    where it ran, else importance sampling); means over the usable datapoints where both gaps
    are finite."""
    source = "ais" if "ais_log_px" in arrays else "is"
    log_px = arrays["ais_log_px"] if source == "ais" else arrays["log_px"]
    log_px_stderr = arrays["ais_stderr"] if source == "ais" else arrays["stderr"]
    arrays["approximation_gap"] = log_px - arrays["elbo_refined"]
    arrays["amortization_gap"] = arrays["elbo_refined"] - arrays["elbo"]
    keep = usable & np.isfinite(arrays["approximation_gap"]) & np.isfinite(arrays["elbo_refined"])
    return {
        "log_px_from": source,
        "elbo_refined": _stats(arrays["elbo_refined"], arrays["elbo_refined_stderr"], keep),
        "approximation_gap": _stats(
            arrays["approximation_gap"],
            np.hypot(log_px_stderr, arrays["elbo_refined_stderr"]),
            keep,
        ),
        "amortization_gap": _stats(
            arrays["amortization_gap"],
            np.hypot(arrays["elbo_refined_stderr"], arrays["elbo_stderr"]),
            keep,
        ),
        "converged": int(arrays["refine_converged"].sum()),
        "max_refine_steps": steps,
        "seconds": seconds,
    }


def _surgery(vae, x) -> tuple[dict, dict]:
    with pyro.validation_enabled(False):
        s = elbo_surgery(vae.model, vae.guide, x)
        usage = latent_usage(vae.model, vae.guide, x)
    return s.summary(), {
        "threshold": ACTIVE_THRESHOLD,
        "latents": usage.summary(),
        "notes": usage.notes,
    }


def inference_data(arrays: dict):
    """The per-datapoint results as an ``arviz.InferenceData``: log p̂(x) in the
    ``log_likelihood`` group (one chain, one draw, a ``datapoint`` dimension), everything else
    per datapoint in ``sample_stats``."""
    with warnings.catch_warnings():  # arviz announces its refactor on import
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    def one_draw(values):
        return np.asarray(values, dtype=np.float64)[None, None]

    stats = {k: one_draw(v) for k, v in arrays.items() if k not in ("log_px", "test_index")}
    dims = {k: ["datapoint"] for k in [*stats, "x"]}
    # The datapoint coordinate is the row's index in the test split, so subsets line up.
    index = arrays.get("test_index", np.arange(len(arrays["log_px"])))
    return arviz.from_dict(
        log_likelihood={"x": one_draw(arrays["log_px"])},
        sample_stats=stats,
        dims=dims,
        coords={"datapoint": np.asarray(index)},
    )


def _plots(run_dir: Path, summary: dict, arrays: dict, usable: np.ndarray) -> tuple[dict, dict]:
    """The evaluation's plots, of the usable datapoints: ``{name: path}`` of those drawn and
    ``{name: why}`` of those skipped because nothing in them could be drawn."""
    folder = run_dir / "plots"
    shown = {k: np.where(usable, v, np.nan) for k, v in arrays.items() if v.dtype.kind == "f"}
    figures = {
        "log_px_vs_k": lambda: plots.log_px_vs_k(
            summary["log_px_by_num_samples"], summary["elbo"]["mean"], folder / "log_px_vs_k.png"
        ),
        "gap_hist": lambda: plots.histogram(
            arrays["gap"],
            folder / "gap_hist.png",
            "log p̂(x) − ELBO per datapoint (nats)",
            keep=usable,
        ),
        "khat_hist": lambda: plots.histogram(
            arrays["khat"],
            folder / "khat_hist.png",
            "Pareto k̂ per datapoint",
            lines=(0.5, 0.7),
            keep=usable,
        ),
    }
    if "ais_log_px" in arrays:
        figures["is_vs_ais"] = lambda: plots.is_vs_ais(
            shown["log_px"], shown["ais_log_px"], arrays["khat"], folder / "is_vs_ais.png"
        )
    if "approximation_gap" in arrays:
        figures["gap_decomposition"] = lambda: plots.gap_decomposition(
            shown["approximation_gap"] + shown["amortization_gap"],
            shown["approximation_gap"],
            shown["amortization_gap"],
            folder / "gap_decomposition.png",
        )
    if "surgery" in summary:
        usage = summary["latent_usage"]
        figures["surgery"] = lambda: plots.surgery(summary["surgery"], folder / "surgery.png")
        figures["kl_per_dim"] = lambda: plots.kl_per_dim(
            usage["latents"], folder / "kl_per_dim.png", usage["threshold"]
        )
    made, skipped = {}, {}
    for name, draw in figures.items():
        path = draw()
        if path is None:
            skipped[name] = "nothing finite to draw"
        else:
            made[name] = str(path.relative_to(run_dir))
    return made, skipped

"""Matplotlib figures written as PNG files (the Agg backend: no screen needed).

Each figure is written atomically (:func:`~pyro_vae.runs.files.atomic_path`): a folder or file
that cannot be written is one :class:`~pyro_vae.errors.PyroVaeError` naming it. The figures of
per-datapoint estimates draw their finite values only, and return None, writing nothing, when
no value is left to draw.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..results.estimand import LOG_PX  # noqa: E402
from .files import atomic_path  # noqa: E402


def _save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (its format from the suffix, PNG by default) and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def elbo_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """Train and test ELBO per datapoint against the epoch; the validation ELBO, with its best
    epoch marked, where the run has one."""
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [r["train_elbo"] for r in history], label="train ELBO")
    ax.plot(epochs, [r["test_elbo"] for r in history], label="test ELBO")
    valid = [(r["epoch"], r["valid_elbo"]) for r in history if "valid_elbo" in r]
    if valid:
        ax.plot(*zip(*valid, strict=True), label="validation ELBO")
        best = max(valid, key=lambda point: point[1])
        ax.axvline(best[0], color="grey", linestyle=":", label=f"best (epoch {best[0]})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO per datapoint (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def image_grid(
    images: torch.Tensor,
    image_shape: tuple[int, ...],
    path: Path,
    title: str = "",
    columns: int | None = None,
) -> Path:
    """A grid of flat images (N, C·H·W) with values in [0, 1]; ``image_shape`` is (C, H, W)
    or (H, W). One channel is drawn in grey, three as colour; other counts show channel 0."""
    shape = tuple(image_shape) if len(image_shape) == 3 else (1, *image_shape)
    channels, h, w = shape
    images = images.detach().cpu().reshape(-1, *shape).clamp(0, 1).numpy()
    images = images.transpose(0, 2, 3, 1) if channels == 3 else images[:, 0]
    n = len(images)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1, *images.shape[3:]), 0.25)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = image
    fig, ax = plt.subplots(figsize=(columns * 0.6 + 0.4, rows * 0.6 + 0.6))
    grey = dict(cmap="gray_r", vmin=0, vmax=1) if channels != 3 else {}
    ax.imshow(canvas, interpolation="nearest", **grey)
    ax.set_axis_off()
    ax.set_title(title)
    return _save(fig, path)


def data_vs_model(data: torch.Tensor, samples: torch.Tensor, path: Path, title: str = "") -> Path:
    """Non-image data against model samples: histograms in 1-D, the first two dims otherwise."""
    data, samples = data.detach().cpu().numpy(), samples.detach().cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 4))
    if data.shape[1] == 1:
        bins = np.linspace(min(data.min(), samples.min()), max(data.max(), samples.max()), 60)
        ax.hist(data[:, 0], bins=bins, density=True, alpha=0.5, label="data")
        ax.hist(samples[:, 0], bins=bins, density=True, alpha=0.5, label="model samples")
        ax.set_xlabel("x")
        ax.set_ylabel("density")
    else:
        ax.scatter(data[:, 0], data[:, 1], s=4, alpha=0.4, label="data")
        ax.scatter(samples[:, 0], samples[:, 1], s=4, alpha=0.4, label="model samples")
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def sequence_lines(data, lengths, samples, path: Path) -> Path:
    """Sequences of the data (top) and drawn from the model (bottom), each dimension against the
    time step; a data sequence stops at its length."""
    data, samples = data.detach().cpu().numpy(), samples.detach().cpu().numpy()
    fig, axes = plt.subplots(2, len(data), figsize=(3 * len(data), 5), sharey=True, squeeze=False)
    for i, (sequence, length) in enumerate(zip(data, lengths.tolist(), strict=True)):
        axes[0, i].plot(range(1, length + 1), sequence[:length])
        axes[0, i].set_title(f"data {i + 1}", fontsize=9)
    for i, sequence in enumerate(samples[: len(data)]):
        axes[1, i].plot(range(1, len(sequence) + 1), sequence)
        axes[1, i].set_title(f"model sample {i + 1}", fontsize=9)
        axes[1, i].set_xlabel("t")
    fig.suptitle("each dimension of x_t against t")
    return _save(fig, path)


def _finite(value) -> bool:
    return value is not None and bool(np.isfinite(value))


def log_px_vs_k(curve: list, elbo: float | None, path: Path, estimand=LOG_PX) -> Path | None:
    """Mean log p̂ against K (log axis) with a ±2 standard-error band, and the ELBO, from the
    report's curve (:class:`~pyro_vae.results.evaluation.CurvePoint`); the points whose mean is
    missing (None) or not finite are left out, an ELBO that is too; None, and no file, when no
    point is left."""
    points = [c for c in curve if _finite(c.log_px)]
    if not points:
        return None
    ks = np.array([c.num_samples for c in points])
    means = np.array([c.log_px for c in points], dtype=float)
    errors = np.array([c.mc_stderr if _finite(c.mc_stderr) else 0.0 for c in points], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ks, means, marker="o", label=f"{estimand.log_p_hat}, K samples")
    ax.fill_between(ks, means - 2 * errors, means + 2 * errors, alpha=0.3, label="± 2 stderr")
    if _finite(elbo):
        ax.axhline(elbo, color="gray", linestyle="--", label="ELBO")
    ax.set_xscale("log")
    ax.set_xlabel("K (importance samples)")
    ax.set_ylabel("mean per datapoint (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def histogram(
    values: np.ndarray, path: Path, xlabel: str, lines: tuple = (), keep=None
) -> Path | None:
    """Histogram of per-datapoint values where ``keep`` (default: all), non-finite ones and
    those left out counted in the title; None, and no file, when no finite value is kept."""
    values = np.asarray(values, dtype=float)
    left_out = 0
    if keep is not None:
        keep = np.asarray(keep, dtype=bool)
        left_out = int((~keep).sum())
        values = values[keep]
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(finite, bins=50)
    for x in lines:
        ax.axvline(x, color="red", linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("datapoints")
    dropped = len(values) - len(finite)
    notes = [f"{dropped} not finite"] * bool(dropped) + [f"{left_out} left out"] * bool(left_out)
    ax.set_title(f"{len(finite)} datapoints" + (f" ({', '.join(notes)})" if notes else ""))
    return _save(fig, path)


def snr_vs_k(rows: list, path: Path) -> Path:
    """Gradient SNR of the guide's and the model's parameters against K, one line per
    estimator family (estimators with a single K are points); ``rows``: the estimators'
    results that were not skipped."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    families: dict[str, list] = {}
    for row in rows:
        families.setdefault(row.label.split("(")[0], []).append(row)
    titles = {"guide": "guide (encoder)", "model": "model (decoder)"}
    markers = "osD^vP*X"
    for ax, (group, title) in zip(axes, titles.items(), strict=True):
        for i, (name, members) in enumerate(families.items()):
            members = sorted(members, key=lambda r: r.num_particles)
            k = [r.num_particles for r in members]
            snr = [r.gradients[group].snr if group in r.gradients else np.nan for r in members]
            # Estimators that share samples can coincide (iwae and iwae_dreg for the model):
            # shrinking markers and dashes keep every one visible.
            ax.plot(
                k,
                snr,
                marker=markers[i % len(markers)],
                markersize=9 - 0.8 * (i % 6),
                linestyle=("-", "--", ":", "-.")[i % 4],
                alpha=0.85,
                label=name,
            )
        ax.set_xscale("log")
        ax.set_xlabel("K (samples per datapoint)")
        ax.set_ylabel("mean per-coordinate gradient SNR")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def estimator_values(rows: list, reference: float | None, path: Path, label: str) -> Path:
    """Each estimator's mean value per datapoint ± one standard deviation over repetitions."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    y = np.arange(len(rows))
    ax.errorbar([r.value for r in rows], y, xerr=[r.value_std for r in rows], fmt="o", capsize=3)
    if reference is not None:
        ax.axvline(reference, color="black", linestyle="--", label=label)
        ax.legend(fontsize=8)
    ax.set_yticks(y, [r.label for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("estimate per datapoint (nats), ± 1 std over repetitions")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def learning_curves(histories: dict[str, list[dict]], path: Path) -> Path:
    """Test ELBO against epoch and against training time, one line per objective."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for label, history in histories.items():
        epochs = [r["epoch"] for r in history]
        seconds = np.cumsum([r["seconds"] for r in history])
        elbo = [r["test_elbo"] for r in history]
        axes[0].plot(epochs, elbo, marker=".", label=label)
        axes[1].plot(seconds, elbo, marker=".", label=label)
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("training time (s)")
    axes[0].set_ylabel("test ELBO per datapoint (nats)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def gap_decomposition(
    gap: np.ndarray, approximation: np.ndarray, amortization: np.ndarray, path: Path, groups=5
) -> Path | None:
    """The gap split per group of datapoints (groups of equal size by total gap, smallest
    first): stacked bars of the mean approximation and amortization gaps, over the datapoints
    where all three are finite; None, and no file, when there is none."""
    gap, approximation, amortization = (
        np.asarray(v, dtype=float) for v in (gap, approximation, amortization)
    )
    finite = np.isfinite(gap) & np.isfinite(approximation) & np.isfinite(amortization)
    if not finite.any():
        return None
    order = np.flatnonzero(finite)[np.argsort(gap[finite])]
    parts = [p for p in np.array_split(order, min(groups, len(order))) if len(p)]
    approx = [approximation[p].mean() for p in parts]
    amort = [amortization[p].mean() for p in parts]
    labels = [f"{i + 1}\n({len(p)})" for i, p in enumerate(parts)]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(labels, approx, label="approximation gap")
    ax.bar(labels, amort, bottom=approx, label="amortization gap")
    ax.set_xlabel("datapoints grouped by total gap, smallest first (count)")
    ax.set_ylabel("mean per datapoint (nats)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    return _save(fig, path)


def kl_per_dim(latents: dict, path: Path, threshold: float) -> Path | None:
    """Each latent's KL per dimension (sorted, largest first), coloured by activity, from the
    report's :class:`~pyro_vae.results.evaluation.LatentStats`; None, and no file, when no
    latent has a finite activity."""
    names = [n for n in latents if np.isfinite(np.asarray(latents[n].activity, dtype=float)).any()]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        stats = latents[name]
        activity = np.asarray(stats.activity, dtype=float)  # None (NaN in JSON): NaN
        order = np.argsort(-np.nan_to_num(activity, nan=-np.inf))
        values = stats.kl_per_dim
        heights = np.asarray(values, dtype=float)[order] if values is not None else activity[order]
        colours = ["tab:blue" if a > threshold else "tab:gray" for a in activity[order]]
        ax.bar(range(len(order)), heights, color=colours)
        ax.set_xlabel("dimension (most active first)")
        ax.set_ylabel("KL per dimension (nats)" if values is not None else "activity")
        ax.set_title(f"{name}: {stats.active_units} of {stats.dims} active (blue)")
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def surgery(s, path: Path, estimand=LOG_PX) -> Path | None:
    """The average KL as mutual information plus marginal KL, against log N, from the report's
    :class:`~pyro_vae.results.evaluation.SurgerySection`; None, and no file, when one of them
    is missing or not finite."""
    if not all(_finite(v) for v in (s.mutual_information, s.marginal_kl, s.log_num_data)):
        return None
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.bar(
        ["average KL"], [s.mutual_information], label=f"mutual information {estimand.information}"
    )
    ax.bar(
        ["average KL"],
        [s.marginal_kl],
        bottom=[s.mutual_information],
        label=f"marginal {estimand.aggregate_kl}",
    )
    ax.axhline(s.log_num_data, color="red", linestyle="--", label="log N (largest MI)")
    ax.set_ylabel("nats per datapoint")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def is_vs_ais(
    is_log_px: np.ndarray, ais_log_px: np.ndarray, khat: np.ndarray, path: Path, estimand=LOG_PX
) -> Path | None:
    """AIS against importance-sampled log p̂(x) per datapoint, where both are finite; red
    where IS had k̂ > 0.7. None, and no file, when no datapoint has both finite."""
    is_log_px, ais_log_px, khat = (
        np.asarray(v, dtype=float) for v in (is_log_px, ais_log_px, khat)
    )
    finite = np.isfinite(is_log_px) & np.isfinite(ais_log_px)
    if not finite.any():
        return None
    is_log_px, ais_log_px, khat = is_log_px[finite], ais_log_px[finite], khat[finite]
    fig, ax = plt.subplots(figsize=(5, 5))
    bad = np.nan_to_num(khat, nan=0.0) > 0.7
    ax.scatter(is_log_px[~bad], ais_log_px[~bad], s=6, alpha=0.6, label="k̂ ≤ 0.7")
    ax.scatter(is_log_px[bad], ais_log_px[bad], s=6, alpha=0.6, color="tab:red", label="k̂ > 0.7")
    values = np.concatenate([is_log_px, ais_log_px])
    low, high = values.min(), values.max()
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="equal")
    ax.set_xlabel(f"{estimand.log_p_hat}, importance sampling")
    ax.set_ylabel(f"{estimand.log_p_hat}, AIS")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def per_step(steps, path: Path, estimand=LOG_PX) -> Path | None:
    """Per time step of a sequence model: log p̂(x_t | x_<t), the ELBO_t, KL_t and gap_t (the
    means of :class:`~pyro_vae.results.evaluation.StepsSection`)."""
    values = {
        f"{estimand.log_p_hat.replace('(x)', '(x_t | x_<t)')}": steps.log_px,
        "ELBO_t": steps.elbo,
        "E log p(x_t | z_t)": steps.reconstruction,
    }
    if not any(_finite(v) for series in values.values() for v in series):
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for label, series in values.items():
        top.plot(steps.steps, _floats(series), marker=".", label=label)
    top.set_ylabel("nats")
    top.legend(fontsize=8)
    top.set_title(f"Per time step, means over sequences (K = {steps.num_samples})")
    bottom.plot(steps.steps, _floats(steps.kl), marker=".", label="KL_t")
    bottom.plot(steps.steps, _floats(steps.gap), marker=".", label="gap_t")
    bottom.axhline(0, color="grey", lw=0.5)
    bottom.set_xlabel("time step t")
    bottom.set_ylabel("nats")
    bottom.legend(fontsize=8)
    return _save(fig, path)


def _floats(series) -> list[float]:
    return [float("nan") if v is None else float(v) for v in series]


def draw_evaluation(run_dir: Path, evaluation) -> tuple[dict, dict]:
    """The figures of an :class:`~pyro_vae.runs.evaluation.Evaluation`, of its usable
    datapoints, under ``run_dir/plots``: ``{name: path}`` of those drawn and ``{name: why}`` of
    those skipped because nothing in them could be drawn."""
    folder, report, usable = run_dir / "plots", evaluation.report, evaluation.usable
    arrays, e = evaluation.arrays(), report.estimand
    shown = {k: np.where(usable, v, np.nan) for k, v in arrays.items() if v.dtype.kind == "f"}
    figures = {
        "log_px_vs_k": lambda: log_px_vs_k(
            report.log_px_by_num_samples, report.elbo.mean, folder / "log_px_vs_k.png", e
        ),
        "gap_hist": lambda: histogram(
            arrays["gap"],
            folder / "gap_hist.png",
            f"{e.log_p_hat} − ELBO per datapoint (nats)",
            keep=usable,
        ),
        "khat_hist": lambda: histogram(
            arrays["khat"],
            folder / "khat_hist.png",
            "Pareto k̂ per datapoint",
            lines=(0.5, 0.7),
            keep=usable,
        ),
    }
    if report.ais is not None:
        figures["is_vs_ais"] = lambda: is_vs_ais(
            shown["log_px"], shown["ais_log_px"], arrays["khat"], folder / "is_vs_ais.png", e
        )
    if report.decomposition is not None:
        figures["gap_decomposition"] = lambda: gap_decomposition(
            shown["approximation_gap"] + shown["amortization_gap"],
            shown["approximation_gap"],
            shown["amortization_gap"],
            folder / "gap_decomposition.png",
        )
    if report.surgery is not None:
        usage = report.latent_usage
        figures["surgery"] = lambda: surgery(report.surgery, folder / "surgery.png", e)
        figures["kl_per_dim"] = lambda: kl_per_dim(
            usage.latents, folder / "kl_per_dim.png", usage.threshold
        )
    if report.steps is not None:
        figures["per_step"] = lambda: per_step(report.steps, folder / "per_step.png", e)
    return _drawn(run_dir, figures)


def _drawn(run_dir: Path, figures: dict) -> tuple[dict, dict]:
    """Draw each figure; ``{name: path relative to run_dir}`` and ``{name: why not drawn}``."""
    made, skipped = {}, {}
    for name, draw in figures.items():
        path = draw()
        if path is None:
            skipped[name] = "nothing finite to draw"
        else:
            made[name] = str(path.relative_to(run_dir))
    return made, skipped

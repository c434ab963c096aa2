"""How comparisons of ELBO estimators are shown: :class:`GradientStats` (one parameter group),
:class:`EstimatorResult` (one estimator) and :class:`Comparison` (all of them against one
reference, a table of value, bias, gradient variance and SNR, time).
"""

from __future__ import annotations

import math

from .tables import Table, fmt, fmt_pm
from .view import register_view

#: The parameter groups, in the order the results show them.
GROUPS = ("guide", "model")


def _gradient_summary(g) -> dict:
    out = {"variance": g.variance, "snr": g.snr, "snr_norm": g.snr_norm}
    if g.exact is not None:  # against the exact ELBO gradient
        out.update(relative_bias=g.relative_bias, bias_floor=g.bias_floor, exact_snr=g.exact_snr)
    return out


def exact_cells(gradients: dict) -> list[str]:
    """Each group's bias against the exact ELBO gradient (its noise floor in brackets) and SNR
    against it; ``–`` for a group without parameters."""
    cells = []
    for group in GROUPS:
        stats = gradients.get(group)
        if stats is None or stats.exact is None:
            cells += [fmt(None), fmt(None)]
        else:
            bias = f"{fmt(stats.relative_bias, '.3f')} ({fmt(stats.bias_floor, '.3f')})"
            cells += [bias, fmt(stats.exact_snr)]
    return cells


def _gradient_details(g, per_coordinate: bool = True) -> dict:
    """The parameters' names and sizes, and (``per_coordinate``) the mean and variance of every
    coordinate, which for a network are long lists."""
    out = {"names": g.names, "coordinates": g.mean.numel(), "repeats": g.repeats}
    if per_coordinate:
        out["per_coordinate"] = {"mean": g.mean, "var": g.var}
    return out


register_view(
    "GradientStats",
    table=lambda g: Table(
        f"Gradient statistics over {g.repeats} repetitions ({len(g.names)} parameter "
        f"tensors, {g.mean.numel()} coordinates)",
        ["", ""],
        [
            ["variance, mean per coordinate", fmt(g.variance, ".3e")],
            ["SNR, mean over coordinates", fmt(g.snr, ".3f")],
            ["SNR of the whole vector", fmt(g.snr_norm, ".3f")],
        ],
    ),
    line=lambda g: {
        "parameters": len(g.names),
        "coordinates": g.mean.numel(),
        **_gradient_summary(g),
    },
    summary=_gradient_summary,
    details=_gradient_details,
)


def gradient_cells(gradients: dict) -> list[str]:
    """Variance and SNR of each group, ``–`` for a group without parameters."""
    cells = []
    for group in GROUPS:
        stats = gradients.get(group)
        if stats is None:
            cells += [fmt(None), fmt(None)]
        else:
            cells += [fmt(stats.variance, ".2e"), fmt(stats.snr)]
    return cells


def _estimator_fields(r, gradients: dict, **after_particles) -> dict:
    """The estimator's numbers, in the order its summary and details show them, with
    ``after_particles`` after ``num_particles`` and ``gradients`` last."""
    return {
        "estimator": r.label,
        "num_particles": r.num_particles,
        **after_particles,
        "value": r.value,
        "value_std": r.value_std,
        "bias": r.bias,
        "bias_stderr": r.bias_stderr,
        "ms_per_step": 1000 * r.seconds_per_step,
        "gradients": gradients,
    }


def _estimator_summary(r) -> dict:
    if r.skipped:
        return {"estimator": r.label, "skipped": r.skipped}
    return _estimator_fields(r, {k: _gradient_summary(g) for k, g in r.gradients.items()})


def _estimator_details(r) -> dict:
    """Every field, with the same keys whether or not the estimator was skipped; ``gradients``
    has both groups, None for one without parameters (per-group summaries only)."""
    gradients = {
        g: None if g not in r.gradients else r.gradients[g].to_dict(per_coordinate=False)
        for g in GROUPS
    }
    return _estimator_fields(r, gradients, skipped=r.skipped)


def _estimator_table(r) -> Table:
    title = f"{r.label}, K = {r.num_particles} (per datapoint, nats)"
    if r.skipped:
        return Table(title, ["", ""], [["skipped", r.skipped]])
    names = ["guide gradient variance", "guide SNR", "model gradient variance", "model SNR"]
    rows = [
        ["value ± std over repetitions", fmt_pm(r.value, r.value_std)],
        ["bias ± stderr", fmt_pm(r.bias, r.bias_stderr)],
        ["ms per step", fmt(1000 * r.seconds_per_step, ".1f")],
        *zip(names, gradient_cells(r.gradients), strict=True),
    ]
    return Table(title, ["", ""], rows)


register_view(
    "EstimatorResult",
    table=_estimator_table,
    line=lambda r: (
        {"label": r.label, "skipped": r.skipped}
        if r.skipped
        else {
            "label": r.label,
            "value": r.value,
            "value_std": r.value_std,
            "bias": r.bias,
            "ms_per_step": 1000 * r.seconds_per_step,
        }
    ),
    summary=_estimator_summary,
    details=_estimator_details,
)


def reference_note(c) -> str:
    """``reference: log p(x) = −23.1 ± 0.1 (log_likelihood K=5000); k̂ > 0.7 on 3 of 100``."""
    if c.reference is None:
        return f"no reference ({c.reference_kind}): no bias"
    note = (
        f"reference: {c.estimand.log_p()} = {fmt_pm(c.reference, c.reference_stderr)} "
        f"({c.reference_kind})"
    )
    if c.reference_khat_above_0_7:
        note += f"; k̂ > 0.7 on {c.reference_khat_above_0_7} of {c.num_data} datapoints"
    return note


def _comparison_table(c) -> Table:
    header = ["estimator", "K", "value", "std", "bias ± stderr"]
    header += ["guide var", "guide SNR", "model var", "model SNR", "ms/step"]
    exact = not c.exact_gradient.startswith("none")
    if exact:
        header += ["guide bias (floor)", "guide SNR*", "model bias (floor)", "model SNR*"]
    rows, notes = [], [reference_note(c)]
    for r in c.results:
        if r.skipped:
            rows.append([r.label, r.num_particles, "skipped", *[""] * (len(header) - 3)])
            notes.append(f"{r.label} skipped: {r.skipped}")
            continue
        rows.append(
            [
                r.label,
                r.num_particles,
                fmt(r.value, ".3f"),
                fmt(r.value_std, ".3f"),
                fmt_pm(r.bias, r.bias_stderr),
                *gradient_cells(r.gradients),
                fmt(1000 * r.seconds_per_step, ".1f"),
                *(exact_cells(r.gradients) if exact else []),
            ]
        )
    if exact:
        notes.append(
            f"bias: ‖mean gradient − exact‖ / ‖exact‖, against the {c.exact_gradient}; in "
            "brackets what the repetitions' noise alone gives an unbiased estimator; SNR*: "
            "|exact| / std. Estimators of other bounds than the ELBO differ by design"
        )
    notes += c.notes
    if c.differentiated:
        notes.append(f"an SNR below about {1 / math.sqrt(c.repeats):.2f} cannot be told from 0")
    title = (
        f"ELBO estimators on {c.num_data} datapoints, {c.repeats} repetitions each "
        f"(bounds on {c.estimand.log_p()}, per datapoint, nats)"
    )
    return Table(title, header, rows, notes)


def _comparison_summary(c) -> dict:
    return {
        "num_data": c.num_data,
        "repeats": c.repeats,
        "reference": c.reference,
        "reference_stderr": c.reference_stderr,
        "reference_kind": c.reference_kind,
        "reference_khat_above_0.7": c.reference_khat_above_0_7,
        "differentiated": c.differentiated,
        "notes": c.notes,
        "estimand": c.estimand.to_dict(),
        "exact_gradient": c.exact_gradient,
        "estimators": [r.summary() for r in c.results],
    }


register_view(
    "Comparison",
    table=_comparison_table,
    line=lambda c: {
        "num_data": c.num_data,
        "repeats": c.repeats,
        "estimators": [r.label for r in c.results],
        "reference": c.reference,
        "differentiated": c.differentiated,
    },
    summary=_comparison_summary,
    details=lambda c: {"estimators": [r.to_dict() for r in c.results]},
)


# -- comparisons written as files ------------------------------------------------------------


def _run_comparison_table(r) -> Table:
    table = _comparison_table(r.comparison)
    table.title = f"{r.source}; {r.data} test datapoints, seed {r.seed}: {table.title}"
    return table


register_view(
    "RunComparison",
    table=_run_comparison_table,
    line=lambda r: {"source": r.source, **_comparison_view_line(r.comparison)},
    summary=lambda r: {
        "source": r.source,
        "data": r.data,
        "seed": r.seed,
        **r.comparison.summary(),
        "plots": r.plots,
    },
)


def _comparison_view_line(c) -> dict:
    return {"num_data": c.num_data, "estimators": [r.label for r in c.results]}


def run_comparison_markdown(r) -> str:
    """``comparison.md`` of a comparison of estimators: the table, what its columns mean, the
    plots."""
    c = r.comparison
    lines = [
        "# Estimator comparison",
        "",
        f"{r.source}; {c.num_data} {r.data} test datapoints, {c.repeats} repetitions per "
        f"estimator, seed {r.seed}.",
        "",
        "Values are per datapoint (nats); std is over repetitions; gradient variance is the mean "
        "per-coordinate variance of the per-datapoint gradient; SNR is the mean over coordinates "
        "of |mean| / std.",
        "",
        _comparison_table(c).markdown(),
        *[f"![{name}]({path})" for name, path in r.plots.items()],
    ]
    return "\n".join(lines) + "\n"


def _trained_summary(run) -> dict:
    e = run.evaluation
    return {
        "run": run.run,
        "train_seconds": run.train_seconds,
        "final_test_elbo": run.final_test_elbo,
        "evaluation": {
            "num_data": e.num_data,
            "num_samples": e.num_samples,
            "log_px": vars(e.log_px),
            "elbo": vars(e.elbo),
            "gap": vars(e.gap),
            "khat_above_0.7": e.khat_above,
        },
        "vs_first": {k: vars(d) for k, d in run.vs_first.items()},
    }


def _training_table(t) -> Table:
    first = t.runs[0].label
    rows = []
    for run in t.runs:
        e, d = run.evaluation, run.vs_first
        delta = {
            k: fmt(None) if run.label == first else f"{d[k].mean:+.2f} ± {fmt(d[k].stderr)}"
            for k in ("elbo", "log_px")
        }
        rows.append(
            [
                run.label,
                f"{run.train_seconds:.0f}",
                fmt_pm(e.elbo.mean, e.elbo.mc_stderr, ".2f"),
                fmt_pm(e.log_px.mean, e.log_px.mc_stderr, ".2f"),
                fmt(e.gap.mean),
                delta["elbo"],
                delta["log_px"],
                f"{e.khat_above} of {e.num_data}",
            ]
        )
    estimand = t.runs[0].evaluation.estimand
    header = ["objective", "train time (s)", "ELBO", estimand.log_p_hat, "gap", "Δ ELBO"]
    header += [f"Δ {estimand.log_p_hat}", "k̂ > 0.7"]
    notes = [
        f"ELBO and {estimand.log_p_hat} ± their Monte Carlo standard error; Δ: the difference "
        f"from the first row ({first}), datapoint by datapoint, ± its standard error over "
        "datapoints (every run saw the same test datapoints, so the differences are paired). "
        f"k̂ > 0.7: datapoints where the importance-sampled {estimand.log_p_hat} is unreliable "
        "(likely too low)."
    ]
    title = f"Training comparison of {t.model} / {t.guide} on {t.data} (nats per datapoint)"
    return Table(title, header, rows, notes)


register_view(
    "TrainingComparison",
    table=_training_table,
    line=lambda t: {"model": t.model, "objectives": [r.label for r in t.runs]},
    summary=lambda t: {
        "model": t.model,
        "guide": t.guide,
        "data": t.data,
        "settings": t.settings,
        "num_samples": t.num_samples,
        "runs": {run.label: _trained_summary(run) for run in t.runs},
        "plots": t.plots,
    },
)


def training_comparison_markdown(t) -> str:
    """``comparison.md`` of a training comparison: settings, the table, the learning curves."""
    first = t.runs[0].evaluation
    lines = [
        "# Training comparison",
        "",
        f"`{t.model}` / `{t.guide}` on {t.data}, settings {t.settings}; each run evaluated on "
        f"{first.num_data} test datapoints with {first.estimand.log_p_hat} from K = "
        f"{t.num_samples} importance samples and the ELBO.",
        "",
        _training_table(t).markdown(),
        *[f"![{name}]({path})" for name, path in t.plots.items()],
    ]
    return "\n".join(lines) + "\n"

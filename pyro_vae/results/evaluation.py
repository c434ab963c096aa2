"""The evaluation of a run, as numbers and as text: :class:`EvaluationReport`, the schema of
``report.json["evaluation"]`` (each field is a key, in this order; the nested summaries below
are its sections), and how it reads: the report's headline and section, the command line's
lines, and the view of :class:`~pyro_vae.runs.evaluation.Evaluation`.

``evaluation.npz`` holds the per-datapoint arrays behind these numbers;
:data:`ARRAYS` names and describes them, in the order they are written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .choices import Proposal
from .estimand import LOG_PX, Estimand, short_names
from .explanations import aggregate_note, decomposition_warnings, surgery_rows
from .schema import to_json
from .stats import Difference, Stats
from .tables import Table, fmt, markdown_table
from .view import register_view

#: The arrays of ``evaluation.npz``, one value per evaluated datapoint, in the order written;
#: the ``ais_*`` arrays come with ``--ais``, the refinement's with ``--decompose``.
ARRAYS = {
    "test_index": "the datapoint's row in the test split",
    "log_px": "log p̂ by importance sampling",
    "stderr": "its Monte Carlo standard error",
    "ess": "effective sample size of the importance weights",
    "khat": "Pareto k̂ of the importance weights (> 0.7: unreliable)",
    "elbo": "the ELBO",
    "elbo_stderr": "its Monte Carlo standard error",
    "log_weight_magnitude": "the largest |log w| or |estimate| behind the datapoint's numbers",
    "ais_log_px": "log p̂ by AIS",
    "ais_stderr": "its Monte Carlo standard error",
    "ais_acceptance": "mean HMC acceptance rate of its chains",
    "elbo_refined": "the ELBO of q refined for this datapoint",
    "elbo_refined_stderr": "its Monte Carlo standard error",
    "refine_converged": "whether the refinement had stopped improving",
    "gap": "log p̂ − ELBO",
    "gap_stderr": "its Monte Carlo standard error",
    "precision_lost": "whether the log weights were too large for their dtype",
    "approximation_gap": "log p̂ (AIS where run) − refined ELBO",
    "amortization_gap": "refined ELBO − ELBO",
}

#: How each per-datapoint estimate of ``non_finite`` is named in the report.
ESTIMATE_NAMES = {
    "log_px": "log p̂(x)",
    "elbo": "ELBO",
    "gap": "gap",
    "ess": "ESS",
    "khat": "k̂",
    "ais_log_px": "AIS log p̂(x)",
    "elbo_refined": "refined ELBO",
}


@dataclass(frozen=True)
class CurvePoint:
    """Mean log p̂ from the first ``num_samples`` samples of every datapoint."""

    num_samples: int
    log_px: float | None
    mc_stderr: float | None


@dataclass(frozen=True)
class PrecisionLoss:
    """Datapoints whose log weights are too large for ``dtype``: rounded to steps coarser than
    ``tolerance`` nats (``spacing`` at the largest, ``max_abs_log_weight``)."""

    num_data: int = 0
    dtype: str = "float32"
    tolerance: float = 0.1
    max_abs_log_weight: float | None = None
    spacing: float | None = None


@dataclass(frozen=True)
class AisSection:
    num_samples: int
    num_steps: int
    log_px: Stats
    minus_is: Difference  # AIS − IS, datapoint by datapoint
    acceptance_mean: float | None
    seconds: float


@dataclass(frozen=True)
class DecompositionSection:
    log_px_from: str  # "ais" or "is"
    elbo_refined: Stats
    approximation_gap: Stats
    amortization_gap: Stats
    converged: int
    max_refine_steps: int
    seconds: float
    unreliable: int = 0  # datapoints with k̂ > 0.7 under importance sampling, left out
    negative_gaps: int = 0  # datapoints with a gap below −3 standard errors


@dataclass(frozen=True)
class SurgerySection:
    average_kl: float | None
    average_kl_stderr: float | None
    marginal_kl: float | None
    marginal_kl_stderr: float | None
    mutual_information: float | None
    mutual_information_stderr: float | None
    log_num_data: float
    num_data: int
    num_samples: int
    #: Components the aggregate posterior's density came from (None: all, in reports before
    #: the shortcut) and the shortcut's standard error and bias on the mean log q̄.
    components: int | None = None
    aggregate_stderr: float = 0.0
    aggregate_bias: float = 0.0


@dataclass(frozen=True)
class LatentStats:
    dims: int
    active_units: int
    kl_total: float | None
    kl_per_dim: list | None
    activity: list


@dataclass(frozen=True)
class UsageSection:
    threshold: float
    latents: dict[str, LatentStats]
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassificationSection:
    """How often a classifier q(y | x) of a partially observed node names the test label: the
    argmax of q against the data's label, over the evaluated datapoints."""

    node: str
    categories: int
    num_data: int
    accuracy: float
    accuracy_stderr: float  # binomial: sqrt(a (1 − a) / N)
    mean_log_q: float  # mean log q(y = label | x): how sure it is of the right class


@dataclass(frozen=True)
class StepsSection:
    """Per time step of a sequence model, the means over the sequences that have the step
    (:class:`~pyro_vae.inference.steps.StepwiseEstimate`), and the per-sequence totals."""

    steps: list
    num_samples: int
    log_px: list  # log p̂(x_t | x_<t)
    elbo: list
    reconstruction: list  # E_q log p(x_t | z_t)
    kl: list
    gap: list
    datapoints: list
    totals: dict


def _optional():
    return field(default=None, metadata={"optional": True})


@dataclass(frozen=True, kw_only=True)
class EvaluationReport:
    """``report.json["evaluation"]``: what was evaluated and how, and the means (over the
    ``num_used`` usable datapoints) of every per-datapoint estimate; the fields are its keys,
    in order. Fields with defaults may be missing from reports of earlier versions."""

    data: str
    split: str
    num_data: int
    num_test: int | None = None
    num_samples: int
    proposal: str = "guide"
    precision: str = "fp32"
    processes: int = 1
    elbo_samples: int
    elbo_estimator: str
    num_used: int | None = None
    non_finite: dict[str, int] = field(default_factory=dict)
    precision_lost: PrecisionLoss = field(default_factory=PrecisionLoss)
    log_px: Stats
    elbo: Stats
    gap: Stats
    ess_median: float | None
    khat_median: float | None
    khat_above: int = field(metadata={"key": "khat_above_0.7"})
    khat_undefined: int = 0
    log_px_by_num_samples: list[CurvePoint] = field(default_factory=list)
    seconds: float = 0.0
    #: Of ``seconds``, the compilation of the importance weights' passes (``--compile``).
    compile_seconds: float | None = _optional()
    ais: AisSection | None = _optional()
    decomposition: DecompositionSection | None = _optional()
    surgery: SurgerySection | None = _optional()
    latent_usage: UsageSection | None = _optional()
    classification: list[ClassificationSection] | None = _optional()
    steps: StepsSection | None = _optional()
    peak_rss_mb: float = 0.0
    seed: int = 0
    checkpoint_epoch: int | None = None
    checkpoint: str = "last"  # "best": the weights of the best epoch by the validation ELBO
    plots: dict[str, str] = field(default_factory=dict)
    plots_skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] | None = None
    estimand: Estimand = LOG_PX

    @property
    def used(self) -> int:
        return self.num_data if self.num_used is None else self.num_used

    @property
    def best_log_px(self) -> tuple[Stats, str]:
        """The best estimate of log p(x) measured, and by what: AIS where it ran."""
        if self.ais is not None:
            return self.ais.log_px, "AIS"
        return self.log_px, "importance sampling"


def health_notes(non_finite: dict[str, int], num_data: int, lost: PrecisionLoss) -> list[str]:
    """A line per count of non-finite estimates (estimates with the same count share one), and
    one for lost precision, e.g. ``3 of 1000 datapoints gave a non-finite log p̂(x); excluded
    from the means.``"""
    by_count: dict[int, list[str]] = {}
    for name, count in non_finite.items():
        if count:
            by_count.setdefault(count, []).append(ESTIMATE_NAMES.get(name, name))
    notes = [
        f"{count} of {num_data} datapoints gave a non-finite {_and(names)}; excluded from the "
        "means."
        for count, names in by_count.items()
    ]
    if lost.num_data:
        notes.append(
            f"precision lost on {lost.num_data} of {num_data} datapoints: |log w| up to "
            f"{lost.max_abs_log_weight:.2g} nats, {lost.dtype} spacing {lost.spacing:.2g} nats "
            f"there (more than {lost.tolerance:g} nat); their gap, ESS and k̂ are rounding "
            "noise, not shown, and they are excluded from the means."
        )
    return notes


def _and(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def notes_of(r: EvaluationReport) -> list[str]:
    if r.notes is not None:
        return r.notes
    return health_notes(r.non_finite, r.num_data, r.precision_lost)


# -- how it reads ----------------------------------------------------------------------------


def headline(r: EvaluationReport) -> list[str]:
    """The first lines of a report with an evaluation: log p̂, the ELBO, and the gap split."""
    best, source = r.best_log_px
    gap = None
    if best.mean is not None and r.elbo.mean is not None:
        gap = best.mean - r.elbo.mean
    first = (
        f"**{r.estimand.log_p_hat} = {fmt(best.mean)}** nats per test datapoint ({source}), "
        f"**ELBO = {fmt(r.elbo.mean)}**, gap **{fmt(gap)}**"
    )
    if r.used < r.num_data:
        first += (
            f" (means over {r.used} of {r.num_data} datapoints: the others gave non-finite "
            "or imprecise estimates, see below)"
        )
    d = r.decomposition
    if d:
        first += (
            f" = approximation gap {fmt(d.approximation_gap.mean)} (what the guide family "
            f"cannot express) + amortization gap {fmt(d.amortization_gap.mean)} (what the "
            f"shared encoder loses)"
        )
    return ["## In short", "", *[line + "\n" for line in [first, *_explained(r)]], ""]


def _explained(r: EvaluationReport) -> list[str]:
    """The headline's lines on the KL term, the active units and unreliable estimates."""
    lines = []
    s, usage, e = r.surgery, r.latent_usage, r.estimand
    if s:
        lines.append(
            f"The KL term, {fmt(s.average_kl)} nats ({e.prior_kl}), is the information about "
            f"the data in the latents, {fmt(s.mutual_information)} (at most log N = "
            f"{fmt(s.log_num_data)}), plus {fmt(s.marginal_kl)} nats by which the aggregate "
            f"posterior misses the prior."
        )
    if usage:
        active = ", ".join(
            f"{name} {u.active_units} of {u.dims}" for name, u in usage.latents.items()
        )
        lines.append(f"Active latent dimensions: {active}.")
    for c in r.classification or ():
        lines.append(
            f"The classifier q({c.node} | x) names the label of {c.accuracy:.1%} of the "
            f"{c.num_data} datapoints (± {c.accuracy_stderr:.1%})."
        )
    if r.khat_above:
        lines.append(
            f"Importance sampling is unreliable on {r.khat_above} of {r.num_data} datapoints "
            f"(k̂ > 0.7): their {e.log_p_hat} is likely too low."
        )
    return lines


def _which(r: EvaluationReport) -> str:
    total = r.num_test if r.num_test is not None else r.num_data
    weights = _weights(r)
    if r.num_data >= total:
        return f"{r.num_data} datapoints{weights}"
    return f"a random subset of {r.num_data} of its {total} datapoints, seed {r.seed}{weights}"


def _weights(r: EvaluationReport) -> str:
    """Which checkpoint's weights were evaluated, where it is not simply the last one."""
    if r.checkpoint == "last":
        return ""
    return f"; the {r.checkpoint} checkpoint, epoch {r.checkpoint_epoch}"


def _stats_row(label: str, stats: Stats, errors=("mc_stderr", "datapoint_stderr")) -> list:
    return [label, fmt(stats.mean, ".3f"), *(fmt(getattr(stats, k), ".3f") for k in errors)]


def section(r: EvaluationReport) -> list[str]:
    """The report's evaluation section, in Markdown lines."""
    e = r.estimand
    proposal = Proposal.of(r.proposal).description
    over = f" Means over {r.used} of {r.num_data} datapoints." if r.used < r.num_data else ""
    lines = [
        f"## Evaluation on the {r.split} set ({_which(r)})",
        "",
        f"{e.log_p_hat} by importance sampling with K = {r.num_samples} {proposal}; ELBO with "
        f"{r.elbo_samples} samples (`{r.elbo_estimator}`). The gap {e.log_p_hat} − ELBO "
        f"estimates {e.posterior_kl}.{over}",
        "",
        *markdown_table(
            ["nats per datapoint", "mean", "Monte Carlo stderr", "stderr over datapoints"],
            [
                _stats_row(e.log_p_hat, r.log_px),
                _stats_row("ELBO", r.elbo),
                _stats_row("gap", r.gap),
            ],
        ),
        "",
        *_health_markdown(r),
        *_diagnostics_markdown(r),
        *_ais_markdown(r),
        *_decomposition_markdown(r),
        *_surgery_markdown(r),
        *_classification_markdown(r),
        *_steps_markdown(r),
    ]
    skipped = [f"Plot `{name}` skipped: {why}." for name, why in r.plots_skipped.items()]
    lines += [f"![{name}]({path})" for name, path in r.plots.items()]
    return lines + (["", *skipped] if skipped else [])


def _compiling(r: EvaluationReport) -> str:
    return "" if r.compile_seconds is None else f" ({r.compile_seconds:.1f} s compiling)"


def _diagnostics_markdown(r: EvaluationReport) -> list[str]:
    return [
        f"Median effective sample size {fmt(r.ess_median, '.1f')} of {r.num_samples}; median "
        f"Pareto k̂ {fmt(r.khat_median, '.3f')}; {r.khat_above} datapoints with k̂ > 0.7 "
        f"(estimate unreliable there), {r.khat_undefined} where k̂ is undefined (too few "
        f"distinct weights). {r.seconds:.1f} s{_compiling(r)}, peak memory "
        f"{r.peak_rss_mb:.0f} MB.",
        "",
        *markdown_table(
            ["K", r.estimand.log_p_hat, "Monte Carlo stderr"],
            [
                [c.num_samples, fmt(c.log_px, ".3f"), fmt(c.mc_stderr, ".3f")]
                for c in r.log_px_by_num_samples
            ],
        ),
        "",
    ]


def _health_markdown(r: EvaluationReport) -> list[str]:
    """The section on non-finite estimates and lost precision; nothing when there were none."""
    notes = notes_of(r)
    if not notes:
        return []
    return ["### Non-finite estimates and precision loss", "", *[f"- {n}" for n in notes], ""]


def _ais_markdown(r: EvaluationReport) -> list[str]:
    a = r.ais
    if not a:
        return []
    return [
        "### Annealed importance sampling",
        "",
        f"{a.num_samples} chains per datapoint, {a.num_steps} intermediate densities "
        f"(sigmoidal schedule), HMC transitions (mean acceptance {fmt(a.acceptance_mean)}): "
        f"{r.estimand.log_p_hat} = {fmt(a.log_px.mean, '.3f')} ± "
        f"{fmt(a.log_px.mc_stderr, '.3f')}, {fmt(a.minus_is.mean, '+.3f')} ± "
        f"{fmt(a.minus_is.stderr, '.3f')} nats against importance sampling, datapoint by "
        f"datapoint; {a.seconds:.1f} s (importance sampling: {r.seconds:.1f} s).",
        "",
    ]


def _decomposition_markdown(r: EvaluationReport) -> list[str]:
    d = r.decomposition
    if not d:
        return []
    errors = ("mc_stderr",)
    return [
        "### The gap, decomposed (Cremer et al. 2018)",
        "",
        "q refined for each datapoint from the encoder's output (same family); approximation "
        f"gap = {r.estimand.log_p_hat} ({d.log_px_from.upper()}) − refined ELBO, amortization "
        f"gap = refined ELBO − ELBO. {d.converged} of {r.num_data} refinements converged (no "
        f"datapoint improving by 0.001 nats per 100 steps) within {d.max_refine_steps} steps; "
        f"{d.seconds:.1f} s.",
        "",
        *_listed(decomposition_warnings(d.unreliable, d.negative_gaps, r.num_data)),
        *markdown_table(
            ["nats per datapoint", "mean", "Monte Carlo stderr"],
            [
                _stats_row("refined ELBO", d.elbo_refined, errors),
                _stats_row("approximation gap", d.approximation_gap, errors),
                _stats_row("amortization gap", d.amortization_gap, errors),
            ],
        ),
        "",
    ]


def _listed(notes: list[str]) -> list[str]:
    """Markdown list items and the blank line after them; nothing for no notes."""
    return [*(f"- {n}" for n in notes), ""] if notes else []


def _surgery_markdown(r: EvaluationReport) -> list[str]:
    s, usage = r.surgery, r.latent_usage
    if not s:
        return []
    rows = surgery_rows(vars(s), r.estimand, log_n="log N")
    lines = [
        "### ELBO surgery and latent usage",
        "",
        "The average KL splits into the mutual information between datapoint index and code "
        "(at most log N) and the KL of the aggregate posterior q̄ to the prior (Hoffman & "
        f"Johnson 2016), from {s.num_samples} draws per datapoint.",
        "",
        *markdown_table(["nats per datapoint", "value", "Monte Carlo stderr"], rows),
        "",
        *_listed(aggregate_note(vars(s))),
    ]
    if usage:
        lines += markdown_table(
            ["latent", "dimensions", f"active (Cov_x E_q[z] > {usage.threshold})", "KL"],
            [
                [name, u.dims, u.active_units, fmt(u.kl_total, ".3f")]
                for name, u in usage.latents.items()
            ],
        )
        lines.append("")
    return lines


def _classification_markdown(r: EvaluationReport) -> list[str]:
    if not r.classification:
        return []
    return [
        "### Classification",
        "",
        "The guide's q(y | x) of each partially observed node as a classifier: its most "
        "probable class against the data's label.",
        "",
        *markdown_table(
            ["node", "classes", "datapoints", "accuracy", "stderr", "mean log q(label | x)"],
            [
                [
                    c.node,
                    c.categories,
                    c.num_data,
                    fmt(c.accuracy, ".4f"),
                    fmt(c.accuracy_stderr, ".4f"),
                    fmt(c.mean_log_q, ".3f"),
                ]
                for c in r.classification
            ],
        ),  # fmt: skip
        "",
    ]


def _steps_markdown(r: EvaluationReport) -> list[str]:
    if r.steps is None:
        return []
    s, e = r.steps, r.estimand
    t = s.totals
    return [
        "### Per time step",
        "",
        f"Where along the sequences {e.log_p_hat}, the ELBO and the gap come from, from "
        f"K = {s.num_samples} guide samples per sequence. log p̂(x_t | x_<t) is the increment "
        f"of log p̂(x_1:t), each prefix estimated by importance sampling from the same samples; "
        f"the ELBO splits into E_q log p(x_t | z_t) − KL_t. Means over the sequences that have "
        f"step t. Per sequence: {e.log_p_hat} = {fmt(t['log_px'], '.3f')}, ELBO = "
        f"{fmt(t['elbo'], '.3f')}, KL = {fmt(t['kl'], '.3f')}, gap = {fmt(t['gap'], '.3f')}.",
        "",
        *markdown_table(
            [
                "t",
                "log p̂(x_t | x_<t)",
                "ELBO_t",
                "E log p(x_t | z_t)",
                "KL_t",
                "gap_t",
                "sequences",
            ],
            [
                [
                    step,
                    *(fmt(v[i], ".3f") for v in (s.log_px, s.elbo, s.reconstruction, s.kl, s.gap)),
                    s.datapoints[i],
                ]
                for i, step in enumerate(s.steps)
            ],
        ),  # fmt: skip
        "",
    ]


def _usage_lines(usage: UsageSection | None) -> list[str]:
    """``z: 3 of 50 dimensions active``; latents alike (a chain's steps) on one line."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name, u in (usage.latents if usage else {}).items():
        groups.setdefault((u.active_units, u.dims), []).append(name)
    return [
        f"{short_names(names)}{f' ({len(names)} latents)' if len(names) > 1 else ''}: "
        f"{active} of {dims} dimensions active"
        for (active, dims), names in groups.items()
    ]


def evaluation_table(r: EvaluationReport) -> Table:
    """The evaluation as one table: the estimates, then what each requested explanation adds."""
    e, mc = r.estimand, ("mc_stderr", "datapoint_stderr")
    rows = [
        _stats_row(f"{e.log_p_hat}, importance sampling", r.log_px, mc),
        _stats_row("ELBO", r.elbo, mc),
        _stats_row(f"gap ≈ {e.posterior_kl}", r.gap, mc),
    ]
    notes = [
        f"median k̂ {fmt(r.khat_median)}, {r.khat_above} above 0.7, {r.khat_undefined} "
        f"undefined; importance sampling took {r.seconds:.1f} s",
        *notes_of(r),
    ]
    if r.ais:
        a = r.ais
        rows.append(_stats_row(f"{e.log_p_hat}, AIS ({a.num_samples} chains)", a.log_px, mc))
        rows.append(
            [
                "AIS − importance sampling",
                fmt(a.minus_is.mean, "+.3f"),
                "",
                fmt(a.minus_is.stderr, ".3f"),
            ]
        )
        notes.append(
            f"AIS: {a.num_steps} steps, mean acceptance {fmt(a.acceptance_mean)}, {a.seconds:.1f} s"
        )
    if r.decomposition:
        d = r.decomposition
        rows.append(_stats_row("approximation gap", d.approximation_gap, mc))
        rows.append(_stats_row("amortization gap", d.amortization_gap, mc))
        notes.append(
            f"{d.converged} of {r.num_data} refinements converged within {d.max_refine_steps} steps"
        )
        notes += decomposition_warnings(d.unreliable, d.negative_gaps, r.num_data)
    if r.surgery:
        rows += [[*row, ""] for row in surgery_rows(vars(r.surgery), e)]
    notes += _usage_lines(r.latent_usage)
    if r.steps is not None:
        s = r.steps
        worst = max(range(len(s.steps)), key=lambda i: s.gap[i] or 0.0)
        notes.append(
            f"{len(s.steps)} time steps; KL per sequence {fmt(s.totals['kl'], '.3f')}, largest "
            f"gap_t {fmt(s.gap[worst], '.3f')} at t = {s.steps[worst]} (report.md: per time step)"
        )
    for c in r.classification or ():
        rows.append([f"accuracy of q({c.node} | x)", fmt(c.accuracy, ".4f"), "", ""])
        notes.append(f"q({c.node} | x): binomial stderr of the accuracy {c.accuracy_stderr:.4f}")
    which = f"{r.num_data} of the {r.num_test or r.num_data} {r.data} {r.split} datapoints"
    if r.num_test and r.num_data < r.num_test:
        which += f" (a random subset, seed {r.seed})"
    which += _weights(r)
    title = f"Evaluation of {e.log_p()} on {which}, K = {r.num_samples} (nats per datapoint)"
    return Table(title, ["", "mean", "± Monte Carlo", "± over datapoints"], rows, notes)


register_view(
    "Evaluation",
    table=lambda ev: evaluation_table(ev.report),
    line=lambda ev: {
        "estimand": ev.report.estimand.log_p(),
        "num_data": ev.report.num_data,
        "log_px": ev.report.log_px.mean,
        "elbo": ev.report.elbo.mean,
        "gap": ev.report.gap.mean,
    },
    summary=lambda ev: to_json(ev.report),
)

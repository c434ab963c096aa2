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
from ..tables import fmt, markdown_table
from . import plots
from .files import exists, read_json, write_text_atomic

REPORT = "report.json"


def write_training_report(run_dir: Path, vae, dataset, config, history: list[dict]) -> dict:
    """Plots and reports of a finished run; returns the report as a dict."""
    run_dir = Path(run_dir)
    title = f"{Path(vae.model_spec.path).stem} / {Path(vae.guide_spec.path).stem} on {dataset.name}"
    figures = {"elbo": plots.elbo_curves(history, run_dir / "plots" / "elbo.png", title)}
    device = module_device(vae)
    with fork_rng(device):  # report sampling must not change a resumed run
        torch.manual_seed(config.seed)
        if dataset.image_shape is not None:
            figures["samples"] = plots.image_grid(
                vae.sample(64).cpu(),
                dataset.image_shape,
                run_dir / "plots" / "samples.png",
                "samples (mean of p(x | z), z ~ p(z))",
            )
            originals = dataset.test[:16]
            figures["reconstructions"] = plots.image_grid(
                torch.cat([originals, vae.reconstruct(originals.to(device)).cpu()]),
                dataset.image_shape,
                run_dir / "plots" / "reconstructions.png",
                "test images (top) and reconstructions (bottom)",
                columns=16,
            )
        else:
            figures["data_vs_model"] = plots.data_vs_model(
                dataset.test,
                vae.sample(len(dataset.test), mean=False).cpu(),
                run_dir / "plots" / "data_vs_model.png",
                title,
            )

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
    # Keep an evaluation made before a resumed run ended; an evaluation of an earlier
    # checkpoint no longer describes this model. The training report replaces report.json as
    # a whole, so one that cannot be read has no evaluation to keep.
    evaluation = _previous_evaluation(run_dir)
    if evaluation and evaluation.get("checkpoint_epoch") == report["epochs_done"]:
        report["evaluation"] = evaluation
    render_report(run_dir, report)
    return report


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
    headline = _headline(evaluation) if evaluation else []
    if "config" not in r:  # a run stopped before its training report: evaluation only
        body = _evaluation_markdown(evaluation) if evaluation else []
        return "\n".join(["# Report", "", *headline, *body]) + "\n"
    c = r["config"]
    options = "".join(f", {k} = {v:g}" for k, v in c.get("objective_options", {}).items())
    lines = [
        f"# Training report: {Path(r['model']).stem} / {Path(r['guide']).stem} on {r['data']}",
        "",
        r["model_description"],
        "",
        *headline,
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


def _headline(e: dict) -> list[str]:
    """The first lines of a report with an evaluation: log p̂(x), the ELBO, and the gap split."""
    best, source = e["log_px"], "importance sampling"
    if "ais" in e:
        best, source = e["ais"]["log_px"], "AIS"
    gap = None
    if best["mean"] is not None and e["elbo"]["mean"] is not None:
        gap = best["mean"] - e["elbo"]["mean"]
    lines = [
        f"**log p̂(x) = {fmt(best['mean'])}** nats per test datapoint ({source}), "
        f"**ELBO = {fmt(e['elbo']['mean'])}**, gap **{fmt(gap)}**",
    ]
    used = e.get("num_used", e["num_data"])
    if used < e["num_data"]:
        lines[0] += (
            f" (means over {used} of {e['num_data']} datapoints: the others gave non-finite "
            "or imprecise estimates, see below)"
        )
    d = e.get("decomposition")
    if d:
        lines[0] += (
            f" = approximation gap {fmt(d['approximation_gap']['mean'])} (what the guide family "
            f"cannot express) + amortization gap {fmt(d['amortization_gap']['mean'])} (what the "
            f"shared encoder loses)"
        )
    s, usage = e.get("surgery"), e.get("latent_usage")
    if s:
        lines.append(
            f"The KL term, {fmt(s['average_kl'])} nats, is the information about x in z, "
            f"{fmt(s['mutual_information'])} (at most log N = {fmt(s['log_num_data'])}), plus "
            f"{fmt(s['marginal_kl'])} nats by which the aggregate posterior misses the prior."
        )
    if usage:
        active = ", ".join(
            f"{name} {u['active_units']} of {u['dims']}" for name, u in usage["latents"].items()
        )
        lines.append(f"Active latent dimensions: {active}.")
    if e["khat_above_0.7"]:
        lines.append(
            f"Importance sampling is unreliable on {e['khat_above_0.7']} of {e['num_data']} "
            f"datapoints (k̂ > 0.7): their log p̂ is likely too low."
        )
    return ["## In short", "", *[line + "\n" for line in lines], ""]


def _evaluation_markdown(e: dict) -> list[str]:
    def row(label, stats):
        return [label, *(fmt(stats[k], ".3f") for k in ("mean", "mc_stderr", "datapoint_stderr"))]

    proposal = (
        "samples from the prior (naive Monte Carlo)"
        if e.get("proposal") == "prior"
        else "samples from the guide"
    )
    total = e.get("num_test", e["num_data"])
    which = (
        f"{e['num_data']} datapoints"
        if e["num_data"] >= total
        else f"a random subset of {e['num_data']} of its {total} datapoints, seed {e['seed']}"
    )
    used = e.get("num_used", e["num_data"])
    over = f" Means over {used} of {e['num_data']} datapoints." if used < e["num_data"] else ""
    lines = [
        f"## Evaluation on the {e['split']} set ({which})",
        "",
        f"log p̂(x) by importance sampling with K = {e['num_samples']} {proposal}; "
        f"ELBO with {e['elbo_samples']} samples (`{e['elbo_estimator']}`). The gap "
        f"log p̂(x) − ELBO estimates KL(q(z|x) ‖ p(z|x)).{over}",
        "",
        *markdown_table(
            ["nats per datapoint", "mean", "Monte Carlo stderr", "stderr over datapoints"],
            [row("log p̂(x)", e["log_px"]), row("ELBO", e["elbo"]), row("gap", e["gap"])],
        ),
        "",
        *_health_markdown(e),
        f"Median effective sample size {fmt(e['ess_median'], '.1f')} of {e['num_samples']}; median "
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
        *_ais_markdown(e),
        *_decomposition_markdown(e),
        *_surgery_markdown(e),
    ]
    skipped = [f"Plot `{name}` skipped: {why}." for name, why in e.get("plots_skipped", {}).items()]
    return (
        lines
        + [f"![{name}]({path})" for name, path in e["plots"].items()]
        + (["", *skipped] if skipped else [])
    )


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


def health_notes(e: dict) -> list[str]:
    """A line per count of non-finite estimates (estimates with the same count share one), and
    one for lost precision, e.g. ``3 of 1000 datapoints gave a non-finite log p̂(x); excluded
    from the means.``"""
    n = e["num_data"]
    by_count: dict[int, list[str]] = {}
    for name, count in e.get("non_finite", {}).items():
        if count:
            by_count.setdefault(count, []).append(ESTIMATE_NAMES.get(name, name))
    notes = [
        f"{count} of {n} datapoints gave a non-finite {_and(names)}; excluded from the means."
        for count, names in by_count.items()
    ]
    lost = e.get("precision_lost") or {}
    if lost.get("num_data"):
        notes.append(
            f"precision lost on {lost['num_data']} of {n} datapoints: |log w| up to "
            f"{lost['max_abs_log_weight']:.2g} nats, {lost['dtype']} spacing "
            f"{lost['spacing']:.2g} nats there (more than {lost['tolerance']:g} nat); their gap, "
            "ESS and k̂ are rounding noise, not shown, and they are excluded from the means."
        )
    return notes


def _and(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _health_markdown(e: dict) -> list[str]:
    """The section on non-finite estimates and lost precision; nothing when there were none."""
    notes = e.get("notes", health_notes(e))
    if not notes:
        return []
    return [
        "### Non-finite estimates and precision loss",
        "",
        *[f"- {note}" for note in notes],
        "",
    ]


def _ais_markdown(e: dict) -> list[str]:
    a = e.get("ais")
    if not a:
        return []
    return [
        "### Annealed importance sampling",
        "",
        f"{a['num_samples']} chains per datapoint, {a['num_steps']} intermediate densities "
        f"(sigmoidal schedule), HMC transitions (mean acceptance {fmt(a['acceptance_mean'])}): "
        f"log p̂(x) = {fmt(a['log_px']['mean'], '.3f')} ± {fmt(a['log_px']['mc_stderr'], '.3f')}, "
        f"{fmt(a['minus_is']['mean'], '+.3f')} ± {fmt(a['minus_is']['stderr'], '.3f')} nats "
        f"against importance sampling, datapoint by datapoint; {a['seconds']:.1f} s (importance "
        f"sampling: {e['seconds']:.1f} s).",
        "",
    ]


def _decomposition_markdown(e: dict) -> list[str]:
    d = e.get("decomposition")
    if not d:
        return []

    def row(label, stats):
        return [label, fmt(stats["mean"], ".3f"), fmt(stats["mc_stderr"], ".3f")]

    return [
        "### The gap, decomposed (Cremer et al. 2018)",
        "",
        "q refined for each datapoint from the encoder's output (same family); approximation "
        f"gap = log p̂(x) ({d['log_px_from'].upper()}) − refined ELBO, amortization gap = refined "
        f"ELBO − ELBO. {d['converged']} of {e['num_data']} refinements converged (no datapoint "
        f"improving by 0.001 nats per 100 steps) within {d['max_refine_steps']} steps; "
        f"{d['seconds']:.1f} s.",
        "",
        *markdown_table(
            ["nats per datapoint", "mean", "Monte Carlo stderr"],
            [
                row("refined ELBO", d["elbo_refined"]),
                row("approximation gap", d["approximation_gap"]),
                row("amortization gap", d["amortization_gap"]),
            ],
        ),
        "",
    ]


def _surgery_markdown(e: dict) -> list[str]:
    s, usage = e.get("surgery"), e.get("latent_usage")
    if not s:
        return []
    rows = [
        [
            "average KL(q(z|x) ‖ p(z))",
            fmt(s["average_kl"], ".3f"),
            fmt(s["average_kl_stderr"], ".3f"),
        ],
        [
            "mutual information I[x; z]",
            fmt(s["mutual_information"], ".3f"),
            fmt(s["mutual_information_stderr"], ".3f"),
        ],
        [
            "marginal KL(q̄(z) ‖ p(z))",
            fmt(s["marginal_kl"], ".3f"),
            fmt(s["marginal_kl_stderr"], ".3f"),
        ],
        ["log N", fmt(s["log_num_data"], ".3f"), ""],
    ]
    lines = [
        "### ELBO surgery and latent usage",
        "",
        "The average KL splits into the mutual information between datapoint index and code "
        "(at most log N) and the KL of the aggregate posterior q̄ to the prior (Hoffman & "
        f"Johnson 2016), from {s['num_samples']} draws per datapoint.",
        "",
        *markdown_table(["nats per datapoint", "value", "Monte Carlo stderr"], rows),
        "",
    ]
    if usage:
        lines += markdown_table(
            ["latent", "dimensions", f"active (Cov_x E_q[z] > {usage['threshold']})", "KL"],
            [
                [name, u["dims"], u["active_units"], fmt(u["kl_total"], ".3f")]
                for name, u in usage["latents"].items()
            ],
        )
        lines.append("")
    return lines

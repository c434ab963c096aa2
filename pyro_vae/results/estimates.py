"""How the estimates of log p(x) and the ELBO are shown: :class:`LogLikelihood` (importance
sampling, AIS), :class:`ElboEstimate`, :class:`ElboGap` and :class:`BDMC`.

Each row names its estimand (``log p̂(x)``, ``log p̂(x, y)``, ``log p̂(y | c)``); means are over
the result's usable datapoints, and the rows that say which datapoints were left out, and why,
appear only when some were.
"""

from __future__ import annotations

import torch

from .stats import KhatCounts, Stats, count_non_finite, mean_stderr
from .tables import Table, fmt, fmt_pm
from .view import register_view


def _float(values) -> float:
    return values.double().mean().item() if values.numel() else float("nan")


def _exclusions(result, values: torch.Tensor, label: str) -> list[list]:
    """Rows for the datapoints a mean leaves out: non-finite estimates and lost precision."""
    rows = []
    bad = count_non_finite(values)
    if bad:
        rows.append([f"non-finite {label}", bad])
    lost = int(getattr(result, "precision_lost", torch.zeros(0, dtype=torch.bool)).sum())
    if lost:
        rows.append(["precision lost (|log w| too large for its dtype)", lost])
    used = int(result.usable.sum())
    if used < result.num_data:
        rows.append(["datapoints in the means", used])
    if getattr(result, "particles", "vectorized") != "vectorized":
        rows.append(["particles", "K copies of the data rows (the model cannot broadcast)"])
    return rows


# -- LogLikelihood ---------------------------------------------------------------------------


def _ll_summary(r) -> dict:
    used = r.usable
    ess = r.ess[used]
    return {
        "log_px": r.mean,
        "stderr": r.mean_stderr,
        "ess_median": ess.median().item() if ess.numel() else None,
        "ess_mean": _float(ess),
        **r.khat_counts.to_dict(),
        "num_samples": r.num_samples,
        "num_data": r.num_data,
        "num_used": int(used.sum()),
        "method": r.method.value,
        "particles": r.particles,
        "non_finite": count_non_finite(r.log_px),
        "estimand": r.estimand.to_dict(),
    }


def _ll_details(r) -> dict:
    per_datapoint = {"log_px": r.log_px, "stderr": r.stderr, "ess": r.ess}
    if r.khat is not None:
        per_datapoint["khat"] = r.khat
    curve = {
        k: {"log_px": log_px, "stderr": stderr}
        for k, (log_px, stderr) in (r.by_num_samples or {}).items()
    }
    return {
        "per_datapoint": per_datapoint,
        "by_num_samples": curve or None,
        "details": r.details,
    }


def _ll_table(r) -> Table:
    khat = r.khat_counts
    name = r.estimand.log_p_hat
    rows = [
        ["datapoints", r.num_data],
        [f"{name}, mean ± MC stderr", fmt_pm(r.mean, r.mean_stderr)],
        ["ESS, mean (of K)", fmt(_float(r.ess[r.usable]), ".1f")],
        ["ESS, min", fmt(r.ess[r.usable].min().item() if r.usable.any() else None, ".1f")],
        ["Pareto k̂, median", fmt(khat.median, ".3f")],
        ["k̂ > 0.7 (unreliable)", fmt(khat.above, "d")],
    ]
    if khat.undefined:
        rows.append(["k̂ undefined", khat.undefined])
    rows += _exclusions(r, r.log_px, name)
    for k, (log_px, stderr) in (r.by_num_samples or {}).items():
        if k != r.num_samples:
            keep = r.usable & torch.isfinite(log_px)
            rows.append(
                [f"{name}, first {k}", fmt_pm(_float(log_px[keep]), mean_stderr(stderr[keep]))]
            )
    title = (
        f"{name} by {r.method.title}: K = {r.num_samples} {r.method.draws} per datapoint"
        + (f", {r.details['num_steps']} steps" if "num_steps" in r.details else "")
        + "; nats"
    )
    if "acceptance" in r.details:
        rows.append(["HMC acceptance, mean", fmt(r.details["acceptance"].mean().item())])
    return Table(title, ["", ""], rows)


register_view(
    "LogLikelihood",
    table=_ll_table,
    line=lambda r: {
        "estimand": r.estimand.log_p(),
        "num_data": r.num_data,
        "num_samples": r.num_samples,
        "method": r.method.value,
        "mean": r.mean,
        "mean_stderr": r.mean_stderr,
    },
    summary=_ll_summary,
    details=_ll_details,
)


# -- ElboEstimate ----------------------------------------------------------------------------


def _elbo_table(r) -> Table:
    rows = [
        ["datapoints", r.num_data],
        ["samples per datapoint", r.num_samples],
        ["ELBO, mean ± MC stderr", fmt_pm(r.mean, r.mean_stderr)],
        *_exclusions(r, r.elbo, "ELBO"),
    ]
    return Table(
        f"ELBO, a lower bound on {r.estimand.log_p()} (nats per datapoint)", ["", ""], rows
    )


register_view(
    "ElboEstimate",
    table=_elbo_table,
    line=lambda r: {
        "estimand": r.estimand.log_p(),
        "num_data": r.num_data,
        "num_samples": r.num_samples,
        "mean": r.mean,
        "mean_stderr": r.mean_stderr,
    },
    summary=lambda r: {
        "elbo": r.mean,
        "elbo_stderr": r.mean_stderr,
        "num_samples": r.num_samples,
        "num_data": r.num_data,
        "num_used": int(r.usable.sum()),
        "non_finite": count_non_finite(r.elbo),
        "estimand": r.estimand.to_dict(),
    },
    details=lambda r: {"per_datapoint": {"elbo": r.elbo, "stderr": r.stderr}},
)


# -- ElboGap ---------------------------------------------------------------------------------


def _gap_stats(r) -> dict[str, Stats]:
    """ELBO, log p̂ and gap over the datapoints usable in both estimates."""
    ll, bound, keep = r.log_likelihood, r.elbo, r.usable
    return {
        "elbo": Stats.of(bound.elbo, bound.stderr, keep),
        "log_px": Stats.of(ll.log_px, ll.stderr, keep),
        "gap": Stats.of(r.gap, r.stderr, keep),
    }


def _gap_summary(r) -> dict:
    s = _gap_stats(r)
    return {
        "elbo": s["elbo"].mean,
        "elbo_stderr": s["elbo"].mc_stderr,
        "log_px": s["log_px"].mean,
        "log_px_stderr": s["log_px"].mc_stderr,
        "gap": s["gap"].mean,
        "gap_stderr": s["gap"].mc_stderr,
        "estimand": r.estimand.to_dict(),
    }


def _gap_details(r) -> dict:
    ll = r.log_likelihood
    khat = KhatCounts.of(None if ll.khat is None else ll.khat[r.usable])
    per_datapoint = {
        "elbo": r.elbo.elbo,
        "elbo_stderr": r.elbo.stderr,
        "log_px": ll.log_px,
        "log_px_stderr": ll.stderr,
        "gap": r.gap,
        "gap_stderr": r.stderr,
    }
    return {
        "num_data": r.num_data,
        "num_used": int(r.usable.sum()),
        "num_samples": ll.num_samples,
        "elbo_samples": r.elbo.num_samples,
        **khat.to_dict(),
        "per_datapoint": per_datapoint,
    }


def _gap_table(r) -> Table:
    s, ll, e = _gap_stats(r), r.log_likelihood, r.estimand
    rows = [
        [e.log_p_hat, fmt_pm(s["log_px"].mean, s["log_px"].mc_stderr), f"K = {ll.num_samples}"],
        ["ELBO", fmt_pm(s["elbo"].mean, s["elbo"].mc_stderr), f"{r.elbo.num_samples} draws"],
        ["gap", fmt_pm(s["gap"].mean, s["gap"].mc_stderr), f"≈ {e.posterior_kl}"],
    ]
    unreliable = KhatCounts.of(None if ll.khat is None else ll.khat[r.usable]).above
    notes = [
        f"Pareto k̂ > 0.7 ({e.log_p_hat} unreliable) on {fmt(unreliable, 'd')} of "
        f"{r.num_data} datapoints"
    ]
    bad = count_non_finite(r.gap)
    if bad:
        notes.append(f"{bad} of {r.num_data} datapoints have a non-finite gap")
    used = int(r.usable.sum())
    if used < r.num_data:
        notes.append(f"means over the {used} of {r.num_data} datapoints usable in both estimates")
    title = f"ELBO gap over {r.num_data} datapoints (nats per datapoint)"
    return Table(title, ["", "mean ± MC stderr", ""], rows, notes, align="lrl")


register_view(
    "ElboGap",
    table=_gap_table,
    line=lambda r: {
        "estimand": r.estimand.log_p(),
        "num_data": r.num_data,
        "elbo": _gap_stats(r)["elbo"].mean,
        "log_px": _gap_stats(r)["log_px"].mean,
        "gap": r.mean,
        "gap_stderr": r.mean_stderr,
    },
    summary=_gap_summary,
    details=_gap_details,
)


# -- BDMC ------------------------------------------------------------------------------------


def _bdmc_summary(r) -> dict:
    return {
        "lower": r.lower.mean().item(),
        "upper": r.upper.mean().item(),
        "gap": r.gap.mean().item(),
        "num_data": len(r.lower),
        "num_samples": r.num_samples,
        "num_steps": r.num_steps,
        "estimand": r.estimand.to_dict(),
    }


def _bdmc_table(r) -> Table:
    rows = [
        ["upper bound (reverse AIS)", fmt_pm(r.upper.mean().item(), mean_stderr(r.upper_stderr))],
        ["lower bound (forward AIS)", fmt_pm(r.lower.mean().item(), mean_stderr(r.lower_stderr))],
        ["gap (upper − lower)", fmt_pm(r.gap.mean().item(), mean_stderr(r.gap_stderr))],
    ]
    return Table(
        f"BDMC on {len(r.lower)} simulated datapoints: {r.num_samples} chains, "
        f"{r.num_steps} steps ({r.estimand.log_p()}, nats per datapoint)",
        ["", "mean ± MC stderr"],
        rows,
        [
            f"the bounds sandwich {r.estimand.log_p()} in expectation; a small gap: AIS is close "
            "to exact"
        ],
    )


register_view(
    "BDMC",
    table=_bdmc_table,
    line=lambda r: {
        k: v
        for k, v in _bdmc_summary(r).items()
        if k in ("num_data", "num_samples", "num_steps", "lower", "upper", "gap")
    },
    summary=_bdmc_summary,
    # Not the simulated data and latents: inputs, and large.
    details=lambda r: {
        "lower_stderr": mean_stderr(r.lower_stderr),
        "upper_stderr": mean_stderr(r.upper_stderr),
        "per_datapoint": {
            "lower": r.lower,
            "upper": r.upper,
            "lower_stderr": r.lower_stderr,
            "upper_stderr": r.upper_stderr,
            "gap": r.gap,
        },
    },
)

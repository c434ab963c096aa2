"""How the explanations of the gap are shown: :class:`GapDecomposition` (approximation and
amortization gaps), :class:`ElboSurgery` (mutual information and marginal KL) and
:class:`LatentUsage` (KL per dimension, active units). Every KL is labelled with the densities
the result's estimand names: KL against p(z), or against p(z | c) for a conditional prior.
"""

from __future__ import annotations

from .estimand import short_names
from .tables import Table, fmt
from .view import register_view

#: The numbers of a gap decomposition, in the order they are shown.
DECOMPOSITION = ("log_px", "elbo_refined", "elbo", "gap", "approximation_gap", "amortization_gap")


def _decomposition_summary(r) -> dict:
    stats = r.stats()
    return {
        **{n: {"mean": stats[n].mean, "mc_stderr": stats[n].mc_stderr} for n in DECOMPOSITION},
        "converged": int(r.converged.sum()),
        "num_data": r.num_data,
        "num_used": int(r.usable.sum()),
        "unreliable": int(r.unreliable.sum()),
        "negative_gaps": int(r.negative.sum()),
        "refine_steps": r.refine_steps,
        "method": r.method.value,
        "estimand": r.estimand.to_dict(),
    }


def _decomposition_table(r) -> Table:
    stats = r.stats()
    rows = [[n, fmt(stats[n].mean, ".3f"), fmt(stats[n].mc_stderr, ".3f")] for n in DECOMPOSITION]
    used = int(r.usable.sum())
    notes = [
        f"log_px = {r.estimand.log_p_hat} by {r.method.value.upper()}; gap = approximation_gap "
        "+ amortization_gap",
        f"refined for {r.refine_steps} steps; {int(r.converged.sum())} of {r.num_data} converged",
    ]
    notes += decomposition_warnings(int(r.unreliable.sum()), int(r.negative.sum()), r.num_data)
    if used < r.num_data:
        notes.append(f"means over the {used} of {r.num_data} datapoints usable")
    return Table(
        f"Gap decomposition of {r.num_data} datapoints (nats per datapoint)",
        ["", "mean", "MC stderr"],
        rows,
        notes,
    )


def decomposition_warnings(unreliable: int, negative: int, num_data: int) -> list[str]:
    """What makes a decomposition untrustworthy, said where it happened."""
    notes = []
    if unreliable:
        notes.append(
            f"Pareto k̂ > 0.7 on {unreliable} of {num_data} datapoints: their importance-sampled "
            "log p̂ is too low, and so their approximation gap; left out of the means (AIS, "
            "method='ais', does not have this bias)"
        )
    if negative:
        notes.append(
            f"a gap below −3 standard errors on {negative} of {num_data} datapoints: log p̂ "
            "too low, or a refinement that did not converge (more max_steps); read those "
            "datapoints' gaps with care"
        )
    return notes


register_view(
    "GapDecomposition",
    table=_decomposition_table,
    line=lambda r: {
        "num_data": r.num_data,
        "gap": r.stats()["gap"].mean,
        "approximation_gap": r.stats()["approximation_gap"].mean,
        "amortization_gap": r.stats()["amortization_gap"].mean,
        "converged": int(r.converged.sum()),
        "method": r.method.value,
    },
    summary=_decomposition_summary,
    details=lambda r: {
        "per_datapoint": {
            "log_px": r.log_px,
            "log_px_stderr": r.log_px_stderr,
            "elbo": r.elbo,
            "elbo_stderr": r.elbo_stderr,
            "elbo_refined": r.elbo_refined,
            "elbo_refined_stderr": r.elbo_refined_stderr,
            "gap": r.gap,
            "approximation_gap": r.approximation_gap,
            "amortization_gap": r.amortization_gap,
            "converged": r.converged,
        }
    },
)


# -- ELBO surgery ----------------------------------------------------------------------------

SURGERY = (
    "average_kl",
    "average_kl_stderr",
    "marginal_kl",
    "marginal_kl_stderr",
    "mutual_information",
    "mutual_information_stderr",
    "log_num_data",
    "num_data",
    "num_samples",
    "components",
    "aggregate_stderr",
    "aggregate_bias",
)


def aggregate_note(s: dict) -> list[str]:
    """How the aggregate posterior's density was found, where not from every datapoint: the
    shortcut's error on the mutual information (the marginal KL carries its opposite)."""
    m, n = s.get("components"), s["num_data"]
    if m is None or m >= n:
        return []
    return [
        f"q̄ from {m} of {n} random components besides each draw's own and its nearest "
        f"(O(N·M)); bias removed from the mutual information: {fmt(-s['aggregate_bias'], '+.4f')}"
        f" (jackknife); the sampled components' spread: ±{fmt(s['aggregate_stderr'], '.4f')}, "
        "too small where a few components the sample missed carry the sum (the marginal KL "
        "errs by the opposite; the exact sum is --surgery-components all)"
    ]


def surgery_rows(s: dict, estimand, log_n: str | None = None) -> list[list]:
    """The rows of a surgery table from its summary numbers (the report's too); ``log_n``
    labels the last row (default: log N, the most the mutual information can be)."""

    def row(label, value, stderr):
        return [label, fmt(value, ".3f"), fmt(stderr, ".3f") if stderr is not ... else ""]

    return [
        row(f"average {estimand.prior_kl}", s["average_kl"], s["average_kl_stderr"]),
        row(
            f"= mutual information {estimand.information}",
            s["mutual_information"],
            s["mutual_information_stderr"],
        ),
        row(f"+ marginal {estimand.aggregate_kl}", s["marginal_kl"], s["marginal_kl_stderr"]),
        row(
            f"log N (the most {estimand.information} can be)" if log_n is None else log_n,
            s["log_num_data"],
            ...,
        ),
    ]


register_view(
    "ElboSurgery",
    table=lambda r: Table(
        f"ELBO surgery over {r.num_data} datapoints ({r.num_samples} draws each; nats)",
        ["", "value", "MC stderr"],
        surgery_rows({k: getattr(r, k) for k in SURGERY}, r.estimand),
        [
            *aggregate_note({k: getattr(r, k) for k in SURGERY}),
            *([f"summed out of every density: {', '.join(r.summed_out)}"] if r.summed_out else []),
        ],
    ),
    line=lambda r: {
        "num_data": r.num_data,
        "num_samples": r.num_samples,
        "average_kl": r.average_kl,
        "mutual_information": r.mutual_information,
        "marginal_kl": r.marginal_kl,
    },
    summary=lambda r: {
        **{k: getattr(r, k) for k in SURGERY},
        "estimand": r.estimand.to_dict(),
        "summed_out": list(r.summed_out),
    },
    details=lambda r: {"per_datapoint": {"kl": r.kl_per_datapoint}},
)


# -- latent usage ----------------------------------------------------------------------------


def _usage_summary(r) -> dict:
    latents = {
        name: {
            "dims": len(r.activity[name]),
            "active_units": r.active_units[name],
            "kl_total": r.kl_total(name),
            "kl_per_dim": r.kl_per_dim[name].tolist() if name in r.kl_per_dim else None,
            "activity": r.activity[name].tolist(),
        }
        for name in r.activity
    }
    return {"threshold": r.threshold, "latents": latents, "notes": r.notes}


def grouped_notes(notes: dict[str, str]) -> list[str]:
    """``"z_1, …, z_28: what"``: each distinct note once, with the latents it concerns."""
    groups: dict[str, list[str]] = {}
    for name, note in notes.items():
        groups.setdefault(note, []).append(name)
    return [f"{short_names(names)}: {note}" for note, names in groups.items()]


def _usage_table(r) -> Table:
    rows = [
        [name, len(r.activity[name]), r.active_units[name], fmt(r.kl_total(name), ".3f")]
        for name in r.activity
    ]
    return Table(
        f"Latent usage (active: Cov_x E_q[z_j] > {r.threshold}; KL against {r.estimand.prior})",
        ["latent", "dims", "active", "KL (nats)"],
        rows,
        grouped_notes(r.notes)
        + (
            [f"given the guide's draws of {', '.join(r.conditioned_on)}"]
            if r.conditioned_on
            else []
        ),
    )


register_view(
    "LatentUsage",
    table=_usage_table,
    line=lambda r: {"active_units": r.active_units, "threshold": r.threshold},
    summary=_usage_summary,
)

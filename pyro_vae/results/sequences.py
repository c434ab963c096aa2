"""How per-time-step estimates of a sequence pair read (:class:`StepwiseEstimate`): one row
per step with the means over the datapoints that have it, and the totals they add up to."""

from __future__ import annotations

from .tables import Table, fmt
from .view import register_view


def _stepwise_table(r) -> Table:
    columns = r.table_rows
    *means, counts = columns.values()  # the per-step means, then how many datapoints have it
    rows = [
        [step, *(fmt(float(values[i]), ".3f") for values in means), int(counts[i])]
        for i, step in enumerate(r.steps)
    ]
    totals = r.totals()
    notes = [
        f"per sequence: {r.estimand.log_p_hat} = {totals['log_px']:.3f}, ELBO = "
        f"{totals['elbo']:.3f}, KL = {totals['kl']:.3f}, gap = {totals['gap']:.3f} "
        f"(K = {r.num_samples} guide samples per sequence)",
        "log p̂(x_t | x_<t): the increment of log p̂(x_1:t), each prefix estimated by "
        "importance sampling from the same samples; means over the sequences that have step t",
    ]
    if 0 in r.steps:
        notes.append("step 0: sites with no step in their names (static latents)")
    return Table("Per time step (means over datapoints)", ["t", *columns], rows, notes)


def _stepwise_summary(r) -> dict:
    return {
        **r.totals(),
        "num_data": int(r.present.shape[0]),
        "num_samples": r.num_samples,
        "estimand": r.estimand.to_dict(),
    }


def _stepwise_details(r, **options) -> dict:
    return {
        "steps": list(r.steps),
        "by_step": {name: values.tolist() for name, values in r.table_rows.items()},
    }


register_view(
    "StepwiseEstimate",
    table=_stepwise_table,
    line=lambda r: {**r.totals(), "steps": len(r.steps)},
    summary=_stepwise_summary,
    details=_stepwise_details,
)

"""How a training run's result is shown: :class:`TrainResult` (the last epoch's ELBOs and where
the run is kept)."""

from __future__ import annotations

from .tables import Table, fmt
from .view import register_view


def _summary(r) -> dict:
    final = r.final
    return {
        "epochs": final.get("epoch", 0),
        "objective": r.config.objective.label,
        "train_elbo": final.get("train_elbo"),
        "test_elbo": final.get("test_elbo"),
        "seconds": sum(row.get("seconds", 0.0) for row in r.history),
        "data": r.config.data,
        "run_dir": None if r.run_dir is None else str(r.run_dir),
    }


def _table(r) -> Table:
    s = _summary(r)
    rows = [
        ["epochs", s["epochs"]],
        ["objective", s["objective"]],
        ["train ELBO", fmt(s["train_elbo"])],
        ["test ELBO", fmt(s["test_elbo"])],
        ["training time", f"{s['seconds']:.1f} s"],
        ["run directory", s["run_dir"] or "– (not kept)"],
    ]
    return Table(f"Training on {s['data']} (nats per datapoint)", ["", ""], rows)


register_view(
    "TrainResult",
    table=_table,
    line=lambda r: {k: v for k, v in _summary(r).items() if k != "seconds"},
    summary=_summary,
    details=lambda r: {"history": r.history},
)

"""The checkpoint chosen by the validation ELBO, and early stopping.

A run with a validation split (:mod:`pyro_vae.data.validation`) records ``valid_elbo`` every
epoch. Beside the last checkpoint (``checkpoint.safetensors``, the state training continues
from) it keeps ``best.safetensors``: the weights of the epoch with the highest validation ELBO
so far, the checkpoint papers report test numbers of (``pyro-vae evaluate --checkpoint best``).
With ``early_stop = P`` training ends once P epochs in a row have not improved on that best.

Both are functions of the run's history (its metrics, committed with every checkpoint), so a
resumed run keeps and stops exactly as an uninterrupted one. The best weights are written
after the checkpoint that commits their epoch; a run killed between the two writes has them
restored from that checkpoint when it resumes (:func:`repair_best`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError, PyroVaeError
from .checkpoint import Checkpoint, save_checkpoint

BEST = "best.safetensors"

#: The checkpoints of a run by the name ``--checkpoint`` gives them.
CHECKPOINTS = {"last": "checkpoint.safetensors", "best": BEST}


def best_epoch(history: list[dict]) -> int | None:
    """The epoch with the highest validation ELBO (the earliest of equals); None without one."""
    scored = [r for r in history if "valid_elbo" in r]
    if not scored:
        return None
    return max(scored, key=lambda r: (r["valid_elbo"], -r["epoch"]))["epoch"]


def stopped_early(history: list[dict], patience: int | None) -> int | None:
    """The epoch training stopped after under early stopping with ``patience``: the last one
    once ``patience`` epochs have passed without a new best; None while it goes on."""
    best = best_epoch(history)
    if patience is None or best is None or not history:
        return None
    last = history[-1]["epoch"]
    return last if last - best >= patience else None


def keep_best(path: Path, module: torch.nn.Module, history: list[dict]) -> None:
    """Write ``module``'s weights to ``path`` if the last epoch of ``history`` is the best."""
    if history and best_epoch(history) == history[-1]["epoch"]:
        record = history[-1]
        info = {"epoch": record["epoch"], "valid_elbo": record["valid_elbo"]}
        save_checkpoint(path, module, info=info)


def repair_best(path: Path, module: torch.nn.Module, history: list[dict]) -> None:
    """Restore the best weights from ``module`` (just loaded from the checkpoint of the last
    epoch of ``history``) where that epoch is the best and ``path`` does not hold it: the
    run was stopped between writing its checkpoint and its best weights."""
    if not history or best_epoch(history) != history[-1]["epoch"]:
        return
    try:
        held = Checkpoint(path).epoch if path.exists() else None
    except CheckpointError:
        held = None
    if held != history[-1]["epoch"]:
        keep_best(path, module, history)


def checkpoint_path(run_dir: str | Path, which: str) -> Path:
    """The file of the run's checkpoint ``which`` ("last" or "best"); a refusal naming the
    option where there is none such."""
    if which not in CHECKPOINTS:
        raise PyroVaeError(f"--checkpoint {which!r}: choose one of {list(CHECKPOINTS)}")
    path = Path(run_dir) / CHECKPOINTS[which]
    if which == "best" and not path.exists():
        raise PyroVaeError(
            f"--checkpoint best: {path} does not exist; only a run trained with a validation "
            f"split (--validation) keeps its best checkpoint"
        )
    return path

"""Checkpoints: one safetensors file with the weights, the optimizer state and the RNG states.

The metadata carries a SHA-256 of every tensor's bytes, checked on every load, so a file
damaged after it was written (flipped bits, a truncated copy) is refused instead of loaded, and
the weights are checked to be finite. It also carries the run's metrics up to the checkpoint's
epoch: the checkpoint is the one place a run's state is committed, and ``metrics.jsonl`` is
rebuilt from it.

Every tensor is saved from the CPU, so a checkpoint does not depend on the device it was
written on; ``load_state_dict`` copies weights and optimizer state onto the model's device.

safetensors stores only tensors and a string → string metadata table, so loading a checkpoint
can never execute code (unlike pickle). The file is written to a temporary name and renamed into
place, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError
from .files import atomic_path

FORMAT = "pyro_vae.checkpoint/1"


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, slots in state["state"].items():
        for slot, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim/{idx}/{slot}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}/{slot}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, idx, slot = key.split("/", 2)
        state.setdefault(int(idx), {})[slot] = value
    for key, value in meta["scalars"].items():
        idx, slot = key.split("/", 1)
        state.setdefault(int(idx), {})[slot] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    info: dict | None = None,
    objective: torch.nn.Module | None = None,
) -> None:
    """Write ``module``'s weights (and optionally optimizer, RNG states, JSON ``info``, and
    the ``objective``'s own trained module: NVIL's baseline)."""
    path = Path(path)
    tensors = {
        f"{prefix}/{k}": v.detach().cpu().contiguous().clone()
        for prefix, owner in (("model", module), ("objective", objective))
        if owner is not None
        for k, v in owner.state_dict().items()
    }
    meta = {"format": FORMAT, "info": json.dumps(info or {})}
    if optimizer is not None:
        optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
        tensors.update(optim_tensors)
        meta["optimizer"] = json.dumps(optim_meta)
    for name, state in (rng or {}).items():
        tensors[f"rng/{name}"] = state.cpu().clone()
    meta["sha256"] = tensors_digest(tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # hashed in place, no copy
    return digest.hexdigest()


class Checkpoint:
    """A loaded checkpoint: ``model`` weights, ``optimizer`` state or None, ``rng``, ``info``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such checkpoint")
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
            if meta.get("format") != FORMAT:
                raise ValueError(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
            self.info = json.loads(meta.get("info", "{}"))
            optim_meta = json.loads(meta["optimizer"]) if "optimizer" in meta else None
            if not isinstance(self.info, dict):
                raise ValueError("its info is not a JSON object")
            epoch = self.info.get("epoch", 0)
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise ValueError(f"its epoch is {epoch!r}, not a whole number")
        except Exception as e:  # safetensors raises several types for a damaged file
            raise CheckpointError(
                f"{self.path}: not a readable pyro_vae checkpoint ({e})"
            ) from None
        # Checkpoints written before checksums were recorded load without the check.
        if "sha256" in meta and tensors_digest(tensors) != meta["sha256"]:
            raise CheckpointError(
                f"{self.path}: damaged: its tensors no longer match the checksum written with "
                f"them; restore it from a copy (the run cannot continue from this file)"
            )
        for key, value in tensors.items():
            weight = key.startswith(("model/", "objective/")) and value.is_floating_point()
            if weight and not torch.isfinite(value).all():
                raise CheckpointError(
                    f"{self.path}: weight '{key.split('/', 1)[1]}' holds NaN or infinite "
                    f"values; the run diverged before this checkpoint was written"
                )
        self.model = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
        #: The objective's own weights (NVIL's baseline), empty where it has none.
        self.objective = {k[10:]: v for k, v in tensors.items() if k.startswith("objective/")}
        self.rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng/")}
        optim = {k: v for k, v in tensors.items() if k.startswith("optim/")}
        self.optimizer = _unflatten_optimizer(optim, optim_meta) if optim_meta else None

    @property
    def epoch(self) -> int:
        """The epoch the checkpoint was written after (0: before training)."""
        return int(self.info.get("epoch", 0))

    @property
    def metrics(self) -> list[dict] | None:
        """The run's metrics up to :attr:`epoch`, one record per epoch, if the checkpoint
        carries them (checkpoints of older versions do not)."""
        records = self.info.get("metrics")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            return None
        return records

    def load_into(self, module: torch.nn.Module, part: str = "model") -> None:
        """Copy the weights into ``module``; a mismatch names the checkpoint and the keys.
        ``part="objective"``: the objective's own module's weights instead of the model's."""
        weights = getattr(self, part)
        missing = set(module.state_dict()) - set(weights)
        unexpected = set(weights) - set(module.state_dict())
        if missing or unexpected:
            raise CheckpointError(
                f"{self.path}: does not match the {part} (missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]})"
            )
        try:
            module.load_state_dict(weights)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[-1].strip()
            raise CheckpointError(f"{self.path}: does not match the {part} ({first})") from None

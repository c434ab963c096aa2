"""The files of a run directory, read and written (writes are atomic), and loading a trained run.

A run directory holds ``model.toml`` and ``guide.toml`` (the specs as given), ``config.json``,
``checkpoint.safetensors`` (written at the end of every epoch), ``metrics.jsonl`` (one line per
epoch), and, at the end, ``report.json``, ``report.md`` and ``plots/*.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data import Dataset
from ..devices import resolve_device
from ..errors import CheckpointError, PyroVaeError
from ..model.latent_model import LatentModel
from ..spec.parse import parse_guide, parse_model
from .checkpoint import Checkpoint
from .config import TrainConfig
from .files import write_text_atomic

CONFIG, CHECKPOINT, METRICS = "config.json", "checkpoint.safetensors", "metrics.jsonl"


class RunDir:
    """Reads and writes the files of a run directory; writes are atomic."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(self.path / name, text)

    def create(self, vae: LatentModel, config: TrainConfig, dataset: Dataset) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            raise PyroVaeError(
                f"{self.path}: run directory exists and is not empty; resume it with --resume "
                f"or choose another --out"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_text("model.toml", vae.model_spec.text)
        self.write_text("guide.toml", vae.guide_spec.text)
        meta = {
            "config": config.to_dict(),
            "data_shape": list(vae.data_shape),
            "image_shape": list(dataset.image_shape or vae.image_shape or []) or None,
            "model_spec": vae.model_spec.path,
            "guide_spec": vae.guide_spec.path,
        }
        self.write_text(CONFIG, json.dumps(meta, indent=2) + "\n")

    def update_config(self, config: TrainConfig) -> None:
        """Record changed settings (``resume`` with other epochs or lr) in ``config.json``."""
        meta = self.read_config()[1]
        meta["config"] = config.to_dict()
        self.write_text(CONFIG, json.dumps(meta, indent=2) + "\n")

    def read_config(self) -> tuple[TrainConfig, dict]:
        path = self.path / CONFIG
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            config = TrainConfig.from_dict(meta["config"])
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing; {self.path} is not a run directory") from None
        except (ValueError, KeyError, TypeError, PyroVaeError) as e:
            raise CheckpointError(f"{path}: unreadable run configuration ({e})") from None
        return config, meta

    def build(self) -> tuple[LatentModel, TrainConfig]:
        """Rebuild the model from the run's own spec copies (not the files it came from)."""
        config, meta = self.read_config()
        model = parse_model(
            (self.path / "model.toml").read_text(encoding="utf-8"), self.path / "model.toml"
        )
        guide = parse_guide(
            (self.path / "guide.toml").read_text(encoding="utf-8"), self.path / "guide.toml"
        )
        return LatentModel(model, guide, meta["image_shape"] or meta["data_shape"]), config

    def append_metrics(self, record: dict) -> None:
        with open(self.path / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self, up_to_epoch: int | None = None) -> list[dict]:
        path = self.path / METRICS
        if not path.exists():
            return []
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                raise CheckpointError(f"{path}: line {number} is not JSON") from None
        return [r for r in records if up_to_epoch is None or r["epoch"] <= up_to_epoch]


def checkpoint_epoch(run_dir: str | Path) -> int:
    """The epoch the run's checkpoint was written after."""
    return int(Checkpoint(Path(run_dir) / CHECKPOINT).info.get("epoch", 0))


def run_metadata(run_dir: str | Path) -> dict:
    """``config.json`` of a run: settings, data shape, image shape, spec origins."""
    return RunDir(run_dir).read_config()[1]


def load_run(run_dir: str | Path, device=None) -> tuple[LatentModel, TrainConfig]:
    """The trained model of a run directory, with its training configuration; on ``device``
    (:mod:`pyro_vae.devices`; default the CPU)."""
    run = RunDir(run_dir)
    vae, config = run.build()
    Checkpoint(run.path / CHECKPOINT).load_into(vae)
    if device is not None:
        vae.to(resolve_device(device))
    return vae, config

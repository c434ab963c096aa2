"""The files of a run directory, read and written (writes are atomic), and loading a trained run.

A run directory holds ``model.toml`` and ``guide.toml`` (the specs as given), ``config.json``,
``checkpoint.safetensors`` (written at the end of every epoch), ``metrics.jsonl`` (one line per
epoch), with a validation split ``best.safetensors`` (the weights of the best epoch by the
validation ELBO, :mod:`pyro_vae.runs.selection`), with ``tensorboard`` its ``tensorboard/``
folder, and, at the end, ``report.json``, ``report.md`` and ``plots/*.png``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from ..data import Dataset
from ..devices import resolve_device
from ..errors import CheckpointError, PyroVaeError
from ..model.latent_model import LatentModel
from ..model.loading import build_pair
from ..spec.parse import parse_guide, parse_model
from .checkpoint import Checkpoint
from .config import TrainConfig
from .distributed import on_main
from .files import refuse_under_file, write_text_atomic
from .selection import checkpoint_path

CONFIG, CHECKPOINT, METRICS = "config.json", "checkpoint.safetensors", "metrics.jsonl"
LOCK = ".lock"


class RunDir:
    """Reads and writes the files of a run directory; writes are atomic."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(self.path / name, text)

    def check_new(self) -> None:
        """Refuse a path that cannot become a new run directory, before any work starts."""
        if self.path.exists() and not self.path.is_dir():
            raise PyroVaeError(f"{self.path}: exists and is not a directory; choose another --out")
        if self.path.is_dir() and set(os.listdir(self.path)) - {LOCK}:
            raise PyroVaeError(
                f"{self.path}: run directory exists and is not empty; resume it with --resume "
                f"or choose another --out"
            )
        refuse_under_file(self.path)

    def create(self, vae: LatentModel, config: TrainConfig, dataset: Dataset) -> None:
        """Write the specs and ``config.json`` into a new (or empty) directory."""
        self.check_new()
        self.write_text("model.toml", vae.model_spec.text)
        self.write_text("guide.toml", vae.guide_spec.text)
        meta = {
            "config": config.to_dict(),
            "data_shape": list(vae.data_shape),
            "image_shape": list(dataset.image_shape or vae.image_shape or []) or None,
            "model_spec": vae.model_spec.path,
            "guide_spec": vae.guide_spec.path,
        }
        if vae.data_sizes:  # the other observed nodes and the inputs, by node name
            meta["data_sizes"] = dict(vae.data_sizes)
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
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            config = TrainConfig.from_dict(meta["config"])
            config.validate()
            for key in ("data_shape", "image_shape"):
                shape = meta.get(key)
                if not (shape is None and key == "image_shape") and not _is_shape(shape):
                    raise ValueError(f"'{key}' is {shape!r}, not a list of sizes")
            sizes = meta.get("data_sizes", {})
            if not isinstance(sizes, dict) or not all(_is_shape([n]) for n in sizes.values()):
                raise ValueError(f"'data_sizes' is {sizes!r}, not sizes by node name")
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing; {self.path} is not a run directory") from None
        except KeyError as e:
            raise CheckpointError(f"{path}: damaged run configuration (no key {e})") from None
        except (ValueError, TypeError, AttributeError, PyroVaeError) as e:
            raise CheckpointError(f"{path}: damaged run configuration ({e})") from None
        except OSError as e:
            raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None
        return config, meta

    def build(self) -> tuple[LatentModel, TrainConfig]:
        """Rebuild the model from the run's own spec copies (not the files it came from)."""
        config, meta = self.read_config()
        model = parse_model(self._spec_copy("model.toml"), self.path / "model.toml")
        guide = parse_guide(self._spec_copy("guide.toml"), self.path / "guide.toml")
        shape = meta["image_shape"] or meta["data_shape"]
        sizes = meta.get("data_sizes") or {}
        if sizes:
            shape = {"x": shape, **{n: (size,) for n, size in sizes.items()}}
        return build_pair(model, guide, shape), config

    def _spec_copy(self, name: str) -> str:
        """The text of the run's copy of a spec (the run is rebuilt from it)."""
        path = self.path / name
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CheckpointError(
                f"{path}: missing; the run is rebuilt from its own copy of the spec (restore "
                f"it from the spec the run was trained with)"
            ) from None
        except UnicodeDecodeError:
            raise CheckpointError(f"{path}: damaged: not a UTF-8 text file") from None
        except OSError as e:
            raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None

    def write_metrics(self, history: list[dict]) -> None:
        """``metrics.jsonl`` from the run's history, replaced in one rename."""
        self.write_text(METRICS, "".join(json.dumps(r) + "\n" for r in history))

    def history(self, checkpoint: Checkpoint) -> list[dict]:
        """The metrics of epochs 1 … ``checkpoint.epoch``: the ones committed with the
        checkpoint, or, for a checkpoint that carries none, ``metrics.jsonl`` up to its epoch
        (a torn or unreadable line is dropped: the checkpoint, not that file, decides)."""
        if checkpoint.metrics is not None:
            return [r for r in checkpoint.metrics if r.get("epoch", 0) <= checkpoint.epoch]
        path = self.path / METRICS
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                records.append(record)
        return [r for r in records if r["epoch"] <= checkpoint.epoch]

    @contextlib.contextmanager
    def lock(self, new: bool = False):
        """Hold the run directory for one writer: a second training, resume or evaluation of
        the same directory is refused while this one runs (an advisory lock on ``.lock``,
        released by the system if the process dies). ``new``: the directory is being created
        (made here if missing); otherwise it must already be a run directory."""
        if new:
            self.check_new()
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise PyroVaeError(f"{self.path}: cannot be created ({e.strerror})") from None
        elif not (self.path / CONFIG).is_file():
            raise CheckpointError(
                f"{self.path / CONFIG}: missing; {self.path} is not a run directory"
            )
        if fcntl is None:  # no fcntl (Windows): no lock
            yield
            return
        path = self.path / LOCK
        with open(path, "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise PyroVaeError(
                    f"{self.path}: in use by another pyro-vae process (pid {holder}); wait for "
                    f"it to finish, or use another run directory"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            # Only the holder writes here, so a temporary file present now was left by a
            # writer that was killed before its rename: never part of the run's state.
            for stale in self.path.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def holding(run: RunDir | None, new: bool = False):
    """The run directory's lock (:meth:`RunDir.lock`), held by rank 0 while the block runs (no
    lock without a run directory); if another process holds it, every process stops with the
    error."""
    with contextlib.ExitStack() as stack:
        if run is not None:
            on_main(lambda: stack.enter_context(run.lock(new)))
        yield


def one_writer(fn):
    """``fn(run_dir, ...)`` with the run directory's lock held (:func:`holding`)."""

    @functools.wraps(fn)
    def locked(run_dir, *args, **kwargs):
        with holding(RunDir(run_dir)):
            return fn(run_dir, *args, **kwargs)

    return locked


def _is_shape(shape) -> bool:
    return (
        isinstance(shape, list)
        and 0 < len(shape) <= 4
        and all(not isinstance(n, bool) and isinstance(n, int) and n >= 1 for n in shape)
    )


def checkpoint_epoch(run_dir: str | Path, which: str = "last") -> int:
    """The epoch the run's checkpoint ``which`` ("last" or "best") was written after."""
    return Checkpoint(checkpoint_path(run_dir, which)).epoch


def run_metadata(run_dir: str | Path) -> dict:
    """``config.json`` of a run: settings, data shape, image shape, spec origins."""
    return RunDir(run_dir).read_config()[1]


def load_run(
    run_dir: str | Path, device=None, checkpoint: str = "last"
) -> tuple[LatentModel, TrainConfig]:
    """The trained model of a run directory, with its training configuration; on ``device``
    (:mod:`pyro_vae.devices`; default the CPU); with the weights of its ``checkpoint``: the
    ``"last"`` epoch's, or the ``"best"`` by the validation ELBO
    (:mod:`pyro_vae.runs.selection`)."""
    run = RunDir(run_dir)
    path = checkpoint_path(run.path, checkpoint)  # a bad choice is refused before the build
    vae, config = run.build()
    Checkpoint(path).load_into(vae)
    if device is not None:
        vae.to(resolve_device(device))
    return vae, config

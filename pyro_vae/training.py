"""SVI training of a :class:`~pyro_vae.LatentModel`, with run directories and exact resume.

One step is ``elbo.differentiable_loss(model, guide, batch)`` followed by a plain
``torch.optim.Adam`` step over the module's parameters: the ELBO is Pyro's, the optimizer is
one torch optimizer over all parameters rather than one per parameter. Where it applies
(``trace`` and ``trace_mean_field`` with one particle and reparameterized guide sites), the loss
is computed by :mod:`pyro_vae.fused` instead, the same value without Pyro's tracing machinery,
after a check on one batch that it agrees with Pyro's estimator.

A run directory holds ``model.toml`` and ``guide.toml`` (the specs as given), ``config.json``,
``checkpoint.safetensors`` (written at the end of every epoch), ``metrics.jsonl`` (one line per
epoch), and, at the end, ``report.json``, ``report.md`` and ``plots/*.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
from tqdm.auto import tqdm

from .checkpoint import Checkpoint, save_checkpoint
from .data import Dataset, load_dataset
from .errors import CheckpointError, DataError, PyroVaeError, TrainingDiverged
from .fused import FusedELBO, fused_objective
from .latent_model import LatentModel
from .objectives import OBJECTIVES, check_mean_field, make_objective, objective_options
from .spec.parse import parse_guide, parse_model

CONFIG, CHECKPOINT, METRICS = "config.json", "checkpoint.safetensors", "metrics.jsonl"


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved as ``config.json``)."""

    data: str = "digits"
    objective: str | None = None  # None: the lowest-variance ELBO that suits the model
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    eps: float = 1e-8
    lr_decay: float = 1.0  # per-epoch factor: epoch e trains with lr · lr_decay^(e-1)
    num_particles: int = 1
    objective_options: dict = field(default_factory=dict)  # e.g. {"alpha": 0.5} for renyi
    seed: int = 0
    binarization: str | None = None  # None: "dynamic" for binary likelihoods on grey data
    data_options: dict = field(default_factory=dict)
    fused: bool = True  # use the fused step (pyro_vae.fused) where it applies

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "num_particles"):
            if getattr(self, name) < 1:
                raise PyroVaeError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "eps", "lr_decay"):
            if not getattr(self, name) > 0:
                raise PyroVaeError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.objective is not None:
            if self.objective not in OBJECTIVES:
                raise PyroVaeError(OBJECTIVES.unknown_message(self.objective))
            self.objective_options = objective_options(self.objective, self.objective_options)


@dataclass
class TrainResult:
    vae: LatentModel
    config: TrainConfig
    dataset: Dataset
    history: list[dict]
    run_dir: Path | None = None

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def prepare_data(vae: LatentModel, config: TrainConfig) -> Dataset:
    """Load ``config.data``; binary likelihoods get binary data (dynamic binarization)."""
    binary = vae.likelihood.family.support == "binary"
    dataset = load_dataset(
        config.data, binarization=config.binarization, seed=config.seed, **config.data_options
    )
    if binary and config.binarization is None and not dataset.is_binary:
        config.binarization = "dynamic"
        dataset = load_dataset(
            config.data, binarization="dynamic", seed=config.seed, **config.data_options
        )
    config.binarization = dataset.binarization
    if tuple(dataset.event_shape) != vae.data_shape:
        raise DataError(
            f"data set '{dataset.name}' has datapoints of shape {tuple(dataset.event_shape)}, "
            f"the model was built for {vae.data_shape}"
        )
    if binary and not dataset.is_binary:
        raise DataError(
            f"{vae.model_spec.path}: observed.x.family: 'bernoulli' needs binary data, but "
            f"'{dataset.name}' with binarization '{dataset.binarization}' is not binary"
        )
    return dataset


def default_objective(vae: LatentModel) -> str:
    """``trace_enum`` with enumerated latents, else ``trace_mean_field`` where it is valid
    (analytic KL: lower variance), else ``trace``."""
    if vae.enumerated:
        return "trace_enum"
    try:
        check_mean_field(vae)
    except PyroVaeError:
        return "trace"
    return "trace_mean_field"


def training_objective(vae: LatentModel, config: TrainConfig) -> pyro.infer.ELBO:
    return make_objective(config.objective, vae, config.num_particles, **config.objective_options)


def eval_objective(vae: LatentModel) -> pyro.infer.ELBO:
    """The ELBO estimator used for reported ELBOs (see :func:`default_objective`)."""
    return make_objective(default_objective(vae), vae)


@torch.no_grad()
def estimate_elbo(vae: LatentModel, data: torch.Tensor, elbo=None, batch_size: int = 1000) -> float:
    """Mean ELBO per datapoint (nats) of ``data`` — one sample of z per datapoint."""
    elbo = elbo or eval_objective(vae)
    total = sum(
        elbo.loss(vae.model, vae.guide, data[i : i + batch_size])
        for i in range(0, len(data), batch_size)
    )
    return -total / len(data)


class _RunDir:
    """Reads and writes the files of a run directory; writes are atomic."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write_text(self, name: str, text: str) -> None:
        target = self.path / name
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)

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
            "config": dataclasses.asdict(config),
            "data_shape": list(vae.data_shape),
            "image_shape": list(dataset.image_shape) if dataset.image_shape else None,
            "model_spec": vae.model_spec.path,
            "guide_spec": vae.guide_spec.path,
        }
        self.write_text(CONFIG, json.dumps(meta, indent=2) + "\n")

    def read_config(self) -> tuple[TrainConfig, dict]:
        path = self.path / CONFIG
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            config = TrainConfig(**meta["config"])
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing; {self.path} is not a run directory") from None
        except (ValueError, KeyError, TypeError) as e:
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
        return LatentModel(model, guide, meta["data_shape"]), config

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
    return _RunDir(run_dir).read_config()[1]


def load_run(run_dir: str | Path) -> tuple[LatentModel, TrainConfig]:
    """The trained model of a run directory, with its training configuration."""
    run = _RunDir(run_dir)
    vae, config = run.build()
    Checkpoint(run.path / CHECKPOINT).load_into(vae)
    return vae, config


def train(
    vae: LatentModel,
    data: str = "digits",
    *,
    out: str | Path | None = None,
    progress: bool | None = None,
    **settings,
) -> TrainResult:
    """Train ``vae`` with SVI on the data set ``data``.

    :param out: run directory to create (must not exist or be empty); None keeps nothing on disk.
    :param progress: show a progress bar (None: only on a terminal).
    :param settings: fields of :class:`TrainConfig` (objective, epochs, batch_size, lr, ...).
    """
    unknown = set(settings) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown training settings: {sorted(unknown)}")
    config = TrainConfig(data=data, **settings)
    config.validate()
    if config.objective is None:
        config.objective = default_objective(vae)
    training_objective(vae, config)  # refuse before any work
    dataset = prepare_data(vae, config)
    run = _RunDir(out) if out is not None else None
    if run:
        run.create(vae, config, dataset)
    pyro.set_rng_seed(config.seed)
    batches = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr, eps=config.eps)
    history: list[dict] = []
    _fit(vae, dataset, config, optimizer, batches, history, run, progress)
    return TrainResult(vae, config, dataset, history, run.path if run else None)


def resume(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    progress: bool | None = None,
):
    """Continue a run from its last checkpoint, exactly as if it had not stopped.

    ``epochs`` changes the total number of epochs; ``lr`` the base learning rate from here on
    (after a divergence, say) — the run is then no longer identical to an uninterrupted one.
    """
    run = _RunDir(run_dir)
    vae, config = run.build()
    checkpoint = Checkpoint(run.path / CHECKPOINT)
    checkpoint.load_into(vae)
    changes = {k: v for k, v in (("epochs", epochs), ("lr", lr)) if v is not None}
    if changes:
        for key, value in changes.items():
            setattr(config, key, value)
        config.validate()
        meta = json.loads((run.path / CONFIG).read_text(encoding="utf-8"))
        meta["config"].update(changes)
        run.write_text(CONFIG, json.dumps(meta, indent=2) + "\n")
    dataset = prepare_data(vae, config)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr, eps=config.eps)
    try:
        optimizer.load_state_dict(checkpoint.optimizer)
        torch.set_rng_state(checkpoint.rng["torch"])
        batches = torch.Generator()
        batches.set_state(checkpoint.rng["batches"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{checkpoint.path}: incomplete training state ({e})") from None
    # The checkpoint, not metrics.jsonl, says where training stopped.
    done = int(checkpoint.info.get("epoch", 0))
    history = run.read_metrics(up_to_epoch=done)
    run.write_text(METRICS, "".join(json.dumps(r) + "\n" for r in history))
    _fit(vae, dataset, config, optimizer, batches, history, run, progress, start=done)
    return TrainResult(vae, config, dataset, history, run.path)


#: How closely the fused loss and each parameter's gradient must match Pyro's on the checked
#: batch, relative to the loss and to the gradient's largest entry (they agree to ~1e-7).
FUSED_RTOL = 1e-4


def _check_once(vae: LatentModel, elbo, dataset: Dataset, batch_size: int, fused=None):
    """Run Pyro's argument, support and NaN checks on one batch, then train without them.

    Left on, they cost about a third of a step (constraint checks on every distribution and
    NaN hooks on every gradient); a diverging loss is still caught by the finiteness check.
    With a ``fused`` step, its loss and gradients on that batch are compared with ``elbo``'s,
    from the same random state (the same draws of the latents). Returns the estimator to train
    with: ``fused`` if they agree, else (with a warning) ``elbo``.
    fork_rng: the check must not shift the random stream, or resumed runs would differ.
    """
    batch = next(iter(dataset.test_batches(batch_size)))
    with torch.random.fork_rng(), pyro.validation_enabled(True):
        if fused is None:
            with torch.no_grad():
                _finite(elbo.loss(vae.model, vae.guide, batch))
            return elbo
        state = torch.get_rng_state()
        expected = _loss_and_gradients(vae, elbo, batch)
        _finite(expected[0])
        torch.set_rng_state(state)
        got = _loss_and_gradients(vae, fused, batch)  # non-finite here: a disagreement
    disagreement = _disagreement(expected, got)
    if disagreement is None:
        return fused
    warnings.warn(
        f"the fused training step disagrees with Pyro's {type(elbo).__name__} on one batch "
        f"({disagreement}); training with Pyro's estimator",
        stacklevel=3,
    )
    return elbo


def _finite(loss: float) -> None:
    if not math.isfinite(loss):
        raise ValueError(f"the loss is {loss} (invalid values)")


def _loss_and_gradients(vae: LatentModel, elbo, batch) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and the gradient of every parameter (zeros where it has none; no gradients for
    a non-finite loss, where Pyro's NaN hooks would only warn); leaves ``.grad`` alone."""
    loss = elbo.differentiable_loss(vae.model, vae.guide, batch)
    if not torch.isfinite(loss):
        return loss.item(), {}
    params = dict(vae.named_parameters())
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return loss.item(), {
        name: torch.zeros_like(p) if g is None else g
        for (name, p), g in zip(params.items(), grads, strict=True)
    }


def _disagreement(expected, got) -> str | None:
    """What differs beyond :data:`FUSED_RTOL` between two ``(loss, gradients)``, or None."""
    (loss, grads), (fused_loss, fused_grads) = expected, got
    if not math.isclose(fused_loss, loss, rel_tol=FUSED_RTOL):
        return f"loss {fused_loss} instead of {loss}"
    for name, g in grads.items():
        error = (fused_grads[name] - g).abs().max().item()
        if not error <= FUSED_RTOL * g.abs().max().item():  # also catches NaN
            return f"gradient of {name} off by up to {error:.3g}"
    return None


def _fit(vae, dataset, config, optimizer, batches, history, run, progress, start=0) -> None:
    elbo = training_objective(vae, config)
    fused = None
    if config.fused:
        fused = fused_objective(
            config.objective, vae, config.num_particles, config.objective_options
        )
    evaluator = eval_objective(vae)
    try:
        elbo = _check_once(vae, elbo, dataset, config.batch_size, fused)
    except ValueError as e:
        if "invalid values" not in str(e):
            raise
        raise _diverged(run, start + 1, str(e).splitlines()[0]) from None
    with pyro.validation_enabled(False):
        _epochs(
            vae, dataset, config, optimizer, batches, history, run, progress, start, elbo, evaluator
        )
    if run:
        from .report import write_training_report

        write_training_report(run.path, vae, dataset, config, history)


def _epochs(
    vae, dataset, config, optimizer, batches, history, run, progress, start, elbo, evaluator
) -> None:
    steps_per_epoch = math.ceil(len(dataset.train) / config.batch_size)
    bar = tqdm(
        total=(config.epochs - start) * steps_per_epoch,
        disable=(None if progress is None else not progress),
        desc="training",
        unit="step",
        leave=False,
    )
    with bar:
        for epoch in range(start + 1, config.epochs + 1):
            began, total = time.perf_counter(), 0.0
            for group in optimizer.param_groups:
                group["lr"] = config.lr * config.lr_decay ** (epoch - 1)
            vae.train()
            for batch in dataset.train_batches(config.batch_size, batches):
                try:
                    loss = elbo.differentiable_loss(vae.model, vae.guide, batch) / len(batch)
                except ValueError as e:
                    # Distribution argument checks are where NaN weights usually surface.
                    if "invalid values" not in str(e):
                        raise
                    raise _diverged(run, epoch, str(e).splitlines()[0]) from None
                if not torch.isfinite(loss):
                    raise _diverged(run, epoch, f"the loss became {loss.item()}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
                bar.update()
            vae.eval()
            record = {
                "epoch": epoch,
                "train_elbo": -total / len(dataset.train),
                "test_elbo": estimate_elbo(vae, dataset.test, evaluator),
                "seconds": time.perf_counter() - began,
                "step": "fused" if isinstance(elbo, FusedELBO) else "pyro",
            }
            if not math.isfinite(record["test_elbo"]):
                raise _diverged(run, epoch, "the test ELBO became non-finite")
            history.append(record)
            bar.set_postfix(epoch=epoch, test_elbo=f"{record['test_elbo']:.2f}")
            if run:
                save_checkpoint(
                    run.path / CHECKPOINT,
                    vae,
                    optimizer,
                    rng={"torch": torch.get_rng_state(), "batches": batches.get_state()},
                    info={"epoch": epoch},
                )
                run.append_metrics(record)


def _diverged(run, epoch: int, what: str) -> TrainingDiverged:
    kept = ""
    if run and epoch > 1:
        kept = f"; the last good checkpoint (epoch {epoch - 1}) is kept in {run.path}"
    return TrainingDiverged(f"training diverged in epoch {epoch}: {what}{kept}. Try a smaller --lr")

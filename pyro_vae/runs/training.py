"""SVI training of a :class:`~pyro_vae.LatentModel`, with run directories and exact resume.

One step is ``elbo.differentiable_loss(model, guide, batch)`` followed by a plain
``torch.optim.Adam`` step over the module's parameters: the ELBO is Pyro's, the optimizer is
one torch optimizer over all parameters rather than one per parameter. Where it applies
(``trace`` and ``trace_mean_field`` with one particle and reparameterized guide sites), the loss
is computed by :mod:`pyro_vae.objectives.fused` instead, the same value without Pyro's tracing
machinery, after a check on one batch that it agrees with Pyro's estimator. The run directory's
files are described in :mod:`pyro_vae.runs.run_dir`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pyro
import torch
from tqdm.auto import tqdm

from ..data import Dataset
from ..errors import CheckpointError, TrainingDiverged
from ..model.latent_model import LatentModel
from ..objectives.fused import FusedELBO, _disagreement, _loss_and_gradients, fused_objective
from ..objectives.registry import default_objective, make_objective
from .checkpoint import Checkpoint, save_checkpoint
from .config import TrainConfig, prepare_data
from .run_dir import CHECKPOINT, CONFIG, METRICS, RunDir


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
    run = RunDir(out) if out is not None else None
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
    run = RunDir(run_dir)
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

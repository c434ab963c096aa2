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

import contextlib
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pyro
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..data import Dataset
from ..devices import fork_rng, module_device, resolve_device, rng_state, set_rng_state
from ..errors import CheckpointError, PyroVaeError, TrainingDiverged
from ..model.latent_model import LatentModel
from ..objectives.fused import FusedELBO, checked_step
from ..objectives.kl_weight import KLWeighted, warmup_weight
from ..objectives.registry import ObjectiveChoice, default_objective
from ..results.result import Result
from .batches import as_args, moved, names_of, rows
from .checkpoint import Checkpoint, save_checkpoint
from .config import TrainConfig, prepare_data
from .distributed import World, all_sum, any_true, gather, on_main, shard, world
from .files import check_writable
from .memory import check_step_memory
from .pairs import PyroPair, trainable, vectorized
from .run_dir import CHECKPOINT, RunDir, holding
from .selection import BEST, best_epoch, keep_best, repair_best, stopped_early
from .tracking import Tracker, check_tensorboard


@dataclass(frozen=True, repr=False, eq=False)
class TrainResult(Result):
    """A finished training: the trained pair, its settings and data, the metrics of every epoch
    and the run directory (None: nothing kept on disk)."""

    vae: LatentModel
    config: TrainConfig
    dataset: Dataset
    history: list[dict]
    run_dir: Path | None = None

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def best_epoch(self) -> int | None:
        """The epoch with the best validation ELBO (None: the run has no validation split)."""
        return best_epoch(self.history)

    @property
    def stopped_early(self) -> int | None:
        """The epoch training stopped after, if early stopping ended it."""
        return stopped_early(self.history, self.config.early_stop)


def eval_objective(vae: LatentModel) -> pyro.infer.ELBO:
    """The ELBO estimator used for reported ELBOs: :func:`default_objective`'s estimator,
    one particle, without training-only settings (a classification term is no part of it)."""
    return ObjectiveChoice(ObjectiveChoice.parse(default_objective(vae)).name).build(vae)


@torch.no_grad()
def estimate_elbo(vae: LatentModel, data, elbo=None, batch_size: int = 1000, device=None) -> float:
    """Mean ELBO per datapoint (nats) of ``data`` (the rows of x, or a tuple of the arrays the
    pair is called with) — one sample of z per datapoint; each batch is moved to ``device``
    (default: where the model is)."""
    elbo = elbo or eval_objective(vae)
    arrays = as_args(data)
    if device is None:
        device = module_device(vae) if isinstance(vae, torch.nn.Module) else arrays[0].device
    total = sum(
        elbo.loss(vae.model, vae.guide, *(a[i : i + batch_size].to(device) for a in arrays))
        for i in range(0, len(arrays[0]), batch_size)
    )
    return -total / len(arrays[0])


def train(
    vae,
    data: str = "digits",
    *,
    out: str | Path | None = None,
    progress: bool | None = None,
    num_particles: int | None = None,
    objective_options: dict | None = None,
    device: str | torch.device | None = None,
    collate=None,
    **settings,
) -> TrainResult:
    """Train ``vae`` with SVI on the data set ``data``.

    :param vae: a :class:`~pyro_vae.LatentModel`, or a pair written by hand: a ``(model,
        guide)`` tuple or an object with ``model`` and ``guide`` methods
        (:mod:`pyro_vae.runs.pairs`).
    :param out: run directory to create (must not exist or be empty); None keeps nothing on disk.
        Only for spec-built models.
    :param progress: show a progress bar (None: only on a terminal).
    :param settings: fields of :class:`TrainConfig` (epochs, batch_size, lr, ...). ``objective``
        is an :class:`~pyro_vae.objectives.registry.ObjectiveChoice` or its text
        (``"iwae:k=50"``); ``num_particles`` and ``objective_options`` may also be given apart.
        Without an objective, the lowest-variance ELBO that suits the model.
    :param device: where to train (:mod:`pyro_vae.devices`): the model is moved there and each
        batch as it is used. Default: where the model is.
    :param collate: for a hand-written pair, ``collate(*arrays)`` turns a batch of the arrays
        ``args`` names into the arguments the pair is called with (say, the reversed and packed
        sequences of Pyro's deep Markov model).
    """
    config = _train_config(vae, data, settings, num_particles, objective_options)
    run = _new_run(vae, out, config)
    device = _placed(vae, device)
    config.objective.build(vae)  # refuse a pair the objective cannot train, before any work
    dataset = prepare_data(vae, config)
    first = moved(
        next(iter(dataset.test_batches(config.batch_size, names_of(config.args)))), device
    )
    steps = trainable(vae, first, collate, config.objective.num_particles)
    check_step_memory(steps, config, first, device)
    state = objective_state(config, steps, first, device)
    with holding(run, new=True):
        if run:
            on_main(lambda: run.create(vae, config, dataset))
        pyro.set_rng_seed(config.seed)
        loop = _Loop(
            steps,
            dataset,
            config,
            _optimizer(config, steps, state),
            torch.Generator().manual_seed(config.seed),
            run,
            progress,
            device,
            state=state,
        )
        if run:  # epoch 0: a run stopped in its first epoch resumes from its start
            loop.commit(0)
        loop.fit()
    return TrainResult(vae, config, dataset, loop.history, run.path if run else None)


def objective_state(config: TrainConfig, steps, batch, device) -> nn.Module | None:
    """The objective's own module trained with the pair (NVIL's baseline net), built from one
    batch with weights drawn from the run's seed, without touching the random stream; None
    for the objectives that have none."""
    with fork_rng(device):
        torch.manual_seed(config.seed)
        state = config.objective.state_module(steps, as_args(batch))
    if state is not None and world().parallel:  # refused before the run directory is made
        raise PyroVaeError(
            f"torchrun: objective '{config.objective.label}' trains a module of its own (a "
            "baseline), in one process only; train it without torchrun"
        )
    return None if state is None else state.to(device)


def _optimizer(config: TrainConfig, steps, state: nn.Module | None) -> torch.optim.Optimizer:
    """One Adam over the pair's parameters, then the objective's own (in that order, which the
    checkpoints' optimizer state follows)."""
    own = [] if state is None else list(state.parameters())
    return torch.optim.Adam([*steps.parameters(), *own], lr=config.lr, eps=config.eps)


def _new_run(vae, out, config: TrainConfig) -> RunDir | None:
    """The run directory to create (None: nothing kept), refused before any work where it
    cannot be: a hand-written pair, a path that is not new, TensorBoard without a folder or
    its package."""
    if out is not None and not isinstance(vae, LatentModel):
        raise PyroVaeError(
            "run directories are for spec-built models (a run is rebuilt from its specs); train "
            "a hand-written pair with out=None and keep its parameters yourself"
        )
    run = RunDir(out) if out is not None else None
    if config.tensorboard:
        if run is None:
            raise PyroVaeError("tensorboard: its files go in the run directory; give out=")
        check_tensorboard()
    if run:  # everything is checked before the directory is made
        on_main(run.check_new)
    return run


def _train_config(vae, data, settings, num_particles, objective_options) -> TrainConfig:
    """The run's settings, checked: known names, one way of giving the objective's settings,
    a KL weight only where the objective has one."""
    unknown = set(settings) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown training settings: {sorted(unknown)}")
    objective = settings.pop("objective", None) or default_objective(vae)
    if not isinstance(objective, ObjectiveChoice):
        objective = ObjectiveChoice.parse(
            objective, num_particles=num_particles, options=objective_options
        )
    elif num_particles is not None or objective_options:
        raise PyroVaeError(
            "give the number of particles and the options inside the ObjectiveChoice"
        )
    if isinstance(vae, LatentModel):
        settings.setdefault("args", vae.data_names)
    config = TrainConfig(data=data, objective=objective, **settings)
    config.validate()  # a KL weight for an objective without one is refused here
    fused = config.fused and not config.free_bits and objective.fused_step(vae) is not None
    if config.compile and not fused:  # else --compile would be accepted and do nothing
        raise PyroVaeError(
            f"--compile: objective '{objective.label}' has no fused step for this pair to "
            "compile (trace and trace_mean_field with one particle on a spec-built model, "
            "without --free-bits or --no-fused); leave --compile out"
        )
    return config


def _placed(vae, device) -> torch.device:
    """Move ``vae`` to ``device`` (when given) and return the device training runs on."""
    if device is None:
        return module_device(vae) if isinstance(vae, torch.nn.Module) else torch.device("cpu")
    device = resolve_device(device)
    if isinstance(vae, torch.nn.Module):
        vae.to(device)
    elif device.type != "cpu":
        raise PyroVaeError(
            f"--device {device}: a hand-written pair that is not an nn.Module stays where its "
            "parameters are; move them yourself and train on the CPU default"
        )
    return device


def resume(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    progress: bool | None = None,
    device: str | torch.device | None = None,
):
    """Continue a run from its last checkpoint, exactly as if it had not stopped.

    ``epochs`` changes the total number of epochs; ``lr`` the base learning rate from here on
    (after a divergence, say) — the run is then no longer identical to an uninterrupted one.
    ``device``: where to continue (default the CPU); a run may move between devices, though the
    random draws then differ from an uninterrupted run's.
    """
    run = RunDir(run_dir)
    with holding(run):
        # Everything is read and checked before anything in the run directory changes.
        vae, config = run.build()
        checkpoint = Checkpoint(run.path / CHECKPOINT)
        checkpoint.load_into(vae)
        done = checkpoint.epoch  # the checkpoint, not metrics.jsonl, says where training is
        if checkpoint.optimizer is None or not {"torch", "batches"} <= set(checkpoint.rng):
            raise CheckpointError(
                f"{checkpoint.path}: holds weights only, without the optimizer and random "
                f"states a run continues from; it can be evaluated, not resumed"
            )
        changes = {k: v for k, v in (("epochs", epochs), ("lr", lr)) if v is not None}
        config = dataclasses.replace(config, **changes)
        config.validate()
        if config.epochs < done:
            raise PyroVaeError(
                f"--epochs {config.epochs}: {run.path} has already trained {done} epochs; "
                f"give the new total, at least {done}"
            )
        for folder in (run.path, run.path / "plots"):  # the report at the end must be writable
            on_main(lambda folder=folder: check_writable(folder))
        device = _placed(vae, device)
        dataset = prepare_data(vae, config)
        loop = _restored_loop(
            checkpoint, _Loop(vae, dataset, config, None, None, run, progress, device)
        )
        loop.history = run.history(checkpoint)
        on_main(lambda: repair_best(run.path / BEST, vae, loop.history))
        if changes:
            on_main(lambda: run.update_config(config))
        on_main(lambda: run.write_metrics(loop.history))  # torn or stale lines are dropped
        loop.fit(start=done)
    return TrainResult(vae, config, dataset, loop.history, run.path)


def _restored_loop(checkpoint: Checkpoint, loop: _Loop) -> _Loop:
    """``loop`` as the checkpoint left it: the objective's own module, the optimizer's state,
    the random streams (under torchrun each process continues its own, saved beside rank 0's).
    """
    vae, dataset, config, device = loop.vae, loop.dataset, loop.config, loop.device
    first = next(iter(dataset.test_batches(config.batch_size, names_of(config.args))))
    state = objective_state(config, vae, moved(first, device), device)
    if state is not None:
        checkpoint.load_into(state, "objective")
    optimizer = _optimizer(config, vae, state)
    try:
        optimizer.load_state_dict(checkpoint.optimizer)
        rank_state = checkpoint.rng.get(f"torch.rank{world().rank}")
        torch.set_rng_state(checkpoint.rng["torch"] if rank_state is None else rank_state)
        if device.type != "cpu" and device.type in checkpoint.rng:
            set_rng_state(device, checkpoint.rng[device.type])
        batches = torch.Generator()
        batches.set_state(checkpoint.rng["batches"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{checkpoint.path}: incomplete training state ({e})") from None
    return dataclasses.replace(
        loop, optimizer=optimizer, batches=batches, state=state, own_stream=rank_state is not None
    )


@dataclass
class _Loop:
    """One training run as it goes from epoch to epoch; ``history`` gets a record per epoch."""

    vae: LatentModel | PyroPair
    dataset: Dataset
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    batches: torch.Generator  # the stream of batch orders (and dynamic binarizations)
    run: RunDir | None
    progress: bool | None
    device: torch.device = torch.device("cpu")  # batches move here; the data stays on the CPU
    history: list[dict] = dataclasses.field(default_factory=list)
    world: World = dataclasses.field(default_factory=world)
    own_stream: bool = False  # this process's random stream was restored (torchrun, resume)
    state: nn.Module | None = None  # the objective's own trained module (NVIL's baseline)

    def fit(self, start: int = 0) -> None:
        """Train epochs ``start + 1`` to ``config.epochs``, then write the report."""
        elbo = self._step_estimator(start + 1)
        evaluator = eval_objective(self.vae)
        step = self._parallel(elbo) if self.world.parallel else None
        steps_per_epoch = math.ceil(len(self.dataset.train) / self.config.batch_size)
        bar = tqdm(
            total=(self.config.epochs - start) * steps_per_epoch,
            disable=(None if self.progress is None else not self.progress),
            desc="training",
            unit="step",
            leave=False,
        )
        with bar, pyro.validation_enabled(False), self._tracking() as track:
            for epoch in range(start + 1, self.config.epochs + 1):
                if stopped_early(self.history, self.config.early_stop) is not None:
                    break  # on resume too: the history says it has stopped
                record = self._epoch(epoch, elbo, evaluator, bar, step)
                self.history.append(record)
                bar.set_postfix(epoch=epoch, test_elbo=f"{record['test_elbo']:.2f}")
                if self.run:
                    self.commit(epoch)
                track(record)
        if self.run and self.world.is_main:
            from .report import write_training_report

            write_training_report(self.run.path, self.vae, self.dataset, self.config, self.history)

    @contextlib.contextmanager
    def _tracking(self):
        """``track(record)``: the epoch's metrics to TensorBoard where the run asks for it."""
        if not (self.config.tensorboard and self.run and self.world.is_main):
            yield lambda record: None
            return
        tracker = Tracker(self.run.path)
        try:
            yield tracker.log
        finally:
            tracker.close()

    def _step_estimator(self, epoch: int):
        """The estimator to step with, after checks on one batch, then trained without them.

        First our own check: the loss must be finite (else the run has diverged, e.g. it resumed
        from NaN weights). Then Pyro's argument, support and NaN checks, once: left on, they
        cost about a third of a step, and a diverging loss is still caught by the finiteness
        check of every step. Where the objective has a fused step, its loss and gradients on
        that batch are compared with Pyro's (:func:`~pyro_vae.objectives.fused.checked_step`).
        fork_rng: the checks must not shift the random stream, or resumed runs would differ.
        """
        vae, choice, config = self.vae, self.config.objective, self.config
        if config.compile and self.world.parallel:  # each process scores a shard, uncompiled
            raise PyroVaeError("--compile: torchrun trains with the uncompiled step; leave it out")
        elbo = choice.build(vae, vectorized(vae), state=self.state)
        fused = choice.fused_step(vae) if config.fused else None
        if config.free_bits > 0:  # its own estimator, with β on its floored KL sum
            elbo, fused = choice.free_bits(vae, config.free_bits, config.free_bits_per), None
            elbo.kl_weight = config.kl_weight
        elif config.kl_weighted:  # checked at the full β, so that the weighting is checked too
            elbo = KLWeighted(elbo, config.kl_weight)
            if fused is not None:
                fused.kl_weight = config.kl_weight
        names = names_of(config.args)
        batch = moved(next(iter(self.dataset.test_batches(config.batch_size, names))), self.device)
        with fork_rng(self.device):
            with torch.no_grad(), pyro.validation_enabled(False), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pyro's NaN warning: we say it ourselves below
                loss = elbo.loss(vae.model, vae.guide, *as_args(batch))
            if not math.isfinite(loss):
                raise self._diverged(epoch, f"the loss is {loss}")
            if fused is None:
                quiet = quiet_unenumerated(batched_apart(vae))
                with torch.no_grad(), pyro.validation_enabled(True), quiet:
                    elbo.loss(vae.model, vae.guide, *as_args(batch))
                return elbo
        if config.compile:
            fused.compile()
        with pyro.validation_enabled(True):
            return checked_step(vae, elbo, fused, batch)

    def _parallel(self, elbo):
        """The step of data-parallel training: each process's shard of every batch, through
        ``DistributedDataParallel`` (:mod:`pyro_vae.runs.distributed`)."""
        if not isinstance(self.vae, LatentModel):
            raise PyroVaeError("torchrun trains spec-built models only")
        if self.vae.model_spec.sequential:
            raise PyroVaeError("torchrun: sequence models train in one process (not sharded yet)")
        if not isinstance(elbo, FusedELBO) and not self.own_stream:
            # Pyro's estimators draw the latents of their own shard: from a stream of their own.
            torch.manual_seed(hash((self.config.seed, self.world.rank)) % 2**62)
        ids = [self.device.index or 0] if self.device.type == "cuda" else None
        module = _ShardLoss(self.vae, elbo, self.world)
        return DistributedDataParallel(
            module, device_ids=ids, find_unused_parameters=self._has_unused(module)
        )

    def _has_unused(self, module: _ShardLoss) -> bool:
        """Whether some parameter gets no gradient (DDP must then look for such parameters
        at every step): tried on one batch, without shifting the random stream."""
        batch = next(iter(self.dataset.test_batches(self.config.batch_size))).to(self.device)
        params = [p for p in self.vae.parameters() if p.requires_grad]
        with fork_rng(self.device):
            loss = module(batch, shard(len(batch), self.world))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        return any(g is None for g in grads)

    def _epoch(self, epoch: int, elbo, evaluator, bar, parallel=None) -> dict:
        vae, config = self.vae, self.config
        began = time.perf_counter()
        lr = config.lr_at(epoch, self.history)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # The test ELBO sums partially observed nodes out: a bound on log p(x), not log p(x, y).
        names = names_of(vae.marginal_data_names if isinstance(vae, LatentModel) else config.args)
        vae.train()
        apart = batched_apart(vae)
        with quiet_unenumerated(apart):
            total = self._steps(epoch, elbo, bar, parallel, apart)
        vae.eval()
        record = {
            "epoch": epoch,
            "train_elbo": -all_sum(total) / len(self.dataset.train),
            "test_elbo": estimate_elbo(
                vae, self.dataset.arrays("test", names), evaluator, device=self.device
            ),
            "seconds": time.perf_counter() - began,
            "step": _step_name(elbo),
        }
        if config.validation is not None:  # after the test ELBO: its draws come first
            valid = self.dataset.arrays("valid", names)
            record["valid_elbo"] = estimate_elbo(vae, valid, evaluator, device=self.device)
        if config.kl_weighted:
            record["kl_weight"] = elbo.kl_weight  # β of the epoch's last step
        if config.lr_schedule is not None:
            record["lr"] = lr
        if not all(math.isfinite(record[k]) for k in ("test_elbo", "valid_elbo") if k in record):
            raise self._diverged(epoch, "the test or validation ELBO became non-finite")
        return record

    def _steps(self, epoch: int, elbo, bar, parallel, apart: tuple[str, ...]) -> float:
        """One epoch's optimizer steps; the sum of their losses over this process's rows, less
        any classification term (:mod:`~pyro_vae.objectives.classify`): minus the ELBO."""
        vae, config, optimizer = self.vae, self.config, self.optimizer
        steps = math.ceil(len(self.dataset.train) / config.batch_size)
        step = (epoch - 1) * steps  # the global step: a resumed warm-up continues where it was
        names, total = names_of(config.args), 0.0
        added = getattr(elbo, "classification_total", 0.0)  # not part of the reported ELBO
        for batch in self.dataset.train_batches(config.batch_size, self.batches, names, apart):
            batch = moved(batch, self.device, non_blocking=True)
            if config.kl_weighted:
                elbo.kl_weight = warmup_weight(config.kl_weight, config.kl_warmup * steps, step)
            step += 1
            if parallel is None:
                loss = elbo.differentiable_loss(vae.model, vae.guide, *as_args(batch))
                loss = loss / rows(batch)
                bad = not torch.isfinite(loss)
            else:  # every process stops if one must, or the others would wait for it
                loss = parallel(batch, shard(len(batch), self.world))
                bad = any_true(not torch.isfinite(loss))
            if bad:
                raise self._diverged(epoch, f"the loss became {loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * rows(batch) / self.world.size
            bar.update()
        if parallel is not None:  # the shards' terms are scaled by their step: left in
            return total
        return total - (getattr(elbo, "classification_total", 0.0) - added)

    def commit(self, epoch: int) -> None:
        """Save the state after ``epoch``: the checkpoint, then ``metrics.jsonl`` from it."""
        states = gather(self._rng_states())
        if not self.world.is_main:
            return
        rng = dict(states[0])
        for rank, other in enumerate(states[1:], 1):
            rng[f"torch.rank{rank}"] = other["torch"]
        # The checkpoint commits the epoch, its metrics with it; metrics.jsonl is then
        # rewritten from them, so a crash between the two leaves nothing resume cannot repair.
        save_checkpoint(
            self.run.path / CHECKPOINT,
            self.vae,
            self.optimizer,
            rng=rng,
            info={"epoch": epoch, "metrics": self.history},
            objective=self.state,
        )
        self.run.write_metrics(self.history)
        keep_best(self.run.path / BEST, self.vae, self.history)  # after its epoch is committed

    def _rng_states(self) -> dict[str, torch.Tensor]:
        states = {"torch": torch.get_rng_state(), "batches": self.batches.get_state()}
        if self.device.type != "cpu":  # sampling on a GPU draws from its own generator
            states[self.device.type] = rng_state(self.device)
        return states

    def _diverged(self, epoch: int, what: str) -> TrainingDiverged:
        advice = "try a smaller --lr"
        if self.run:
            advice = (
                f"the checkpoint of epoch {epoch - 1} is kept; continue with a smaller "
                f"learning rate: pyro-vae train --resume {self.run.path} --lr SMALLER"
            )
        return TrainingDiverged(f"training diverged in epoch {epoch}: {what}; {advice}")


class _ShardLoss(nn.Module):
    """This process's part of a global batch's mean loss, as a module for
    ``DistributedDataParallel``: the loss of its rows times (processes / batch size), so that
    the average of the processes' gradients is the gradient of the batch's mean loss. The fused
    step draws every row's latents (the draws one process makes) and scores its own rows."""

    def __init__(self, vae: LatentModel, elbo, w: World):
        super().__init__()
        self.vae, self.elbo, self.processes = vae, elbo, w.size

    def forward(self, batch: torch.Tensor, rows: slice) -> torch.Tensor:
        if isinstance(self.elbo, FusedELBO):
            total = self.elbo.negative_elbo(batch, rows)
        else:
            total = self.elbo.differentiable_loss(self.vae.model, self.vae.guide, batch[rows])
        return total * self.processes / len(batch)


def batched_apart(vae) -> tuple[str, ...]:
    """The label arrays whose labelled and unlabelled rows train in separate batches: a
    spec-built pair's partially observed nodes' (each call observes them or samples them)."""
    if not isinstance(vae, LatentModel):
        return ()
    return vae.data_names[len(vae.marginal_data_names) :]


@contextlib.contextmanager
def quiet_unenumerated(apart: tuple[str, ...]):
    """Without Pyro's warning that TraceEnum_ELBO found nothing to enumerate, where that is
    expected: a labelled batch observes the node the guide enumerates on the other batches."""
    with warnings.catch_warnings():
        if apart:
            warnings.filterwarnings("ignore", "TraceEnum_ELBO found no sample sites")
        yield


def _step_name(elbo) -> str:
    """What ``metrics.jsonl`` records of an epoch's step: Pyro's estimator, the fused step, or
    the fused step compiled."""
    if not isinstance(elbo, FusedELBO):
        return "pyro"
    return "compiled" if elbo.compiled else "fused"

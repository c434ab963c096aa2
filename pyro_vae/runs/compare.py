"""``pyro-vae compare``: estimator comparisons written as reports.

:func:`compare_run` compares estimators at the parameters of a trained run (or of a freshly
initialized spec) on the first test datapoints; :func:`compare_training` trains the same spec
with each objective for the same budget and seed and evaluates every run the same way. Both
write ``comparison.json``, ``comparison.md`` and PNG plots into their output directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import load_dataset
from ..devices import module_device
from ..errors import PyroVaeError
from ..model.loading import load
from ..objectives.comparison import DEFAULT_ESTIMATORS, Comparison, compare_estimators
from ..objectives.registry import ObjectiveChoice, default_objective
from ..results.comparisons import run_comparison_markdown, training_comparison_markdown
from ..results.evaluation import EvaluationReport
from ..results.result import Result, SummaryKeys
from ..results.stats import Difference
from ..spec.resolve import read_model
from . import plots
from .config import TrainConfig, data_shapes, prepare_data
from .evaluate import evaluate_run
from .files import check_writable, write_text_atomic
from .run_dir import CHECKPOINT, CONFIG, RunDir, load_run
from .training import resume, train


@dataclass(frozen=True, repr=False, eq=False)
class RunComparison(SummaryKeys, Result):
    """A :class:`~pyro_vae.objectives.comparison.Comparison` of estimators made on a run (or a
    spec at initialization), with where it came from and where it was written."""

    comparison: Comparison
    source: str
    data: str
    seed: int
    out: Path
    plots: dict[str, str] = field(default_factory=dict)


def compare_run(
    source: str | Path,
    *,
    guide: str | Path | None = None,
    data: str | None = None,
    out: str | Path | None = None,
    estimators=DEFAULT_ESTIMATORS,
    repeats: int = 100,
    num_data: int = 100,
    reference_samples: int = 5000,
    seed: int = 0,
    progress: bool | None = None,
    data_options: dict | None = None,
    device=None,
) -> RunComparison:
    """Compare estimators on a run directory's model, or on a model spec at initialization;
    writes ``comparison.json``, ``comparison.md`` and plots into ``out``.

    :param source: a run directory (with ``config.json``) or a model spec / bundled name.
    :param out: where to write (default: ``<run>/compare``; required for a spec).
    """
    vae, config, origin, out = _compared(source, guide, data, out, seed, data_options, device)
    if num_data < 1:
        raise PyroVaeError(f"num_data must be >= 1, got {num_data}")
    check_writable(out)  # before the comparison's minutes of work, not after
    dataset = prepare_data(vae, config)
    vae.eval()
    rows = dataset.test_indices(num_data, seed=seed)
    # The partially observed nodes are left out, and so summed out, as evaluate does.
    test = dataset.arrays("test", vae.marginal_data_names)
    data = tuple(a[rows].to(module_device(vae)) for a in test)
    comparison = compare_estimators(
        vae.model,
        vae.guide,
        *data,
        estimators=estimators,
        repeats=repeats,
        reference_samples=reference_samples,
        seed=seed,
        progress=progress,
    )
    result = RunComparison(comparison, origin, dataset.name, seed, out)
    result = _with_plots(result)
    write_text_atomic(out / "comparison.json", json.dumps(result.to_dict(), indent=2) + "\n")
    write_text_atomic(out / "comparison.md", run_comparison_markdown(result))
    return result


def _compared(source, guide, data, out, seed, data_options, device):
    """The model to compare, its settings, a description, and the output folder."""
    run = Path(source)  # ``source`` itself stays a str: a bare name is a bundled spec
    if (run / CONFIG).exists():
        vae, config = load_run(run, device=device)
        return vae, config, f"run {run}", Path(out) if out else run / "compare"
    if out is None:
        raise PyroVaeError(f"{source}: not a run directory; give --out to compare a spec")
    config = TrainConfig(data=data or "digits", seed=seed, data_options=data_options or {})
    natural = load_dataset(config.data, seed=seed, **config.data_options)
    shape = data_shapes(read_model(source), natural)
    vae = load(source, guide, data_shape=shape, seed=seed, device=device)
    config.args = vae.data_names
    origin = f"spec {vae.model_spec.path} / {vae.guide_spec.path} at initialization"
    return vae, config, origin, Path(out)


def _with_plots(result: RunComparison) -> RunComparison:
    c, folder = result.comparison, result.out / "plots"
    rows = [r for r in c.results if not r.skipped]
    values = plots.estimator_values(
        rows,
        c.reference,
        folder / "estimator_values.png",
        f"{c.estimand.log_p_hat} ({c.reference_kind})",
    )
    made = {"snr_vs_k": plots.snr_vs_k(rows, folder / "snr_vs_k.png"), "values": values}
    return RunComparison(
        **{**vars(result), "plots": {k: str(p.relative_to(result.out)) for k, p in made.items()}}
    )


def _run_name(choice: ObjectiveChoice) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", choice.label).strip("_")


@dataclass(frozen=True)
class TrainedRun:
    """One objective's run in a training comparison: its directory, time, final test ELBO, its
    evaluation, and its differences from the first run, datapoint by datapoint."""

    label: str
    run: str
    train_seconds: float
    final_test_elbo: float
    evaluation: EvaluationReport
    vs_first: dict[str, Difference] = field(default_factory=dict)


@dataclass(frozen=True, repr=False, eq=False)
class TrainingComparison(SummaryKeys, Result):
    """The runs of one spec trained with each objective (same seed, epochs and batches) and
    evaluated the same way."""

    model: str
    guide: str
    data: str
    settings: dict
    num_samples: int
    runs: list[TrainedRun]
    out: Path
    plots: dict[str, str] = field(default_factory=dict)


def compare_training(
    model: str | Path,
    *,
    out: str | Path,
    guide: str | Path | None = None,
    data: str = "digits",
    objectives=None,
    num_samples: int = 1000,
    max_data: int | None = None,
    progress: bool | None = None,
    data_options: dict | None = None,
    device=None,
    **settings,
) -> TrainingComparison:
    """Train ``model`` once per objective (same seed, epochs and batches), then evaluate each run
    with the same ``log_likelihood`` (``num_samples``) and ELBO on the same test datapoints.

    Each run is a normal run directory ``<out>/<objective>``; an existing one is resumed, so an
    interrupted comparison picks up where it stopped.
    """
    out = check_writable(out)  # the runs and the table go here: refused before training
    seed = settings.get("seed", 0)
    dataset = load_dataset(data, **(data_options or {}))
    shape = data_shapes(read_model(model), dataset)
    vae = load(model, guide, data_shape=shape, seed=seed)
    choices = _objectives(vae, objectives)
    trainer = _Trainer(model, guide, data, shape, data_options or {}, progress, device, settings)
    runs, histories, arrays = [], {}, []
    for choice in choices:
        run_dir = out / _run_name(choice)
        result = trainer.run(choice, run_dir)
        evaluation = evaluate_run(
            run_dir,
            num_samples=num_samples,
            max_data=max_data,
            seed=seed,
            progress=progress,
            device=device,
        )
        histories[choice.label] = result.history
        arrays.append(evaluation.arrays())
        runs.append(
            TrainedRun(
                choice.label,
                str(run_dir),
                sum(r["seconds"] for r in result.history),
                result.final["test_elbo"],
                evaluation.report,
            )
        )
    figure = plots.learning_curves(histories, out / "plots" / "learning_curves.png")
    comparison = TrainingComparison(
        str(vae.model_spec.path),
        str(vae.guide_spec.path),
        data,
        settings,
        num_samples,
        _paired_differences(runs, arrays),
        out,
        {"learning_curves": str(figure.relative_to(out))},
    )
    write_text_atomic(out / "comparison.json", json.dumps(comparison.to_dict(), indent=2) + "\n")
    write_text_atomic(out / "comparison.md", training_comparison_markdown(comparison))
    return comparison


def _objectives(vae, objectives) -> list[ObjectiveChoice]:
    """The objectives to train with (default: the model's own, IWAE with K = 5 and 50), each
    checked against the model, with distinct run names, before anything is trained."""
    if objectives is None:
        objectives = [default_objective(vae), "iwae:k=5", "iwae:k=50"]
    choices = [ObjectiveChoice.of(o) for o in objectives]
    for choice in choices:
        choice.build(vae)
    names = [_run_name(c) for c in choices]
    if len(set(names)) != len(names):
        raise PyroVaeError(f"objectives repeat: {[c.label for c in choices]}")
    return choices


@dataclass(frozen=True)
class _Trainer:
    """Trains (or resumes) one run directory per objective with the same settings."""

    model: str | Path
    guide: str | Path | None
    data: str
    shape: tuple | dict
    data_options: dict
    progress: bool | None
    device: object
    settings: dict

    def run(self, choice: ObjectiveChoice, run_dir: Path):
        if (run_dir / CHECKPOINT).exists():
            if RunDir(run_dir).read_config()[0].objective != choice:
                raise PyroVaeError(f"{run_dir}: holds a run of another objective; choose --out")
            epochs = self.settings.get("epochs")
            return resume(run_dir, epochs=epochs, progress=self.progress, device=self.device)
        fresh = load(
            self.model, self.guide, data_shape=self.shape, seed=self.settings.get("seed", 0)
        )
        return train(
            fresh,
            self.data,
            out=run_dir,
            progress=self.progress,
            data_options=self.data_options,
            objective=choice,
            device=self.device,
            **self.settings,
        )


def _paired_differences(
    runs: list[TrainedRun], arrays: list[dict[str, np.ndarray]]
) -> list[TrainedRun]:
    """Each run's log p̂(x) and ELBO minus the first run's, datapoint by datapoint (``arrays``:
    each run's per-datapoint evaluation arrays), with the standard error over datapoints: the
    runs saw the same test points, so the pairing removes the spread between easy and hard
    datapoints from the comparison."""
    return [
        TrainedRun(
            **{
                **vars(run),
                "vs_first": {k: Difference.of(a[k] - arrays[0][k]) for k in ("log_px", "elbo")},
            }
        )
        for run, a in zip(runs, arrays, strict=True)
    ]

"""Evaluate a trained run on its test set: log p̂(x), the ELBO and their gap, and why the gap is
there.

Always: importance-sampled log p̂(x) (from the guide, or with ``proposal="prior"`` the naive
Monte Carlo estimate) with its standard error, ESS and Pareto k̂, and the ELBO, per datapoint.
On request: ``ais`` (annealed importance sampling, :mod:`pyro_vae.inference.ais`),
``decompose`` (the gap split into approximation and amortization gaps,
:mod:`pyro_vae.inference.gap`), ``surgery`` (average KL = mutual information + marginal KL,
KL per latent dimension, active units: :mod:`pyro_vae.inference.surgery`), ``steps`` (per
time step of a sequence pair: log p̂(x_t | x_<t), the ELBO's terms and the gap,
:mod:`pyro_vae.inference.steps`; by default for spec-built sequence models).

The estimators' own results are composed into one :class:`~pyro_vae.runs.evaluation.Evaluation`
(which says which datapoints are usable, and how its files are laid out). With ``max_data`` it
scores a seeded random subset of the test rows (:meth:`~pyro_vae.data.Dataset.test_indices`),
never the first rows, since test splits are often ordered by class; ``test_index`` in the
arrays says which rows.

Writes into the run directory ``evaluation.npz``, ``evaluation.nc``, plots under ``plots/``, and
an ``evaluation`` section in ``report.json`` and ``report.md``. A damaged ``report.json`` or an
output folder that cannot be written is refused before any work; a write that fails (a full
disk) leaves the file it would have replaced as it was (:mod:`pyro_vae.runs.files`).
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from ..devices import module_device
from ..inference.compiled import check_compile, compile_pays
from ..inference.elbo import ElboGap, elbo
from ..inference.gap import GapDecomposition, Refinement, refined_elbo
from ..inference.log_likelihood import LogLikelihood, log_likelihood
from ..inference.precision import check_precision
from ..inference.steps import StepwiseEstimate, stepwise_estimate
from ..inference.streams import datapoint_seeds
from ..inference.surgery import check_components, elbo_surgery, latent_usage
from ..objectives.registry import ObjectiveChoice, default_objective
from ..results.choices import Proposal
from ..results.evaluation import ClassificationSection
from .config import prepare_data
from .distributed import gather, on_main, shard, world
from .evaluation import Evaluation, EvaluationSetup
from .files import atomic_path, check_writable
from .memory import check_rows_memory
from .plots import draw_evaluation
from .report import read_report, render_report
from .run_dir import checkpoint_epoch, load_run, one_writer


def _curve_points(num_samples: int) -> list[int]:
    """1, 10, 100, ... below K (K itself when K = 1): where to read log p̂ from the first K
    samples."""
    points, k = [], 1
    while k < num_samples:
        points.append(k)
        k *= 10
    return points or [num_samples]


def _batches(data: tuple, batch_size: int, progress, desc: str, ids=None):
    """``batch_size`` rows of the arrays ``data`` at a time (a tuple, the pair's arguments),
    with a progress bar; with ``ids``, pairs of (rows, their ids)."""
    n = len(data[0])
    with tqdm(
        total=n,
        disable=None if progress is None else not progress,
        desc=desc,
        unit="datapoint",
        leave=False,
    ) as bar:
        for start in range(0, n, batch_size):
            batch = tuple(a[start : start + batch_size] for a in data)
            yield batch if ids is None else (batch, ids[start : start + batch_size])
            bar.update(len(batch[0]))


@dataclass(frozen=True)
class _Sampling:
    """How the estimators are run on a run's test datapoints (see :func:`evaluate_run`)."""

    num_samples: int
    elbo_samples: int
    estimator: str  # the ELBO's: "trace" or "trace_mean_field"
    proposal: Proposal
    batch_size: int
    progress: bool | None
    seed: int
    precision: str
    ais: bool = False
    ais_samples: int = 16
    ais_steps: int = 500
    decompose: bool = False
    compile: bool = False  # the importance weights' passes, by torch.compile


@one_writer
def evaluate_run(
    run_dir: str | Path,
    *,
    num_samples: int = 1000,
    elbo_samples: int = 100,
    max_data: int | None = None,
    batch_size: int = 100,
    seed: int = 0,
    progress: bool | None = None,
    proposal: str = "guide",
    ais: bool = False,
    ais_samples: int = 16,
    ais_steps: int = 500,
    decompose: bool = False,
    surgery: bool = False,
    surgery_components: int | None = None,
    steps: bool | None = None,
    precision: str = "fp32",
    compile: bool | None = None,
    device=None,
    checkpoint: str = "last",
) -> Evaluation | None:
    """Evaluate each test datapoint of a run and write the results (see the module docstring
    for what each option adds); returns the :class:`~pyro_vae.runs.evaluation.Evaluation`
    (None in a torchrun process other than rank 0, which gathers and writes). ``checkpoint``:
    the weights of the ``"last"`` epoch, or the ``"best"`` by the validation ELBO; ``compile``:
    :mod:`~pyro_vae.inference.compiled` (None: where the whole evaluation pays for it)."""
    run_dir = Path(run_dir)
    _check_options(precision, compile, surgery_components)
    # Refused before minutes of sampling: a report.json that cannot be extended, bad folders.
    report = on_main(lambda: _prepare_outputs(run_dir))
    vae, config = load_run(run_dir, device=device, checkpoint=checkpoint)
    vae.eval()
    dataset = prepare_data(vae, config)
    indices = dataset.test_indices(max_data, seed=seed)
    estimator = "trace_mean_field" if default_objective(vae) == "trace_mean_field" else "trace"
    # compile=None: decided for the whole evaluation, not batch by batch
    compile = compile_pays(num_samples, len(indices)) if compile is None else compile
    sampling = _Sampling(
        *(num_samples, elbo_samples, estimator, Proposal.of(proposal), batch_size, progress),
        *(seed, precision, ais, ais_samples, ais_steps, decompose, compile),
    )
    pyro.set_rng_seed(seed)
    # Under torchrun each process takes a contiguous shard of the datapoints; rank 0 gathers.
    mine = indices[shard(len(indices), world())]
    # The partially observed nodes are left out, and so summed out: log p(x), not log p(x, y).
    test = dataset.arrays("test", vae.marginal_data_names)
    data = tuple(a[mine].to(module_device(vae)) for a in test)
    parts, seconds = _estimate_shard(vae, data, mine.tolist(), sampling)
    gathered = gather(parts)
    if not world().is_main:
        return None
    setup = _setup(run_dir, checkpoint, vae, config.data, indices, len(dataset.test), sampling)
    evaluation = _compose(setup, gathered, seconds)
    every = tuple(a[indices] for a in test)  # the explanations below run in one process
    if surgery:  # the aggregate posterior is over all datapoints
        evaluation = _with_surgery(evaluation, vae, every, surgery_components, seed)
    if vae.classifiers:
        evaluation = replace(evaluation, classification=classification(vae, dataset, indices))
    if steps or (steps is None and vae.model_spec.sequential):
        evaluation = replace(evaluation, steps=_stepwise(vae, every, sampling))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return _write(run_dir, replace(evaluation, peak_rss_mb=peak), report)


def _check_options(precision: str, compile, surgery_components) -> None:
    """Options refused before any work: each raises one line naming itself."""
    check_precision(precision)
    check_compile(compile)
    check_components(surgery_components)


def _setup(run_dir, checkpoint, vae, data, indices, num_test, s: _Sampling) -> EvaluationSetup:
    """What was evaluated and how: the data, the rows, the samples and the weights."""
    return EvaluationSetup(
        *(data, indices.numpy(), num_test, s.num_samples, s.elbo_samples, s.estimator),
        *(s.proposal.value, s.precision, world().size, s.seed),
        checkpoint_epoch(run_dir, checkpoint),
        _log_weight_dtype(vae),
        checkpoint=checkpoint,
    )


def _stepwise(vae, data: tuple, sampling: _Sampling) -> StepwiseEstimate:
    """Per time step log p̂, ELBO terms and gap of the datapoints ``data``, a batch at a time."""
    parts = []
    with pyro.validation_enabled(False):
        for batch in _batches(data, sampling.batch_size, sampling.progress, "per time step"):
            batch = tuple(a.to(module_device(vae)) for a in batch)
            parts.append(
                stepwise_estimate(vae.model, vae.guide, *batch, num_samples=sampling.num_samples)
            )
    return StepwiseEstimate.concatenate(parts)


def _with_surgery(evaluation: Evaluation, vae, data: tuple, components, seed) -> Evaluation:
    """The evaluation with ELBO surgery and latent usage over all its datapoints ``data``, the
    aggregate posterior from ``components`` of them (None: all)."""
    data = tuple(a.to(module_device(vae)) for a in data)
    with pyro.validation_enabled(False):
        found = elbo_surgery(vae.model, vae.guide, *data, components=components, seed=seed)
        usage = latent_usage(vae.model, vae.guide, *data)
    return replace(evaluation, surgery=found, usage=usage)


@torch.no_grad()
def classification(vae, dataset, indices) -> tuple[ClassificationSection, ...]:
    """Each classifier q(y | x) of ``vae``'s partially observed nodes against the test labels
    of the datapoints ``indices`` (those with a label)."""
    device = module_device(vae)
    data = [a[indices] for a in dataset.arrays("test", vae.marginal_data_names)]
    parts = [
        vae.classify(*(a[i : i + 1000].to(device) for a in data))
        for i in range(0, len(indices), 1000)
    ]
    sections = []
    for name, node in vae.model_spec.partial.items():
        if name not in vae.classifiers:
            continue
        probs = torch.cat([p[name] for p in parts]).cpu()
        labels = dataset.array(node.data, "test")[indices]
        known = labels >= 0
        right = (probs.argmax(-1) == labels)[known].double()
        log_q = probs.gather(-1, labels.clamp(min=0)[:, None])[:, 0].log()[known]
        accuracy, n = float(right.mean()), int(known.sum())
        sections.append(
            ClassificationSection(
                name, probs.shape[-1], n, accuracy, math.sqrt(accuracy * (1 - accuracy) / n),
                float(log_q.double().mean()),
            )
        )  # fmt: skip
    return tuple(sections)


def _prepare_outputs(run_dir: Path) -> dict:
    """The run's ``report.json`` (empty if none) once it and the folders the evaluation
    writes into are known to be usable; a :class:`~pyro_vae.errors.PyroVaeError` naming the
    file or folder otherwise."""
    report = read_report(run_dir)
    check_writable(run_dir)
    check_writable(run_dir / "plots")
    return report


def _log_weight_dtype(vae) -> torch.dtype:
    """The dtype the pair's log densities are summed in: its parameters' (float32, as a
    rule). Under ``precision="bf16"`` only the nets' products drop to bfloat16; a spec-built
    model's densities stay in float32 (:mod:`~pyro_vae.inference.precision`)."""
    dtypes = [p.dtype for p in vae.parameters() if p.is_floating_point()]
    return dtypes[0] if dtypes else torch.get_default_dtype()


def _estimate_shard(vae, x, ids, sampling: _Sampling) -> tuple[dict, dict[str, float]]:
    """This process's results (None where it has no datapoint) and their timings; ``x``: the
    arrays the pair is called with (a tuple)."""
    if sampling.ais:  # AIS moves every chain of a batch at once: checked before any work
        rows = sampling.ais_samples * min(sampling.batch_size, max(len(x[0]), 1))
        settings = f"--ais-samples {sampling.ais_samples} with --batch-size {sampling.batch_size}"
        check_rows_memory(vae, ObjectiveChoice("trace"), x, rows, module_device(vae), settings)
    seconds, began = {}, time.perf_counter()
    parts = {"gap": _importance_sampling(vae, x, ids, sampling)}
    seconds["importance_sampling"] = time.perf_counter() - began
    if parts["gap"] is not None and "compile_seconds" in parts["gap"].log_likelihood.details:
        seconds["compiling"] = parts["gap"].log_likelihood.details["compile_seconds"]
    w = world()
    if w.rank:  # AIS and refinement draw from the global stream: another one per process
        pyro.set_rng_seed(datapoint_seeds(sampling.seed, [w.rank])[0] % 2**32)
    if sampling.ais:
        began = time.perf_counter()
        parts["ais"] = _ais(vae, x, sampling)
        seconds["ais"] = time.perf_counter() - began
    if sampling.decompose:
        began = time.perf_counter()
        parts["refined"] = _refine(vae, x, sampling)
        seconds["decomposition"] = time.perf_counter() - began
    return parts, seconds


def _importance_sampling(vae, x, ids, sampling: _Sampling) -> ElboGap | None:
    """log p̂ by importance sampling, with its curve against K, and the ELBO, per datapoint:
    each datapoint draws from its own stream, seeded by (seed, its row in the test set), so its
    numbers do not depend on the batch size, on the subset or on how processes share it."""
    parts = []
    desc = f"log p(x), K={sampling.num_samples}"
    for batch, batch_ids in _batches(x, sampling.batch_size, sampling.progress, desc, ids):
        streams = {"datapoint_ids": batch_ids, "precision": sampling.precision}
        ll = log_likelihood(
            vae.model,
            vae.guide,
            *batch,
            num_samples=sampling.num_samples,
            record_at=_curve_points(sampling.num_samples),
            proposal=sampling.proposal,
            seed=sampling.seed,
            compile=sampling.compile,
            **streams,
        )
        bound = elbo(
            vae.model,
            vae.guide,
            *batch,
            num_samples=sampling.elbo_samples,
            objective=sampling.estimator,
            seed=sampling.seed + 1,  # independent of the importance samples
            **streams,
        )
        parts.append(ElboGap(bound, ll))
    return ElboGap.concatenate(parts) if parts else None


def _ais(vae, x, sampling: _Sampling) -> LogLikelihood | None:
    parts = [
        log_likelihood(
            vae.model,
            vae.guide,
            *batch,
            num_samples=sampling.ais_samples,
            method="ais",
            num_steps=sampling.ais_steps,
        )
        for batch in _batches(
            x, sampling.batch_size, sampling.progress, f"AIS, {sampling.ais_samples} chains"
        )
    ]
    return LogLikelihood.concatenate(parts) if parts else None


def _refine(vae, x, sampling: _Sampling) -> Refinement | None:
    """q refined per datapoint, batch by batch."""
    parts = []
    for batch in _batches(x, sampling.batch_size, sampling.progress, "refining q per datapoint"):
        with pyro.validation_enabled(False):
            parts.append(
                refined_elbo(vae.model, vae.guide, *batch, num_samples=sampling.elbo_samples)
            )
    return Refinement.concatenate(parts) if parts else None


def _compose(setup: EvaluationSetup, gathered: list[dict], seconds) -> Evaluation:
    """One :class:`Evaluation` of the processes' results, in rank order."""

    def joined(name, concatenate):
        present = [p[name] for p in gathered if p.get(name) is not None]
        return concatenate(present) if present else None

    gap = joined("gap", ElboGap.concatenate)
    ais = joined("ais", LogLikelihood.concatenate)
    refined = joined("refined", Refinement.concatenate)
    decomposition = None
    if refined is not None:
        best = ais if ais is not None else gap.log_likelihood
        decomposition = GapDecomposition.of(best, gap.elbo, refined)
    return Evaluation(setup, gap, ais, decomposition, seconds=seconds)


def _write(run_dir: Path, evaluation: Evaluation, report: dict) -> Evaluation:
    """evaluation.npz, evaluation.nc, the plots and the report section; the evaluation with
    its plots."""
    with atomic_path(run_dir / "evaluation.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **evaluation.arrays())
    with atomic_path(run_dir / "evaluation.nc") as tmp:
        evaluation.inference_data().to_netcdf(str(tmp))
    evaluation = evaluation.with_plots(*draw_evaluation(run_dir, evaluation))
    report["evaluation"] = evaluation.summary()
    render_report(run_dir, report)
    return evaluation

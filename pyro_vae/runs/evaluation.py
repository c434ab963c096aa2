"""One evaluation of a run, typed: :class:`Evaluation` composes the very results the estimators
return — the ELBO gap (``pv.elbo_gap``'s :class:`~pyro_vae.ElboGap`: importance-sampled log p̂
with its curve against K, and the ELBO), AIS's :class:`~pyro_vae.LogLikelihood`, the
:class:`~pyro_vae.GapDecomposition`, :class:`~pyro_vae.ElboSurgery` and
:class:`~pyro_vae.LatentUsage` — with one mask of usable datapoints applied to all of them.

It is written three ways, all from here: the per-datapoint arrays of ``evaluation.npz``
(:meth:`Evaluation.arrays`, described by :data:`~pyro_vae.results.evaluation.ARRAYS`), the same
as an ``arviz.InferenceData`` (``evaluation.nc``), and the report section
(:attr:`Evaluation.report`, an :class:`~pyro_vae.results.evaluation.EvaluationReport`).

A datapoint is usable where its log p̂ and ELBO are finite and its log weights kept their
precision: the largest |log w| or |estimate| behind any of its numbers, in the dtype the pair's
densities are summed in, is resolved to 0.1 nat or better
(:func:`~pyro_vae.inference.weights.precision_lost`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from ..inference.elbo import ElboGap
from ..inference.gap import GapDecomposition
from ..inference.log_likelihood import LogLikelihood
from ..inference.steps import StepwiseEstimate
from ..inference.surgery import ElboSurgery, LatentUsage
from ..inference.weights import (
    PRECISION_TOLERANCE,
    float_spacing,
    largest_abs_log_weight,
    precision_lost,
)
from ..results.evaluation import (
    ARRAYS,
    AisSection,
    ClassificationSection,
    CurvePoint,
    DecompositionSection,
    EvaluationReport,
    PrecisionLoss,
    StepsSection,
    SurgerySection,
    UsageSection,
    health_notes,
)
from ..results.result import Result, SummaryKeys
from ..results.schema import from_json, to_json
from ..results.stats import (
    Difference,
    KhatCounts,
    Stats,
    as_numpy,
    count_non_finite,
    finite_median,
)
from ..results.tables import jsonable


@dataclass(frozen=True)
class EvaluationSetup:
    """What was evaluated, and how: the data set and split, the rows (``test_index``), the
    samples, the proposal and precision, the processes, the seed and the checkpoint."""

    data: str
    test_index: np.ndarray
    num_test: int
    num_samples: int
    elbo_samples: int
    elbo_estimator: str
    proposal: str = "guide"
    precision: str = "fp32"
    processes: int = 1
    seed: int = 0
    checkpoint_epoch: int | None = None
    weight_dtype: torch.dtype = torch.float32  # what the pair sums its log densities in
    split: str = "test"
    checkpoint: str = "last"  # the last epoch's weights, or the best by the validation ELBO


@dataclass(frozen=True, repr=False, eq=False)
class Evaluation(SummaryKeys, Result):
    """The results of one evaluation, with their timings (seconds per part) and plots."""

    setup: EvaluationSetup
    gap: ElboGap
    ais: LogLikelihood | None = None
    decomposition: GapDecomposition | None = None
    surgery: ElboSurgery | None = None
    usage: LatentUsage | None = None
    #: Each classifier of a partially observed node, scored on the evaluated datapoints.
    classification: tuple[ClassificationSection, ...] = ()
    #: Per time step of a sequence pair: log p̂(x_t | x_<t), the ELBO's terms, the gap.
    steps: StepwiseEstimate | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    plots: dict[str, str] = field(default_factory=dict)
    plots_skipped: dict[str, str] = field(default_factory=dict)

    @property
    def log_likelihood(self) -> LogLikelihood:
        return self.gap.log_likelihood

    @property
    def num_data(self) -> int:
        return self.gap.num_data

    @cached_property
    def magnitude(self) -> np.ndarray:
        """Per datapoint, the largest |log w| or |estimate| behind its numbers (nats)."""
        parts = [as_numpy(largest_abs_log_weight(self.log_likelihood))]
        parts += [np.abs(as_numpy(v)) for v in self._log_densities().values()]
        return np.fmax.reduce(parts)

    def _log_densities(self) -> dict[str, torch.Tensor]:
        """The per-datapoint estimates in nats whose size tells how large the log weights
        behind them are."""
        values = {"log_px": self.log_likelihood.log_px, "elbo": self.gap.elbo.elbo}
        if self.ais is not None:
            values["ais_log_px"] = self.ais.log_px
        if self.decomposition is not None:
            values["elbo_refined"] = self.decomposition.elbo_refined
        return values

    @cached_property
    def precision_lost(self) -> np.ndarray:
        magnitude = torch.from_numpy(self.magnitude)
        return precision_lost(magnitude, self.setup.weight_dtype).numpy()

    @cached_property
    def usable(self) -> np.ndarray:
        """The datapoints every mean is over: finite log p̂ and ELBO, precision kept."""
        ll, bound = self.log_likelihood, self.gap.elbo
        finite = np.isfinite(as_numpy(ll.log_px)) & np.isfinite(as_numpy(bound.elbo))
        return finite & ~self.precision_lost

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-datapoint arrays of ``evaluation.npz``, in the order they are written
        (:data:`~pyro_vae.results.evaluation.ARRAYS`): a new dict, of arrays computed once."""
        return dict(self._arrays)

    @cached_property
    def _arrays(self) -> dict[str, np.ndarray]:
        ll, bound, d = self.log_likelihood, self.gap.elbo, self.decomposition
        values = {
            "log_px": ll.log_px,
            "stderr": ll.stderr,
            "ess": ll.ess,
            "khat": ll.khat,
            "elbo": bound.elbo,
            "elbo_stderr": bound.stderr,
            "gap": self.gap.gap,
            "gap_stderr": self.gap.stderr,
        }
        if self.ais is not None:
            values["ais_log_px"] = self.ais.log_px
            values["ais_stderr"] = self.ais.stderr
            values["ais_acceptance"] = self.ais.details["acceptance"]
        if d is not None:
            values["elbo_refined"] = d.elbo_refined
            values["elbo_refined_stderr"] = d.elbo_refined_stderr
            values["refine_converged"] = d.converged
            values["approximation_gap"] = d.approximation_gap
            values["amortization_gap"] = d.amortization_gap
        arrays = {k: as_numpy(v) for k, v in values.items()}
        arrays["test_index"] = np.asarray(self.setup.test_index)
        arrays["log_weight_magnitude"] = self.magnitude
        arrays["precision_lost"] = self.precision_lost
        return {k: arrays[k] for k in ARRAYS if k in arrays}

    def with_plots(self, plots: dict[str, str], skipped: dict[str, str]) -> Evaluation:
        """This evaluation with its plots: its report is built anew, the per-datapoint values
        it has computed (which the plots do not change) are carried over."""
        drawn = dataclasses.replace(self, plots=plots, plots_skipped=skipped)
        for name in ("magnitude", "precision_lost", "usable", "_arrays"):
            if name in self.__dict__:
                drawn.__dict__[name] = self.__dict__[name]
        return drawn

    @cached_property
    def report(self) -> EvaluationReport:
        """The report section: settings, means over the usable datapoints, each explanation."""
        s, keep, ll = self.setup, self.usable, self.log_likelihood
        arrays = self.arrays()
        non_finite, lost = self._non_finite(arrays), self._precision_loss()
        return EvaluationReport(
            **{k: getattr(s, k) for k in ("data", "split", "num_test", "num_samples")},
            **{k: getattr(s, k) for k in ("proposal", "precision", "processes", "seed")},
            **{k: getattr(s, k) for k in ("elbo_samples", "elbo_estimator", "checkpoint_epoch")},
            checkpoint=s.checkpoint,
            num_data=self.num_data,
            num_used=int(keep.sum()),
            non_finite=non_finite,
            precision_lost=lost,
            log_px=Stats.of(ll.log_px, ll.stderr, keep),
            elbo=Stats.of(self.gap.elbo.elbo, self.gap.elbo.stderr, keep),
            gap=Stats.of(self.gap.gap, self.gap.stderr, keep),
            ess_median=finite_median(arrays["ess"][keep]),
            **_khat_fields(KhatCounts.of(arrays["khat"][keep])),
            log_px_by_num_samples=self._curve(),
            seconds=self.seconds.get("importance_sampling", 0.0),
            compile_seconds=self.seconds.get("compiling"),
            ais=self._ais_section(),
            decomposition=self._decomposition_section(),
            surgery=_section(SurgerySection, self.surgery),
            latent_usage=_section(UsageSection, self.usage),
            classification=list(self.classification) or None,
            steps=_steps_section(self.steps),
            peak_rss_mb=self.peak_rss_mb,
            plots=self.plots,
            plots_skipped=self.plots_skipped,
            notes=health_notes(non_finite, self.num_data, lost),
            estimand=ll.estimand,
        )

    def _non_finite(self, arrays) -> dict[str, int]:
        """Non-finite estimates per kind. k̂ counts only where the weights themselves are not
        finite; elsewhere a non-finite k̂ means too few distinct weights (``khat_undefined``)."""
        bad_khat = int((~np.isfinite(arrays["khat"]) & ~np.isfinite(arrays["log_px"])).sum())
        return {
            k: bad_khat if k == "khat" else count_non_finite(arrays[k])
            for k in NON_FINITE
            if k in arrays
        }

    def _precision_loss(self) -> PrecisionLoss:
        lost, dtype = self.precision_lost, self.setup.weight_dtype
        worst = float(self.magnitude[lost].max()) if lost.any() else None
        return PrecisionLoss(
            num_data=int(lost.sum()),
            dtype=str(dtype).removeprefix("torch."),
            tolerance=PRECISION_TOLERANCE,
            max_abs_log_weight=worst,
            spacing=None if worst is None else float(float_spacing(worst, dtype)),
        )

    def _curve(self) -> list[CurvePoint]:
        """Mean log p̂ from the first K samples, for each K, over the usable datapoints whose
        estimate at that K is finite (None where there is none; no stderr for K = 1)."""
        points = []
        for k, (values, errors) in (self.log_likelihood.by_num_samples or {}).items():
            keep = self.usable & np.isfinite(as_numpy(values))
            stats = Stats.of(values, errors, keep)
            points.append(CurvePoint(k, stats.mean, stats.mc_stderr if k > 1 else None))
        return points

    def _ais_section(self) -> AisSection | None:
        """AIS's log p̂ and its difference from importance sampling, over the usable datapoints
        where AIS is finite too."""
        if self.ais is None:
            return None
        ais, is_log_px = as_numpy(self.ais.log_px), as_numpy(self.log_likelihood.log_px)
        keep = self.usable & np.isfinite(ais)
        acceptance = as_numpy(self.ais.details["acceptance"])
        acceptance = acceptance[np.isfinite(acceptance)]
        return AisSection(
            num_samples=self.ais.num_samples,
            num_steps=self.ais.details["num_steps"],
            log_px=Stats.of(ais, self.ais.stderr, keep),
            minus_is=Difference.of((ais - is_log_px)[keep]),
            acceptance_mean=float(acceptance.mean()) if len(acceptance) else None,
            seconds=self.seconds.get("ais", 0.0),
        )

    def _decomposition_section(self) -> DecompositionSection | None:
        """The two gaps, against the best log p̂ measured (AIS where it ran), over the usable
        datapoints where both are finite."""
        d = self.decomposition
        if d is None:
            return None
        stats = d.stats(self.usable & as_numpy(d.usable))
        return DecompositionSection(
            log_px_from=d.method.value,
            elbo_refined=stats["elbo_refined"],
            approximation_gap=stats["approximation_gap"],
            amortization_gap=stats["amortization_gap"],
            converged=int(d.converged.sum()),
            max_refine_steps=d.refine_steps,
            seconds=self.seconds.get("decomposition", 0.0),
            unreliable=int(d.unreliable.sum()),
            negative_gaps=int((d.negative & torch.from_numpy(self.usable)).sum()),
        )

    def inference_data(self):
        """The per-datapoint results as an ``arviz.InferenceData``: log p̂ in the
        ``log_likelihood`` group (one chain, one draw, a ``datapoint`` dimension whose
        coordinate is the row in the test split), everything else in ``sample_stats``."""
        with warnings.catch_warnings():  # arviz announces its refactor on import
            warnings.simplefilter("ignore", FutureWarning)
            import arviz

        arrays = self.arrays()

        def one_draw(values):
            return np.asarray(values, dtype=np.float64)[None, None]

        stats = {k: one_draw(v) for k, v in arrays.items() if k not in ("log_px", "test_index")}
        return arviz.from_dict(
            log_likelihood={"x": one_draw(arrays["log_px"])},
            sample_stats=stats,
            dims={k: ["datapoint"] for k in [*stats, "x"]},
            coords={"datapoint": np.asarray(arrays["test_index"])},
        )


#: The per-datapoint estimates whose non-finite values are counted, where they were computed.
NON_FINITE = ("log_px", "elbo", "gap", "ess", "khat", "ais_log_px", "elbo_refined")


def _section(cls, result):
    """A result's summary read as the report's section ``cls`` (keys ``cls`` lacks are left
    out); None without the result."""
    return None if result is None else from_json(cls, to_json(result.summary()))


def _khat_fields(counts: KhatCounts) -> dict:
    return {
        "khat_median": counts.median,
        "khat_above": counts.above,
        "khat_undefined": counts.undefined,
    }


def _steps_section(found: StepwiseEstimate | None) -> StepsSection | None:
    if found is None:
        return None
    columns = [jsonable(v) for v in found.table_rows.values()]
    return StepsSection(
        list(found.steps),
        found.num_samples,
        *columns[:5],
        [int(n) for n in columns[5]],
        found.totals(),
    )

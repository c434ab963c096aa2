"""log p(x) by importance sampling, per datapoint, for any Pyro pair.

The estimator of Burda et al. (2016), eq. (8), with K samples z_k ~ q(z | x):

.. math:: \\log \\hat p(x) = \\log \\frac{1}{K} \\sum_{k=1}^K \\frac{p(x, z_k)}{q(z_k \\mid x)},

a lower bound in expectation that rises to log p(x) as K grows. Samples are processed in chunks
with a streaming log-sum-exp in float64, so memory does not grow with K. With the normalized
weights :math:`\\bar w_k` it reports, per datapoint, the delta-method standard error
:math:`\\sqrt{(K \\sum_k \\bar w_k^2 - 1)/(K - 1)}`, the effective sample size
:math:`1 / \\sum_k \\bar w_k^2`, and the Pareto k̂ of the largest weights (Vehtari et al. 2024,
"Pareto smoothed importance sampling"; k̂ > 0.7 means the estimate cannot be trusted).

With ``seed=`` each datapoint draws its samples from its own stream
(:mod:`pyro_vae.inference.streams`), so its estimate is the same whatever the batch. A
spec-built pair is weighed straight from its modules
(:meth:`~pyro_vae.LatentModel.importance_log_weights`, the same draws without Pyro's traces),
after a check on a few samples that it gives the traced weights.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from functools import partial

import pyro
import torch

from ..results.choices import Method, Proposal
from .ais import ais_log_likelihood
from .compiled import check_compile, compile_pays, compiled_pass
from .importance import log_weights
from .layout import inspect_pair, owner_method
from .particles import particles_of
from .precision import computing_in, data_device
from .streams import each_datapoint, enter_stream, random_streams
from .weights import (
    ROWS_PER_CHUNK,
    LogLikelihood,
    _check_num_samples,
    _chunks,
    _StreamingWeights,
)

__all__ = ["ROWS_PER_CHUNK", "LogLikelihood", "log_likelihood"]

#: How closely the modules' weights must match the traced ones on the checked samples, relative
#: to the largest weight (they agree to float rounding, ~1e-7).
FAST_RTOL = 1e-4
FAST_CHECK_SAMPLES = 8


def log_likelihood(
    model,
    guide,
    *args,
    num_samples: int = 1000,
    method: str = "is",
    num_steps: int | None = None,
    chunk_size: int | None = None,
    proposal: str = "guide",
    record_at=(),
    ais_options: dict | None = None,
    progress: bool | None = None,
    seed: int | None = None,
    datapoint_ids=None,
    precision: str = "fp32",
    data_plate: str | None = None,
    compile: bool | None = None,
    **kwargs,
) -> LogLikelihood:
    """Estimate of log p(x) for every datapoint in the ``"data"`` plate.

    :param model: any Pyro model whose batch is in ``pyro.plate("data", N)``.
    :param guide: its guide (the proposal); ``proposal="prior"`` ignores it and samples p(z).
    :param num_samples: K, the number of importance samples (AIS: chains) per datapoint.
    :param method: ``"is"``, importance sampling; ``"ais"``, annealed importance sampling with
        ``num_steps`` intermediate densities (default 500) and HMC transitions
        (:mod:`pyro_vae.inference.ais`; ``ais_options``: ``leapfrog_steps``, ``step_size``,
        ``target_accept``).
    :param chunk_size: samples per vectorized pass (default: about 16384 / N, or 16384 per
        datapoint with ``seed``); IS only.
    :param record_at: values of K < ``num_samples`` at which to also record the estimate from
        the first K samples (``by_num_samples``): the curve of log p̂ against K, for free; IS
        only.
    :param seed: None: draw the batch's samples together from the global random stream.
        An integer: each datapoint alone, from its own stream seeded by ``(seed, its id)``, so
        that its estimate does not depend on the batch (IS only).
    :param datapoint_ids: with ``seed``, the id of each datapoint (say, its row in the full
        test set); default ``0 … N−1``.
    :param precision: ``"fp32"``, or ``"bf16"`` for bfloat16 matrix products
        (:mod:`pyro_vae.inference.precision`).
    :param progress: a progress bar over the annealing steps (AIS).
    :param data_plate: the name of the plate the datapoints are in, where several plates
        enclose every observed site and the outermost is not it
        (:mod:`~pyro_vae.inference.layout`).
    :param compile: weigh a spec-built pair's samples with its pass compiled by
        ``torch.compile`` (:mod:`pyro_vae.inference.compiled`): True, False, or None (the
        default) for where the estimate is large enough to pay for compiling. The result's
        ``details["compile_seconds"]`` is the time the first compiled pass took (the
        compilation; near 0 once compiled in this process).
    """
    check_compile(compile)
    if Method.of(method) is Method.AIS:
        _refuse_for_ais(record_at, chunk_size, seed, precision, compile)
        options = {"num_steps": num_steps or 500, "progress": progress, **(ais_options or {})}
        options["data_plate"] = data_plate
        return ais_log_likelihood(
            model, guide, args, kwargs, num_samples=num_samples, proposal=proposal, **options
        )
    if num_steps is not None or ais_options:
        raise ValueError("num_steps and ais_options are for method='ais'")
    _check_num_samples(num_samples)
    sampling = _Sampling(model, guide, Proposal.of(proposal), num_samples, chunk_size, precision)
    layout = inspect_pair(model, guide, args, kwargs, sampling.proposal, data_plate=data_plate)
    return sampling.run(args, kwargs, layout, seed, datapoint_ids, record_at, compile)


def _refuse_for_ais(record_at, chunk_size, seed, precision, compile) -> None:
    """Importance sampling's own options, refused with ``method="ais"``."""
    if record_at or chunk_size is not None or seed is not None or precision != "fp32":
        raise ValueError("record_at, chunk_size, seed and precision are for method='is'")
    if compile:
        raise ValueError("compile is for method='is'")


@dataclass(frozen=True)
class _Sampling:
    """How one call of :func:`log_likelihood` draws and weighs its importance samples."""

    model: object
    guide: object
    proposal: Proposal
    num_samples: int
    chunk_size: int | None
    precision: str

    def run(self, args, kwargs, layout, seed, datapoint_ids, record_at, compile):
        """The estimate of every datapoint of the call (see :func:`log_likelihood`)."""
        if compile is None:
            compile = compile_pays(self.num_samples, layout.num_data)
        # The passes' shape: each datapoint alone with a seed, else the whole batch.
        rows = 1 if seed is not None else layout.num_data
        weigh, details = self.weigher(args, kwargs, layout, compile and rows)
        # A curve was asked for (even one of K alone): it ends at K.
        k = self.num_samples
        curve = tuple(sorted(j for j in record_at if 0 < j < k)) if record_at else None
        if seed is None:
            result = self.estimate(weigh, args, kwargs, layout.num_data, curve)
        else:
            streams = each_datapoint(
                self.model, self.guide, args, kwargs, layout, seed, datapoint_ids,
                self.proposal.value, layout.data_plate,
            )  # fmt: skip
            result = LogLikelihood.concatenate(
                [self.estimate(weigh, a, kw, 1, curve) for a, kw in streams]
            )
        details = {**result.details, **details}
        return replace(
            result, estimand=layout.estimand, particles=particles_of(layout), details=details
        )

    def estimate(self, weigh, args, kwargs, num_data, record_at) -> LogLikelihood:
        """The estimate of ``num_data`` datapoints, with the curve at ``record_at`` (None: no
        curve) and at K."""
        stream = _StreamingWeights(num_data, self.num_samples)
        curve = {}
        device = data_device(args, kwargs)
        # inspect_pair ran the pair once with Pyro's checks on; repeating the checks on every
        # chunk costs up to a fifth of the time (supports re-checked on (K, N, D) tensors).
        with torch.no_grad(), pyro.validation_enabled(False), computing_in(self.precision, device):
            for k in _chunks(self.num_samples, self.chunk_size, num_data):
                stream.add_recording(weigh(args, kwargs, k), record_at or (), curve)
        result = stream.result()
        if record_at is None:
            return result
        curve[self.num_samples] = (result.log_px, result.stderr)
        return replace(result, by_num_samples=dict(sorted(curve.items())))

    def weigher(self, args, kwargs, layout, compiled_rows):
        """``(weigh, details)``: ``weigh(args, kwargs, k)`` gives ``(k, N)`` log weights; from
        the modules of a spec-built pair (compiled for passes of ``compiled_rows``
        datapoints, where that is not 0) when they give the traced weights on a few
        samples, else from the traces. ``details``: the compilation's seconds, if any."""
        model, guide, proposal = self.model, self.guide, self.proposal

        def traced(args, kwargs, k):
            return log_weights(
                model, guide, args, kwargs, num_samples=k, layout=layout, proposal=proposal
            )

        fast = owner_method(model, guide, "importance_log_weights", args, kwargs)
        if fast is None or layout.enumerated:
            return traced, {}
        if compiled_rows:
            compiled = self._compiled(traced, fast, args[0][:compiled_rows])
            if compiled is not None:
                return compiled
        if not self._agrees(traced, fast, args[0][:2], FAST_CHECK_SAMPLES):
            return traced, {}
        return (lambda args, kwargs, k: fast(args[0], k, proposal.value)), {}

    def _compiled(self, traced, fast, x):
        """The compiled weigher and its compile time, when compiling works and the compiled
        pass gives the traced weights at the shape it runs at (``x``'s rows); else None."""
        owner, proposal = fast.__self__, self.proposal.value
        rows = owner.pass_samples(len(x), self.num_samples)
        fast = partial(fast, score=compiled_pass(owner), rows=rows)
        began = time.perf_counter()
        try:
            agrees = self._agrees(traced, fast, x, rows, compiled=True)
        except Exception as error:  # noqa: BLE001 -- any failure to compile falls back
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            warnings.warn(f"torch.compile failed ({reason}); weighing uncompiled", stacklevel=4)
            return None
        if not agrees:
            return None
        seconds = time.perf_counter() - began
        return (lambda args, kwargs, k: fast(args[0], k, proposal)), {"compile_seconds": seconds}

    def _agrees(self, traced, fast, x, k, compiled=False) -> bool:
        """Whether ``fast`` gives the traced weights of ``x`` from the same ``k`` draws."""
        device = x.device
        k = min(self.num_samples, k)
        with (
            torch.no_grad(),
            pyro.validation_enabled(False),
            computing_in(self.precision, device),
            random_streams(device),
        ):
            check_seed = int(torch.randint(2**62, ()))
            enter_stream(check_seed, device)
            expected = traced((x,), {}, k)
            enter_stream(check_seed, device)
            got = fast(x, k, self.proposal.value)
        tolerance = FAST_RTOL * max(1.0, expected.abs().max().item())
        if got.shape == expected.shape and (got - expected).abs().max() <= tolerance:
            return True
        what = "compiled importance_log_weights" if compiled else "importance_log_weights"
        instead = "weighing uncompiled" if compiled else "using the traces"
        warnings.warn(
            f"the model's {what} disagree with the traced weights; {instead}", stacklevel=4
        )
        return False

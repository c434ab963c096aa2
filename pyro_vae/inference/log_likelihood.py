"""log p(x) by importance sampling, per datapoint, for any Pyro pair.

The estimator of Burda et al. (2016), eq. (8), with K samples z_k ~ q(z | x):

.. math:: \\log \\hat p(x) = \\log \\frac{1}{K} \\sum_{k=1}^K \\frac{p(x, z_k)}{q(z_k \\mid x)},

a lower bound in expectation that rises to log p(x) as K grows. Samples are processed in chunks
with a streaming log-sum-exp in float64, so memory does not grow with K. With the normalized
weights :math:`\\bar w_k` it reports, per datapoint, the delta-method standard error
:math:`\\sqrt{(K \\sum_k \\bar w_k^2 - 1)/(K - 1)}`, the effective sample size
:math:`1 / \\sum_k \\bar w_k^2`, and the Pareto k̂ of the largest weights (Vehtari et al. 2024,
"Pareto smoothed importance sampling"; k̂ > 0.7 means the estimate cannot be trusted).
"""

from __future__ import annotations

import pyro
import torch

from .ais import ais_log_likelihood
from .importance import inspect_pair, log_weights
from .weights import ROWS_PER_CHUNK, LogLikelihood, _check_num_samples, _chunks, _StreamingWeights

__all__ = ["ROWS_PER_CHUNK", "LogLikelihood", "log_likelihood"]

METHODS = ("is", "ais")


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
    :param chunk_size: samples per vectorized pass (default: about 16384 / N); IS only.
    :param record_at: values of K < ``num_samples`` at which to also record the estimate from
        the first K samples (``by_num_samples``): the curve of log p̂ against K, for free; IS
        only.
    :param progress: a progress bar over the annealing steps (AIS).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "ais":
        if record_at or chunk_size is not None:
            raise ValueError("record_at and chunk_size are for method='is'")
        return ais_log_likelihood(
            model,
            guide,
            args,
            kwargs,
            num_samples=num_samples,
            num_steps=num_steps or 500,
            proposal=proposal,
            progress=progress,
            **(ais_options or {}),
        )
    if num_steps is not None or ais_options:
        raise ValueError("num_steps and ais_options are for method='ais'")
    _check_num_samples(num_samples)
    layout = inspect_pair(model, guide, args, kwargs, proposal)
    stream = _StreamingWeights(layout.num_data, num_samples)
    curve = {}
    # inspect_pair ran the pair once with Pyro's checks on; repeating the checks on every
    # chunk costs up to a fifth of the time (supports re-checked on (K, N, D) tensors).
    with torch.no_grad(), pyro.validation_enabled(False):
        for k in _chunks(num_samples, chunk_size, layout.num_data, record_at):
            stream.add(
                log_weights(
                    model, guide, args, kwargs, num_samples=k, layout=layout, proposal=proposal
                )
            )
            if stream.seen in record_at:
                curve[stream.seen] = stream.estimate()
    result = stream.result()
    if record_at:
        curve[num_samples] = (result.log_px, result.stderr)
        result.by_num_samples = dict(sorted(curve.items()))
    return result

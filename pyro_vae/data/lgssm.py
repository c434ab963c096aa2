"""``lgssm``: sequences from a linear-Gaussian state-space model with known parameters, and its
exact log-likelihood by the Kalman filter, the bound a sequence model's ELBO can be checked
against.

The model, for ``t = 1 .. T`` with ``z_0 = 0``::

    z_t = A z_{t-1} + b + eps_t,   eps_t ~ N(0, diag(q^2))
    x_t = C z_t + d + eta_t,       eta_t ~ N(0, diag(r^2))

so ``z_1 ~ N(b, diag(q^2))``. The parameters (:func:`lgssm_parameters`) are fixed for given
``latent_dim`` and ``dim``; only the draws depend on the seed, so two seeds give two samples of
one process and a model fitted to either can be compared with the same truth.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..errors import DataError, shown
from .dataset import LENGTHS, Dataset, step_mask
from .files import DataLocation
from .registry import DATASETS
from .synthetic import _check_counts, _check_values

#: The keys of the true parameters in :attr:`Dataset.truth`, in the order
#: :func:`kalman_log_likelihood` takes them.
PARAMETERS = ("A", "b", "q", "C", "d", "r")

#: The spectral radius of ``A``: below 1, so the state stays bounded over any number of steps.
RADIUS = 0.9

#: The state and observation noise standard deviations, the same in every dimension.
STATE_SCALE, OBSERVATION_SCALE = 0.5, 0.3

#: The most steps a sequence may have: the draws (and the Kalman filter) loop over steps.
MAX_STEPS = 100_000


def lgssm_parameters(latent_dim: int, dim: int) -> dict[str, torch.Tensor]:
    """The true parameters of ``lgssm``, float32, under the keys of :data:`PARAMETERS`.

    - ``A`` (latent_dim × latent_dim): :data:`RADIUS` times a block-diagonal rotation, the
      ``k``-th pair of latent dimensions turned by ``(k + 1) π / 8`` (a last, odd dimension is
      only shrunk); its eigenvalues all have modulus :data:`RADIUS`.
    - ``b`` (latent_dim,): 0.2 in even dimensions, -0.1 in odd ones.
    - ``q`` (latent_dim,): :data:`STATE_SCALE` everywhere (standard deviations).
    - ``C`` (dim × latent_dim): cosines ``cos(π (i + ½) j / dim)``, whose columns are
      orthogonal (transposed, with the roles swapped, when latent_dim > dim, so that its rows
      are): condition number at most √2.
    - ``d`` (dim,): 0.1 × (``i mod 3`` - 1), i.e. -0.1, 0, 0.1, -0.1, ...
    - ``r`` (dim,): :data:`OBSERVATION_SCALE` everywhere (standard deviations).
    """
    rotation = torch.eye(latent_dim, dtype=torch.float64) * RADIUS
    for k in range(latent_dim // 2):
        angle = (k + 1) * math.pi / 8
        cos, sin = math.cos(angle), math.sin(angle)
        block = RADIUS * torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
        rotation[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] = block
    latent, observed = torch.arange(latent_dim), torch.arange(dim)
    # Orthogonal columns when they fit (latent_dim <= dim), else orthogonal rows.
    loading = _cosines(dim, latent_dim) if latent_dim <= dim else _cosines(latent_dim, dim).T
    parameters = {
        "A": rotation,
        "b": torch.where(latent % 2 == 0, 0.2, -0.1),
        "q": torch.full((latent_dim,), STATE_SCALE),
        "C": loading,
        "d": 0.1 * (observed % 3 - 1),
        "r": torch.full((dim,), OBSERVATION_SCALE),
    }
    return {key: value.to(torch.float32).contiguous() for key, value in parameters.items()}


def _cosines(rows: int, columns: int) -> torch.Tensor:
    """``(rows, columns)`` DCT-II basis ``cos(π (i + ½) j / rows)``, orthogonal columns
    (``columns <= rows``)."""
    i = torch.arange(rows, dtype=torch.float64).unsqueeze(-1) + 0.5
    j = torch.arange(columns, dtype=torch.float64)
    return torch.cos(math.pi * i * j / rows)


def _transition(z: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """``z @ A.T`` for the block-diagonal ``A`` of :func:`lgssm_parameters`, one 2 × 2 block
    per pair of dimensions: linear in latent_dim where a dense product is quadratic."""
    n, latent_dim = z.shape
    pairs = latent_dim // 2
    moved = z * rotation.diagonal()  # right for a last, odd dimension; the pairs are replaced
    if pairs:
        k = torch.arange(pairs)
        # blocks[k, i, j] = A[2k + i, 2k + j]
        blocks = rotation[: 2 * pairs, : 2 * pairs].reshape(pairs, 2, pairs, 2)[k, :, k, :]
        paired = z[:, : 2 * pairs].reshape(n, pairs, 2)
        moved[:, : 2 * pairs] = torch.einsum("nkj,kij->nki", paired, blocks).reshape(n, -1)
    return moved


def _sample(
    truth: dict, n: int, steps: int, min_steps: int | None, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences ``(n, steps, dim)`` and their lengths: the lengths first (uniform in
    ``[min_steps, steps]``, or all ``steps``), then each step's state and observation noise.
    Every sequence is run for all ``steps`` and its tail zeroed, so a sequence's steps do not
    depend on its length."""
    dim, latent_dim = truth["C"].shape
    if min_steps is None:
        lengths = torch.full((n,), steps, dtype=torch.int64)
    else:
        lengths = torch.randint(min_steps, steps + 1, (n,), generator=generator)
    z = torch.zeros(n, latent_dim)  # z_0
    x = torch.empty(n, steps, dim)
    for t in range(steps):
        state_noise = torch.randn(n, latent_dim, generator=generator)
        z = _transition(z, truth["A"]) + truth["b"] + truth["q"] * state_noise
        observation_noise = torch.randn(n, dim, generator=generator)
        x[:, t] = z @ truth["C"].T + truth["d"] + truth["r"] * observation_noise
    x[~step_mask(lengths, steps)] = 0.0
    return x, lengths


def _check_min_steps(min_steps, steps: int) -> None:
    if min_steps is None:
        return
    if isinstance(min_steps, bool) or not isinstance(min_steps, int) or not 1 <= min_steps <= steps:
        raise DataError(
            f"data set 'lgssm': option 'min_steps' must be a whole number from 1 to steps "
            f"({steps}), or unset for sequences of equal length, got {shown(min_steps)}"
        )


@DATASETS.register("lgssm")
def load_lgssm(
    location: DataLocation,
    *,
    seed: int,
    n_train: int = 2000,
    n_test: int = 500,
    steps: int = 20,
    latent_dim: int = 2,
    dim: int = 4,
    min_steps: int | None = None,
) -> Dataset:
    """Sequences ``(N, steps, dim)`` of the linear-Gaussian state-space model of this module,
    with the parameters of :func:`lgssm_parameters` in :attr:`Dataset.truth`.

    :param steps: ``T``, the steps of the longest sequence (at most :data:`MAX_STEPS`).
    :param min_steps: when set, each sequence's length is drawn uniformly from
        ``[min_steps, steps]`` and its tail is zeros; unset, every sequence has ``steps`` steps.
    :param seed: seeds the draws (train, then test, from one generator), not the parameters.
    """
    _check_counts(
        "lgssm", n_train=n_train, n_test=n_test, steps=steps, latent_dim=latent_dim, dim=dim
    )
    if steps > MAX_STEPS:
        raise DataError(
            f"data set 'lgssm': option 'steps' must be at most {MAX_STEPS:,}, got {steps:,}"
        )
    _check_min_steps(min_steps, steps)
    _check_values(
        "lgssm",
        (n_train + n_test) * steps * (dim + latent_dim) + latent_dim * (latent_dim + dim),
        "(n_train + n_test) × steps × (dim + latent_dim)",
    )
    truth = lgssm_parameters(latent_dim, dim)
    generator = torch.Generator().manual_seed(seed)
    train, train_lengths = _sample(truth, n_train, steps, min_steps, generator)
    test, test_lengths = _sample(truth, n_test, steps, min_steps, generator)
    return Dataset(
        name="lgssm",
        train=train,
        test=test,
        image_shape=None,
        binarization="none",
        truth=truth,
        source="synthetic",
        columns={LENGTHS: (train_lengths, test_lengths)},
    )


class KalmanResult(NamedTuple):
    """The exact log-likelihood of each sequence and its one-step predictive terms.

    :param total: ``(N,)`` float64 ``log p(x_1, ..., x_L)`` of each sequence, ``L`` its length.
    :param per_step: ``(N, T)`` float64 ``log p(x_t | x_1, ..., x_{t-1})``, 0 past the length;
        it sums to ``total`` over ``t``.
    """

    total: torch.Tensor
    per_step: torch.Tensor


def kalman_log_likelihood(
    x: torch.Tensor,
    lengths: torch.Tensor | None,
    A: torch.Tensor,
    b: torch.Tensor,
    q: torch.Tensor,
    C: torch.Tensor,
    d: torch.Tensor,
    r: torch.Tensor,
) -> KalmanResult:
    """The exact log-likelihood of sequences ``x`` ``(N, T, D)`` under the model of this module
    with parameters ``A, b, q, C, d, r`` (``q``, ``r`` standard deviations), by the Kalman filter.

    Computed in float64 whatever the inputs' type, all sequences at once: the filter's
    covariances do not depend on the data, so they are shared and only the means are per
    sequence. ``lengths`` ``(N,)`` (``None``: all ``T``) cuts each sequence; what lies past it
    is never read.

    :raises ValueError: the shapes do not fit together, or a length is outside ``[1, T]``.
    """
    x, A, b, q, C, d, r = (v.to(torch.float64) for v in (x, A, b, q, C, d, r))
    n, steps, dim = _check_filter_shapes(x, A, b, q, C, d, r)
    lengths = _check_lengths(lengths, n, steps)
    state_noise, observation_noise = torch.diag(q**2), torch.diag(r**2)
    mean = torch.zeros(n, A.shape[0], dtype=torch.float64)  # filtered z_0 = 0, exactly
    covariance = torch.zeros_like(state_noise)
    per_step = torch.zeros(n, steps, dtype=torch.float64)
    constant = 0.5 * dim * math.log(2 * math.pi)
    for t in range(steps):
        mean = mean @ A.T + b  # predicted z_t
        covariance = A @ covariance @ A.T + state_noise
        projected = C @ covariance  # Cov(x_t, z_t | x_{<t})
        cholesky = torch.linalg.cholesky(projected @ C.T + observation_noise)
        residual = x[:, t] - (mean @ C.T + d)  # innovation, (N, D)
        white = torch.linalg.solve_triangular(cholesky, residual.T, upper=False)
        log_det = cholesky.diagonal().log().sum()
        per_step[:, t] = -0.5 * white.square().sum(0) - log_det - constant
        gain = torch.cholesky_solve(projected, cholesky)  # S^-1 C P, the gain transposed
        mean = mean + residual @ gain
        covariance = covariance - projected.T @ gain
        covariance = 0.5 * (covariance + covariance.T)  # keep it symmetric against rounding
    per_step = per_step * step_mask(lengths, steps)
    return KalmanResult(total=per_step.sum(-1), per_step=per_step)


def _check_filter_shapes(x, A, b, q, C, d, r) -> tuple[int, int, int]:
    """``(N, T, D)`` of ``x`` once every parameter's shape fits it."""
    if x.dim() != 3:
        raise ValueError(f"x must be (N, T, D) sequences, got shape {tuple(x.shape)}")
    n, steps, dim = x.shape
    latent_dim = A.shape[0] if A.dim() == 2 else -1
    expected = {
        "A": (A, (latent_dim, latent_dim)),
        "b": (b, (latent_dim,)),
        "q": (q, (latent_dim,)),
        "C": (C, (dim, latent_dim)),
        "d": (d, (dim,)),
        "r": (r, (dim,)),
    }
    for name, (value, shape) in expected.items():
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{name} has shape {tuple(value.shape)}, expected {shape} for x of shape "
                f"{tuple(x.shape)} and A of shape {tuple(A.shape)}"
            )
    return n, steps, dim


def _check_lengths(lengths: torch.Tensor | None, n: int, steps: int) -> torch.Tensor:
    if lengths is None:
        return torch.full((n,), steps, dtype=torch.int64)
    if lengths.shape != (n,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(
            f"lengths must be {n} integers, got {lengths.dtype} of shape {tuple(lengths.shape)}"
        )
    low, high = (int(lengths.min()), int(lengths.max())) if n else (1, steps)
    if low < 1 or high > steps:
        raise ValueError(f"lengths must be in [1, {steps}], got values from {low} to {high}")
    return lengths


def kalman_log_likelihood_of(dataset: Dataset, split: str) -> KalmanResult:
    """:func:`kalman_log_likelihood` of ``split`` ("train" or "test") of ``dataset`` under its
    true parameters (``dataset.truth``) and its ``lengths`` column: the exact log-likelihood
    a model fitted to an ``lgssm`` set can be scored against.

    :raises DataError: the set has no true state-space parameters or no ``lengths``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    missing = [key for key in PARAMETERS if key not in dataset.truth]
    if missing:
        raise DataError(
            f"data set {dataset.name!r} has no true state-space parameters (its truth has no "
            f"{missing[0]!r}); the Kalman log-likelihood needs {', '.join(PARAMETERS)}"
        )
    parameters = (dataset.truth[key] for key in PARAMETERS)
    x, lengths = dataset.array("x", split), dataset.array(LENGTHS, split)
    return kalman_log_likelihood(x, lengths, *parameters)

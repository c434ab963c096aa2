"""Synthetic sets with known generating parameters, to check that inference recovers them."""

from __future__ import annotations

import torch

from ..errors import DataError, shown
from .dataset import Dataset
from .files import DataLocation
from .registry import DATASETS

#: The most datapoints (or dimensions) a synthetic set's option may ask for.
MAX_COUNT = 10**7

#: The most float32 values a synthetic set may generate (1 GiB): ``n_train=10**7, dim=10**7``
#: passes each count's bound but would need 400 TB.
MAX_VALUES = 2**28


def _check_counts(name: str, **counts: int) -> None:
    # Options may come from a TOML file or the command line, so a float or string must be caught
    # here rather than deep inside torch, and a huge count before it is allocated.
    for option, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
            raise DataError(
                f"data set {name!r}: option {option!r} must be a positive integer, got "
                f"{shown(value)} (a whole number from 1 to {MAX_COUNT:,})"
            )


def _check_values(name: str, values: int, options: str) -> None:
    """Refuse a set of more than :data:`MAX_VALUES` values, naming the options that size it."""
    if values > MAX_VALUES:
        raise DataError(
            f"data set {name!r}: options {options} ask for {values:,} values, more than "
            f"{MAX_VALUES:,} (1 GiB of float32)"
        )


@DATASETS.register("mixture-1d")
def load_mixture_1d(
    location: DataLocation, *, seed: int, n_train: int = 2000, n_test: int = 1000
) -> Dataset:
    """Draws from the classic 1-D mixture of three Gaussians, shape ``(N, 1)``.

    Each point picks component ``k`` with probability ``weights[k]`` and is then
    Normal(``means[k]``, ``scales[k]``). The components are well separated and the means sorted,
    so recovered parameters can be matched to the truth by sorting. Train then test are drawn from
    one generator seeded with ``seed``.
    """
    _check_counts("mixture-1d", n_train=n_train, n_test=n_test)
    _check_values("mixture-1d", n_train + n_test, "n_train + n_test")
    weights = torch.tensor([0.3, 0.5, 0.2])
    means = torch.tensor([-4.0, 0.0, 3.5])
    scales = torch.tensor([0.8, 0.5, 0.6])
    generator = torch.Generator().manual_seed(seed)

    def sample(n: int) -> torch.Tensor:
        component = torch.multinomial(weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, generator=generator)
        return (means[component] + scales[component] * noise).unsqueeze(-1)

    train = sample(n_train)
    return Dataset(
        name="mixture-1d",
        train=train,
        test=sample(n_test),
        image_shape=None,
        binarization="none",
        truth={"weights": weights, "means": means, "scales": scales},
        source="synthetic",
    )


#: The largest noise σ: its square, in the covariance, must stay a finite float32 (< 3.4e38).
MAX_SIGMA = 1e18


@DATASETS.register("linear-gaussian")
def load_linear_gaussian(
    location: DataLocation,
    *,
    seed: int,
    n_train: int = 5000,
    n_test: int = 1000,
    dim: int = 5,
    latent_dim: int = 2,
    sigma: float = 0.5,
) -> Dataset:
    """Probabilistic-PCA data ``x = W z + b + sigma * eps`` with ``z ~ N(0, I)``, ``eps ~ N(0, I)``.

    The marginal is Normal(``b``, ``W W^T + sigma^2 I``), which :attr:`Dataset.truth` records
    as ``covariance`` so a fitted model can be compared without knowing ``W`` up to rotation.
    ``W`` and ``b`` (entries N(0, 1)) are drawn first, then train and test, all from one
    generator seeded with ``seed``.
    """
    _check_counts("linear-gaussian", n_train=n_train, n_test=n_test, dim=dim, latent_dim=latent_dim)
    _check_values(
        "linear-gaussian",
        (n_train + n_test) * (dim + latent_dim) + dim * latent_dim,
        "(n_train + n_test) × (dim + latent_dim)",
    )
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not sigma > 0:
        raise DataError(
            f"data set 'linear-gaussian': option 'sigma' must be positive, got {shown(sigma)}"
        )
    if not sigma <= MAX_SIGMA:  # inf too: the data would be infinite, the model's loss NaN
        raise DataError(
            f"data set 'linear-gaussian': option 'sigma' must be finite and at most "
            f"{MAX_SIGMA:g} (σ² in float32), got {shown(sigma)}"
        )
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(dim, latent_dim, generator=generator)
    bias = torch.randn(dim, generator=generator)

    def sample(n: int) -> torch.Tensor:
        latent = torch.randn(n, latent_dim, generator=generator)
        noise = torch.randn(n, dim, generator=generator)
        return latent @ weight.T + bias + sigma * noise

    train = sample(n_train)
    return Dataset(
        name="linear-gaussian",
        train=train,
        test=sample(n_test),
        image_shape=None,
        binarization="none",
        truth={
            "W": weight,
            "b": bias,
            "sigma": torch.tensor(float(sigma)),
            "covariance": weight @ weight.T + sigma**2 * torch.eye(dim),
        },
        source="synthetic",
    )

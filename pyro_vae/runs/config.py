"""What determines a training run (:class:`TrainConfig`, saved as ``config.json``) and the data set
it trains on."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data import Dataset, load_dataset
from ..errors import DataError, PyroVaeError
from ..model.latent_model import LatentModel
from ..objectives.registry import OBJECTIVES, objective_options


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

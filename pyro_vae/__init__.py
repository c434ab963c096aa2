"""pyro_vae: declarative latent-variable models in Pyro.

>>> import pyro_vae as pv
>>> vae = pv.load("bernoulli_vae", "mean_field", data_shape=(64,))
>>> run = pv.train(vae, "digits", objective="trace_mean_field", epochs=10)
"""

from .data import load_dataset
from .errors import CheckpointError, DataError, PyroVaeError, SpecError, TrainingDiverged
from .latent_model import LatentModel, load
from .objectives import OBJECTIVES
from .training import TrainConfig, TrainResult, estimate_elbo, load_run, resume, train

__version__ = "0.1.0"
__all__ = [
    "OBJECTIVES",
    "CheckpointError",
    "DataError",
    "LatentModel",
    "PyroVaeError",
    "SpecError",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "estimate_elbo",
    "load",
    "load_dataset",
    "load_run",
    "resume",
    "train",
]

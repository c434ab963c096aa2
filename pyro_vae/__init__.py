"""pyro_vae: declarative latent-variable models in Pyro."""

from .errors import CheckpointError, DataError, PyroVaeError, SpecError, TrainingDiverged
from .latent_model import LatentModel, load

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "DataError",
    "LatentModel",
    "PyroVaeError",
    "SpecError",
    "TrainingDiverged",
    "load",
]

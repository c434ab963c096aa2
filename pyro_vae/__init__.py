"""pyro_vae: declarative latent-variable models in Pyro.

>>> import pyro_vae as pv
>>> vae = pv.load("bernoulli_vae", "mean_field", data_shape=(64,))
>>> run = pv.train(vae, "digits", objective="trace_mean_field", epochs=10)
>>> ll = pv.log_likelihood(vae.model, vae.guide, x, num_samples=5000)  # any model/guide pair
>>> gap = pv.elbo_gap(vae.model, vae.guide, x, num_samples=5000)
>>> table = pv.compare_estimators(vae.model, vae.guide, x, estimators=["trace", "iwae:k=50"])
"""

from .compare import Comparison, compare_estimators
from .compare_run import compare_run, compare_training
from .data import load_dataset
from .errors import CheckpointError, DataError, PyroVaeError, SpecError, TrainingDiverged
from .evaluate_run import evaluate_run
from .evaluation import ElboEstimate, ElboGap, LogLikelihood, elbo, elbo_gap, log_likelihood
from .importance import ModelGuideError
from .latent_model import LatentModel, load
from .objectives import OBJECTIVES
from .training import TrainConfig, TrainResult, estimate_elbo, load_run, resume, train

__version__ = "0.1.0"
__all__ = [
    "Comparison",
    "compare_estimators",
    "compare_run",
    "compare_training",
    "ElboEstimate",
    "ElboGap",
    "LogLikelihood",
    "ModelGuideError",
    "elbo",
    "elbo_gap",
    "evaluate_run",
    "log_likelihood",
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

"""pyro_vae: declarative latent-variable models in Pyro.

>>> import pyro_vae as pv
>>> vae = pv.load("bernoulli_vae", "mean_field", data_shape=(64,))
>>> run = pv.train(vae, "digits", objective="trace_mean_field", epochs=10)
>>> ll = pv.log_likelihood(vae.model, vae.guide, x, num_samples=5000)  # any model/guide pair
>>> gap = pv.elbo_gap(vae.model, vae.guide, x, num_samples=5000)
>>> table = pv.compare_estimators(vae.model, vae.guide, x, estimators=["trace", "iwae:k=50"])

The package, in pipeline order (docs/architecture.md has the whole map):

- ``spec``: the TOML language, parsed and validated;
- ``model``: families, guide families and nets, built into ``LatentModel`` (Pyro callables);
- ``objectives``: ELBO estimators by name, their checks, the fused step, ``compare_estimators``;
- ``inference``: importance weights, ``log_likelihood``, ``elbo``, ``elbo_gap`` for ANY Pyro pair;
- ``runs``: training runs, checkpoints, evaluation and comparison of runs, reports, plots;
- ``data``, ``cli``; the base: ``errors``, ``registry``, ``bundled``, ``devices`` and ``results``
  (what every result is and how it prints).
"""

from .data import load_dataset
from .errors import (
    CheckpointError,
    DataError,
    ModelGuideError,
    PyroVaeError,
    SpecError,
    TrainingDiverged,
)
from .inference.ais import BDMC, bdmc
from .inference.arguments import register_slicer
from .inference.elbo import ElboEstimate, ElboGap, elbo, elbo_gap
from .inference.gap import GapDecomposition, gap_decomposition
from .inference.log_likelihood import LogLikelihood, log_likelihood
from .inference.surgery import ElboSurgery, LatentUsage, elbo_surgery, latent_usage
from .model.latent_model import LatentModel
from .model.loading import build_pair, load
from .model.sequence_model import SequenceModel
from .objectives.comparison import Comparison, compare_estimators
from .objectives.registry import OBJECTIVES
from .results.estimand import Estimand
from .runs.compare import compare_run, compare_training
from .runs.config import TrainConfig
from .runs.evaluate import evaluate_run
from .runs.evaluation import Evaluation
from .runs.run_dir import load_run
from .runs.training import TrainResult, estimate_elbo, resume, train

__version__ = "0.1.0"
__all__ = [
    "BDMC",
    "bdmc",
    "Comparison",
    "compare_estimators",
    "compare_run",
    "compare_training",
    "ElboEstimate",
    "ElboGap",
    "ElboSurgery",
    "Estimand",
    "Evaluation",
    "GapDecomposition",
    "LatentUsage",
    "LogLikelihood",
    "ModelGuideError",
    "elbo",
    "elbo_gap",
    "elbo_surgery",
    "gap_decomposition",
    "latent_usage",
    "evaluate_run",
    "log_likelihood",
    "OBJECTIVES",
    "CheckpointError",
    "DataError",
    "LatentModel",
    "SequenceModel",
    "build_pair",
    "PyroVaeError",
    "SpecError",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "estimate_elbo",
    "load",
    "load_dataset",
    "load_run",
    "register_slicer",
    "resume",
    "train",
]

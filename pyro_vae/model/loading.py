"""Build a model/guide pair from spec files, bundled spec names or parsed specs: a
:class:`~pyro_vae.model.latent_model.LatentModel`, or a
:class:`~pyro_vae.model.sequence_model.SequenceModel` where the model has a chain latent."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..devices import resolve_device
from ..errors import SpecError
from ..spec.parse import GuideSpec, ModelSpec
from ..spec.resolve import default_guide, read_guide, read_model
from .latent_model import LatentModel
from .sequence_model import SequenceModel


def load(
    model: str | Path | ModelSpec,
    guide: str | Path | GuideSpec | None = None,
    *,
    data_shape: Sequence[int],
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> LatentModel:
    """Build a :class:`LatentModel` from spec files or bundled spec names.

    ``guide=None`` takes the model spec's ``default_guide``. ``seed`` makes the initial weights
    reproducible without touching the global random state (they are drawn on the CPU, so the
    same seed gives the same weights on every device). ``device``: ``"auto"``, ``"cpu"``,
    ``"cuda"``, ``"cuda:N"`` or ``"mps"`` (:mod:`pyro_vae.devices`); default the CPU.
    """
    vae = _build(model, guide, data_shape, seed)
    return vae if device is None else vae.to(resolve_device(device))


def _build(model, guide, data_shape, seed) -> LatentModel:
    model_spec = read_model(model)
    if guide is None:
        if model_spec.default_guide is None:
            raise SpecError(model_spec.path, "default_guide", "no guide given and none set here")
        guide = default_guide(model_spec)
    guide_spec = read_guide(guide)
    if seed is None:
        return build_pair(model_spec, guide_spec, data_shape)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_pair(model_spec, guide_spec, data_shape)


def build_pair(model_spec: ModelSpec, guide_spec: GuideSpec, data_shape) -> LatentModel:
    """The pair of parsed specs: a :class:`~pyro_vae.model.sequence_model.SequenceModel`
    where the model has a chain latent (``data_shape`` then ``(T, D)``), else a
    :class:`LatentModel`."""
    cls = SequenceModel if model_spec.sequential else LatentModel
    return cls(model_spec, guide_spec, data_shape)

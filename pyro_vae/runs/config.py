"""What determines a training run (:class:`TrainConfig`, saved as ``config.json``) and the data set
it trains and is evaluated on (:func:`prepare_data`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from ..data import Dataset, load_dataset
from ..data.binarize import check_binarization
from ..data.validation import check_validation, with_validation
from ..errors import DataError, PyroVaeError
from ..model.latent_model import LatentModel
from ..objectives.free_bits import FREE_BITS_GROUPS
from ..objectives.registry import ObjectiveChoice
from ..spec.parse import ModelSpec
from .batches import JUST_X
from .schedules import LrSchedule


@dataclass(frozen=True)
class Limit:
    """The values a numeric setting may take: ``kind`` (int or float) from ``low`` (excluded
    when ``open_low``) to ``high``; the upper bounds are far above any sensible run and refuse
    a typo before it allocates or runs for years."""

    kind: type
    low: float
    high: float
    open_low: bool = False

    def check(self, name: str, value) -> None:
        number = not isinstance(value, bool) and isinstance(value, int | float)
        whole = number and math.isfinite(value) and value == int(value)
        above = number and (value > self.low if self.open_low else value >= self.low)
        if not (above and value <= self.high and (self.kind is float or whole)):
            kind = "whole number" if self.kind is int else "finite number"
            low = f"> {self.low:g}" if self.open_low else f">= {self.low:g}"
            raise PyroVaeError(f"{name} must be a {kind} {low} and <= {self.high:g}, got {value!r}")


LIMITS = {
    "epochs": Limit(int, 1, 10**6),
    "batch_size": Limit(int, 1, 10**7),
    "lr": Limit(float, 0, 1e6, open_low=True),
    "eps": Limit(float, 0, 1e6, open_low=True),
    "lr_decay": Limit(float, 0, 1e6, open_low=True),
    "kl_weight": Limit(float, 0, 1e6),
    "kl_warmup": Limit(int, 0, 10**6),
    "seed": Limit(int, 0, 2**32 - 1),  # NumPy's generators (the data loaders') take no larger
    "free_bits": Limit(float, 0, 1e6),
}

#: Settings that need a validation split, and what each does with it (for the refusal).
NEEDS_VALIDATION = {"early_stop": "stops on the validation ELBO"}

#: Settings written to ``config.json`` only when they differ from their default, so that the
#: files of runs made before they existed read back the same.
OPTIONAL = {"lr_schedule": None, "validation": None, "early_stop": None, "free_bits": 0.0,
            "free_bits_per": "site", "tensorboard": False, "compile": False}  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved as ``config.json``).

    ``objective`` is one :class:`~pyro_vae.objectives.registry.ObjectiveChoice` (name, number of
    particles, options); ``config.json`` spells it as the fields ``objective``, ``num_particles``
    and ``objective_options``.
    """

    data: str = "digits"
    objective: ObjectiveChoice | None = None  # None: the lowest-variance ELBO that suits the model
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    eps: float = 1e-8
    lr_decay: float = 1.0  # per-epoch factor: epoch e trains with lr · lr_decay^(e-1)
    #: A learning-rate schedule on top (``multistep:milestones=200+350,gamma=0.631``;
    #: :mod:`pyro_vae.runs.schedules`); None: none.
    lr_schedule: str | None = None
    kl_weight: float = 1.0  # β on the KL term of the training ELBO (the β-VAE); 1: the ELBO
    kl_warmup: int = 0  # epochs over which β ramps linearly from 0 (KL warm-up); 0: none
    #: Free bits (Kingma et al. 2016): each latent group's KL, averaged over the batch, counts
    #: at least this many nats in the training objective (:mod:`pyro_vae.objectives.free_bits`).
    free_bits: float = 0.0
    free_bits_per: str = "site"  # a group: each latent "site", or each "dim" of one
    #: The validation split (:mod:`pyro_vae.data.validation`): "own", "auto", a number of train
    #: rows or a fraction; recorded as settled ("own" or the rows). None: no validation.
    validation: int | float | str | None = None
    #: Stop when the validation ELBO has not improved for this many epochs; None: never.
    early_stop: int | None = None
    tensorboard: bool = False  # also write each epoch's metrics for TensorBoard
    seed: int = 0
    binarization: str | None = None  # None: "dynamic" for binary likelihoods on grey data
    data_options: dict = field(default_factory=dict)
    fused: bool = True  # use the fused step (pyro_vae.objectives.fused) where it applies
    compile: bool = False  # the fused step through torch.compile (FusedELBO.compile)
    #: The data set's arrays the pair is called with, in order: model(x), model(x, labels).
    args: tuple[str, ...] = JUST_X

    def validate(self) -> None:
        """Refuse a setting of the wrong type or out of range, naming it (``config.json`` is
        read through here too, so a hand-edited file is checked like the command line)."""
        for name, limit in LIMITS.items():
            limit.check(name, getattr(self, name))
        if not isinstance(self.data, str) or not self.data:
            raise PyroVaeError(f"data must be a data set name or file, got {self.data!r}")
        if not isinstance(self.data_options, dict):
            raise PyroVaeError(f"data_options must be a table, got {self.data_options!r}")
        for name in ("fused", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise PyroVaeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if (
            not isinstance(self.args, tuple | list)
            or not self.args
            or not all(isinstance(a, str) for a in self.args)
        ):
            raise PyroVaeError(f"args must be names of the data set's arrays, got {self.args!r}")
        self.args = tuple(self.args)
        if self.lr_schedule is not None:
            self.lr_schedule = str(LrSchedule.parse(self.lr_schedule))  # checked, canonical
        self._validate_selection()
        if self.binarization is not None:
            check_binarization(self.binarization)
        if self.objective is not None:
            self.objective.check_kl_weight(self.kl_weight, self.kl_warmup)
            if self.free_bits > 0:
                self.objective.check_free_bits()

    def _validate_selection(self) -> None:
        """The validation split, early stopping, free bits and tracking settings."""
        if self.validation is not None:
            check_validation(self.validation)
        if self.early_stop is not None:
            Limit(int, 1, 10**6).check("early_stop", self.early_stop)
        for name, use in NEEDS_VALIDATION.items():
            if getattr(self, name) is not None and self.validation is None:
                raise PyroVaeError(
                    f"{name} {use}, and the run has no validation split: add --validation "
                    f"(the data set's own split, or a tenth of its train rows)"
                )
        if self.free_bits_per not in FREE_BITS_GROUPS:
            raise PyroVaeError(
                f"free_bits_per must be one of {list(FREE_BITS_GROUPS)}, got {self.free_bits_per!r}"
            )
        if not isinstance(self.tensorboard, bool):
            raise PyroVaeError(f"tensorboard must be true or false, got {self.tensorboard!r}")

    def lr_at(self, epoch: int, history: list[dict] = ()) -> float:
        """The learning rate of epoch ``epoch`` (from 1): lr · lr_decay^(e−1) · the schedule's
        factor; a function of the epoch and the metrics of the epochs before it (``history``,
        which only ``plateau`` reads), so resumed runs continue exactly."""
        factor = (
            1.0
            if self.lr_schedule is None
            else LrSchedule.parse(self.lr_schedule).factor(epoch, self.epochs, history)
        )
        return self.lr * self.lr_decay ** (epoch - 1) * factor

    @property
    def kl_weighted(self) -> bool:
        """Whether training weighs the KL term (β ≠ 1 or a warm-up)."""
        return self.kl_weight != 1 or self.kl_warmup > 0

    def to_dict(self) -> dict:
        """The JSON form of ``config.json`` (the objective as three flat fields)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        choice = out.pop("objective")
        out["objective"] = choice.name if choice else None
        out["num_particles"] = choice.num_particles if choice else 1
        out["objective_options"] = dict(choice.options) if choice else {}
        for name, default in OPTIONAL.items():
            if out[name] == default:
                del out[name]
        if out["args"] == JUST_X:  # written only when it says more than x: the older format
            del out["args"]
        else:
            out["args"] = list(out["args"])
        return out

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Read :meth:`to_dict`'s form; raises ``TypeError``/``PyroVaeError`` for a bad one."""
        values = dict(values)
        name = values.pop("objective", None)
        num_particles = values.pop("num_particles", 1)
        options = values.pop("objective_options", {})
        choice = None if name is None else ObjectiveChoice(name, num_particles, options)
        if isinstance(values.get("args"), list):
            values["args"] = tuple(values["args"])
        return cls(objective=choice, **values)


def prepare_data(vae: LatentModel, config: TrainConfig) -> Dataset:
    """Load ``config.data`` as ``vae`` sees it: with ``config.binarization`` (left unset, binary
    likelihoods get dynamic binarization of grey data), checked against the model's data shape
    and the support of its likelihood. What was settled here is recorded in ``config``: the
    binarization, a data file's absolute path, and the options its loader fixed (checksum,
    split), so that the run sees the same data whenever it is loaded again."""
    spec_built = isinstance(vae, LatentModel)  # a hand-written pair sees the data as they are
    dataset = load_dataset(
        config.data, binarization=config.binarization, seed=config.seed, **config.data_options
    )
    binary = spec_built and vae.likelihood.family.support == "binary"
    if binary and config.binarization is None and not dataset.is_binary:
        dataset = load_dataset(
            config.data, binarization="dynamic", seed=config.seed, **config.data_options
        )
    config.data, config.binarization = dataset.name, dataset.binarization
    config.data_options = {**config.data_options, **dataset.options}
    if config.validation is not None:
        dataset, config.validation = with_validation(dataset, config.validation, config.seed)
    if spec_built:
        _check_data_nodes(vae, dataset)
    for name in config.args:  # refused here, naming what the data set has, before any work
        dataset.array(name, "test")
    if not spec_built:
        return dataset
    if config.args != vae.data_names:
        raise PyroVaeError(
            f"args={config.args!r}: a spec-built pair is called with its data nodes' arrays "
            f"{vae.data_names!r}"
        )
    if tuple(dataset.event_shape) != vae.data_shape:
        raise DataError(
            f"data set '{dataset.name}' has datapoints of shape {tuple(dataset.event_shape)}, "
            f"the model was built for {vae.data_shape}"
        )
    if vae.image_shape and dataset.image_shape and vae.image_shape != tuple(dataset.image_shape):
        raise DataError(
            f"data set '{dataset.name}' has images of shape {tuple(dataset.image_shape)}, the "
            f"model was built for {vae.image_shape}"
        )
    _check_support(vae, dataset)
    return dataset


def _check_support(vae: LatentModel, dataset: Dataset) -> None:
    """Refuse data outside the support of the model's likelihood."""
    support, family = vae.likelihood.family.support, vae.model_spec.observed.family
    where = f"{vae.model_spec.path}: observed.x.family: '{family}'"
    if support == "binary" and not dataset.is_binary:
        raise DataError(
            f"{where} needs binary data, but '{dataset.name}' with binarization "
            f"'{dataset.binarization}' is not binary"
        )
    if support == "unit_interval":
        low, high = dataset.value_range
        if low < 0 or high > 1:
            raise DataError(
                f"{where} needs values in [0, 1], but '{dataset.name}' has values in "
                f"[{low:g}, {high:g}]"
            )


def data_shapes(spec: ModelSpec, dataset: Dataset):
    """What to build the pair of model ``spec`` for, from ``dataset``: x's shape (its image
    shape where it has one), and, where the model has other observed nodes or inputs, a dict
    with the shape of each by node name (their arrays named by the nodes' ``data`` keys)."""
    x = dataset.image_shape or tuple(dataset.event_shape)
    others = {**spec.also_observed, **spec.inputs}
    if not others:
        return x
    shapes = {}
    for name, node in others.items():
        array = _node_array(spec.path, node, dataset, "train")
        shapes[name] = tuple(array.shape[1:])
    return {"x": x, **shapes}


def _node_array(path: str, node, dataset: Dataset, split: str):
    """The array that gives ``node`` its values, or a :class:`DataError` naming the spec
    file, the node's key and the arrays the data set has."""
    if node.data not in dataset.names:
        raise DataError(
            f"{path}: {node.key}: data set {dataset.name!r} has no array {node.data!r} for it; "
            f"it has {dataset.names} (set {node.key}.data to one of them)"
        )
    return dataset.array(node.data, split)


def _check_data_nodes(vae: LatentModel, dataset: Dataset) -> None:
    """Every data node other than x has its array, one row per datapoint, of the size the
    model was built for, finite; a partially observed node's labels are within its
    categories (or hidden, negative)."""
    spec = vae.model_spec
    for name, node in spec.data_nodes.items():
        if name == "x":
            continue
        for split, rows in (("train", len(dataset.train)), ("test", len(dataset.test))):
            array = _node_array(spec.path, node, dataset, split)
            where = f"{spec.path}: {node.key}: data set {dataset.name!r} array {node.data!r}"
            if len(array) != rows:
                raise DataError(f"{where} has {len(array)} {split} rows, x has {rows}")
            if not bool(torch.isfinite(array.double()).all()):
                raise DataError(f"{where} has NaN or infinite {split} values")
            if node.partial:
                _check_labels(where, split, array, node.options["categories"])
            elif math.prod(array.shape[1:]) != vae.data_sizes[name]:
                raise DataError(
                    f"{where} has {math.prod(array.shape[1:])} values per row, the model was "
                    f"built for {vae.data_sizes[name]}"
                )


def _check_labels(where: str, split: str, labels, categories: int) -> None:
    if labels.dim() != 1 or labels.is_floating_point() and bool((labels != labels.round()).any()):
        raise DataError(f"{where}: expected one whole-number label per row ({split})")
    outside = labels >= categories
    if bool(outside.any()):
        raise DataError(
            f"{where}: {split} label {int(labels[outside][0])} is outside its {categories} "
            f"categories (0 to {categories - 1}; negative: no label)"
        )

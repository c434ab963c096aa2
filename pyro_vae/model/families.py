"""Distribution families of model nodes.

A family is an ``nn.Module`` that turns the raw output of its node's net (or, for a node without
parents, its own learned or fixed parameters) into a ``pyro.distributions`` object whose event
holds one datapoint's value. Adding a family is one class with ``@FAMILIES.register``, whose
``count`` (beside its ``__init__``) says what it will hold before it is built.
"""

from __future__ import annotations

import enum
import math
from typing import ClassVar

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from ..spec.options import (
    Constraint,
    Option,
    either,
    int_at_least,
    list_of,
    number,
    one_of,
    positive_int,
)
from .compiling import compiling
from .counting import FamilyShape, Size, SpecEntry, head_or_own, times

# Keeps net-given scales away from 0, where log densities overflow.
MIN_SCALE = 1e-4

#: A fixed σ of a Gaussian. Its log density, −½ (x − μ)²/σ² − log σ, is computed in float32:
#: at σ = 1e-6 a residual of 1 already costs 5·10¹¹ nats per value, a batch of images 10¹⁶ and
#: more, where float32's 24-bit mantissa cannot resolve a change below 10⁹ nats, so training
#: cannot move; below about 1e-19 the square overflows to −∞, and a σ under float32's
#: smallest normal number (1.2e-38, e.g. 1e-300) rounds to 0 and divides by zero. Above 1e18,
#: σ² (which the density also computes) overflows float32's largest number, 3.4e38.
FIXED_SCALE = Constraint(
    "a fixed scale σ",
    1e-6,
    1e18,
    "in float32, the log density of a smaller σ loses all resolution or overflows to -inf, "
    "and the square of a larger one overflows",
)

#: Fixed category weights. Below float32's smallest normal number, 1.2e-38, a weight rounds to
#: 0 (or loses its precision) and its log to −∞, which any draw of that category then scores;
#: 1e-30 keeps them clear of it.
PROBABILITIES = Constraint(
    "a fixed weight",
    1e-30,
    1.0,
    "a smaller weight rounds to 0 in float32, and its log to -inf",
    simplex=True,
)


class Role(enum.StrEnum):
    """The section of a model spec a node is in, which decides what it may be: a latent is
    sized by its own key and sampled, an observed node is sized by the data and scored, an
    input is data given to model and guide and never modelled."""

    LATENT = "latent"
    OBSERVED = "observed"
    INPUT = "input"


class OptionError(ValueError):
    """A family option that is valid alone but not in its context (e.g. without parents)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class Family(nn.Module):
    """Base class: a node's distribution given raw parameters.

    :param size: event size (``dim``) or number of categories.
    :param conditional: whether a net supplies the parameters (the node has parents).
    """

    #: What the values are: "real", "binary", "unit_interval" or "categorical". A guide family
    #: must approximate a latent's support; data must lie in the observed node's.
    support: ClassVar[str]
    roles: ClassVar[frozenset[Role]] = frozenset(Role)
    parents: ClassVar[str] = "optional"  # "required", "forbidden" or "optional"
    reparameterized: ClassVar[bool] = True
    #: Whether the family evaluates the guide of its latent (the VampPrior): it is then given
    #: that guide node with ``use_encoder`` once the guide is built.
    uses_encoder: ClassVar[bool] = False
    size_key: ClassVar[str] = "dim"  # the option that sizes a latent node
    options: ClassVar[dict[str, Option]] = {}
    #: The constraint of each option that may hold a fixed value of a distribution parameter
    #: (checked by :meth:`check_constraints` when the spec is parsed, so that a bad one is
    #: named there rather than found as a diverging loss).
    constraints: ClassVar[dict[str, Constraint]] = {}

    def __init__(self, size: int, conditional: bool, **options):
        super().__init__()
        self.size, self.conditional = size, conditional

    @classmethod
    def options_for(cls, role: Role) -> dict[str, Option]:
        """Options a node of this role accepts; an observed node is sized by the data."""
        sized = {cls.size_key: Option(positive_int, doc=f"{cls.size_key} = <positive integer>")}
        return {**(sized if role is Role.LATENT else {}), **cls.options}

    @classmethod
    def check_context(cls, options: dict, conditional: bool) -> None:
        """Raise :class:`OptionError` for options that need or forbid parents."""

    @classmethod
    def check_constraints(cls, options: dict) -> None:
        """Raise :class:`OptionError` for a fixed parameter value outside its constraint."""
        for key, constraint in cls.constraints.items():
            if options.get(key) is None:
                continue
            try:
                constraint.check(options[key])
            except ValueError as e:
                raise OptionError(key, str(e)) from None

    @classmethod
    def count(cls, size: Size, conditional: bool, entry: SpecEntry, data: Size) -> FamilyShape:
        """The raw outputs the node's net must give and the tensors ``__init__`` gives the
        family itself, counted from the spec (``size``: the node's, ``data``: a datapoint's)
        so that :mod:`~pyro_vae.model.sizes` can refuse a pair before anything is allocated.
        Every registered family counts its own, beside its ``__init__``."""
        raise NotImplementedError(f"{cls.__name__} does not count its tensors")

    @property
    def value_size(self) -> int:
        """Width of a value of this node as a net input."""
        return self.size

    @property
    def head_size(self) -> int:
        """Number of raw outputs a net must give this family."""
        return self.size

    def forward(self, raw: torch.Tensor | None) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, d: dist.TorchDistribution) -> torch.Tensor:
        """A representative value (the mean) of ``d``, used for reconstructions and grids."""
        return d.mean


FAMILIES: Registry[type[Family]] = Registry("family")


@FAMILIES.register("standard_normal")
class StandardNormal(Family):
    """N(0, I) prior of a root latent."""

    support = "real"
    roles = frozenset({Role.LATENT})
    parents = "forbidden"

    def __init__(self, size, conditional, **options):
        super().__init__(size, conditional)
        self.register_buffer("zeros", torch.zeros(size))

    @classmethod
    def count(cls, size, conditional, entry, data):
        return FamilyShape(size, [(size,)])  # the buffer of zeros

    def forward(self, raw=None):
        return UnitNormal(self.zeros, torch.ones_like(self.zeros)).to_event(1)


class UnitNormal(dist.Normal):
    """N(0, 1): a ``Normal`` that the KL registry knows to be standard, so that the analytic KL
    of a Gaussian guide to it takes the short formula below (Pyro's TraceMeanField_ELBO and the
    fused step both dispatch through ``kl_divergence``)."""

    def expand(self, batch_shape, _instance=None):
        return super().expand(batch_shape, _instance or UnitNormal.__new__(UnitNormal))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        # −z²/2 − log √(2π): Normal's formula without the (z − 0)/1 it would compute.
        return -0.5 * value.pow(2) - _HALF_LOG_2PI


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@torch.distributions.kl.register_kl(dist.Normal, UnitNormal)
def _kl_normal_unit_normal(q, p):
    """KL(N(μ, σ²) ‖ N(0, 1)) = ½ (μ² + σ² − 1) − log σ: the general Normal–Normal formula with
    p's mean 0 and scale 1, three divisions and a subtraction fewer per step."""
    return 0.5 * (q.loc.pow(2) + q.scale.pow(2) - 1) - q.scale.log()


SCALE_MODES = ("net", "learned", "learned_per_dim")


@FAMILIES.register("normal")
class Normal(Family):
    """Diagonal Gaussian. The mean comes from the net (or is learned, without parents); ``scale``
    is a fixed number, ``learned`` (one σ shared by all dimensions, as in probabilistic PCA),
    ``learned_per_dim``, or ``net`` (heteroscedastic: the net outputs it too)."""

    support = "real"
    options = {
        "scale": Option(
            either(
                number,
                one_of(SCALE_MODES),
                expected="a positive number or one of " + ", ".join(f"'{m}'" for m in SCALE_MODES),
            ),
            None,
            "σ: a number, 'learned', 'learned_per_dim' or 'net'",
        )
    }
    constraints = {"scale": FIXED_SCALE}

    @classmethod
    def check_context(cls, options, conditional):
        if options.get("scale") == "net" and not conditional:
            raise OptionError("scale", "scale = 'net' needs parents (`given`) to feed the net")

    @staticmethod
    def scale_mode_of(scale, conditional: bool):
        """The ``scale`` option, or its default: from the net given parents, else learned."""
        return scale if scale is not None else ("net" if conditional else "learned_per_dim")

    def __init__(self, size, conditional, scale=None):
        super().__init__(size, conditional)
        self.scale_mode = self.scale_mode_of(scale, conditional)
        if not conditional:
            self.loc = nn.Parameter(torch.zeros(size))
        if isinstance(self.scale_mode, float):
            self.register_buffer("fixed_scale", torch.tensor(self.scale_mode))
        elif self.scale_mode == "learned":
            self.log_scale = nn.Parameter(torch.zeros(()))
        elif self.scale_mode == "learned_per_dim":
            self.log_scale = nn.Parameter(torch.zeros(size))

    @classmethod
    def count(cls, size, conditional, entry, data):
        mode = cls.scale_mode_of(entry.options.get("scale"), conditional)
        head = times(Size(2), size) if mode == "net" else size
        own = [] if conditional else [(size,)]  # the learned mean of a node without parents
        own += {"learned_per_dim": [(size,)], "learned": [(Size(1),)]}.get(mode, [])
        if isinstance(mode, float):
            own.append((Size(1),))  # the fixed σ, a buffer
        return FamilyShape(head, own)

    @property
    def head_size(self):
        return 2 * self.size if self.scale_mode == "net" else self.size

    def forward(self, raw=None):
        loc = self.loc if raw is None else raw[..., : self.size]
        if self.scale_mode == "net":
            scale = F.softplus(raw[..., self.size :]) + MIN_SCALE
        elif isinstance(self.scale_mode, float):
            scale = self.fixed_scale.expand(loc.shape)
        else:
            scale = self.log_scale.exp().expand(loc.shape)
        return dist.Normal(loc, scale).to_event(1)


class IndependentBernoulli(dist.Independent):
    """``Bernoulli(logits).to_event(1)`` whose log density is summed in one fused pass,

    .. math:: \\log p(x) = \\sum_d x_d \\ell_d - \\operatorname{softplus}(\\ell_d),

    about twice as fast as per-pixel binary cross-entropy on (K, N, D) logits, same value.
    When the logits need a gradient (training), the dot product is a product and a sum
    instead: einsum's backward is one tiny matrix product per datapoint, which made a
    784-pixel training step about 1 ms slower on a CPU.
    """

    def __init__(self, logits: torch.Tensor, validate_args=None):
        base = dist.Bernoulli(logits=logits, validate_args=validate_args)
        super().__init__(base, 1, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.event_shape
        return type(self)(self.base_dist.logits.expand(shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self.base_dist._validate_sample(value)
        logits = self.base_dist.logits
        if logits.requires_grad and torch.is_grad_enabled():
            return (logits * value).sum(-1) - F.softplus(logits).sum(-1)
        if compiling():  # one fused loop over the logits, without softplus_sum's branch
            with in_float32(logits):
                return (logits.float() * value - F.softplus(logits.float())).sum(-1)
        with in_float32(logits):
            dot = torch.einsum("...d,...d->...", logits, value)
        return dot - softplus_sum(logits)


def in_float32(tensor: torch.Tensor):
    """Autocast switched off: a density's own products stay in float32 under
    ``precision="bf16"``, where only the nets compute in bf16 (a sum of 784 terms rounded to
    bf16 would be off by a quarter of a nat)."""
    return torch.autocast(tensor.device.type, enabled=False)


def softplus_sum(logits: torch.Tensor) -> torch.Tensor:
    """Σ_d softplus(ℓ_d) over the last dimension, without gradient, in about 0.6 of the time
    of ``F.softplus(ℓ).sum(-1)`` on a CPU: log(1 + e^ℓ) costs one vectorized exp and one
    vectorized log, where torch's softplus (and log1p) run a slower per-element path. Where
    1 + e^ℓ rounds to 1 (ℓ < −16.6) a term is off by less than e^ℓ < 6e-8, so the sum over D
    pixels by less than D · 6e-8 (5e-5 nats for 784 pixels), below float32 rounding of the
    sum itself. Where e^ℓ overflows (ℓ > 88) the sum is infinite, and those rows are summed
    again with torch's softplus."""
    total = torch.exp(logits).add_(1.0).log_().sum(-1)
    overflow = torch.isinf(total)
    if overflow.any():
        total[overflow] = F.softplus(logits[overflow]).sum(-1)
    return total


class PixelLogits(Family):
    """Independent pixels whose one parameter each is a logit: from the net, or learned (at 0)
    without parents; ``distribution(logits)`` makes the family's distribution of one datapoint."""

    roles = frozenset({Role.OBSERVED})

    def __init__(self, size, conditional, **options):
        super().__init__(size, conditional)
        if not conditional:
            self.logits = nn.Parameter(torch.zeros(size))

    @classmethod
    def count(cls, size, conditional, entry, data):
        return head_or_own(size, conditional)

    def forward(self, raw=None):
        return self.distribution(self.logits if raw is None else raw)


@FAMILIES.register("bernoulli")
class Bernoulli(PixelLogits):
    """Independent Bernoulli units with logits from the net: binary pixels of an observed
    node, or ``dim`` binary latent units (a sigmoid belief network's layer; without parents,
    learned logits). A latent Bernoulli has no reparameterization: train it with an objective
    that has score-function terms (``trace``, ``vimco``, ``rws``)."""

    support = "binary"
    roles = frozenset({Role.OBSERVED, Role.LATENT})
    reparameterized = False

    @staticmethod
    def distribution(logits):
        return IndependentBernoulli(logits)


@FAMILIES.register("continuous_bernoulli")
class ContinuousBernoulli(PixelLogits):
    """Independent continuous Bernoulli pixels with logits from the net, for grey levels in
    [0, 1] (Loaiza-Ganem & Cunningham 2019, "The continuous Bernoulli: fixing a pervasive error
    in variational autoencoders"): unlike a Bernoulli on grey data, a normalized density."""

    support = "unit_interval"

    @staticmethod
    def distribution(logits):
        return dist.ContinuousBernoulli(logits=logits).to_event(1)


@FAMILIES.register("categorical")
class Categorical(Family):
    """A discrete latent with ``categories`` values. Without parents, ``weights`` is
    ``"uniform"``, ``"learned"`` or a fixed probability list; with parents the net gives logits."""

    support = "categorical"
    roles = frozenset({Role.LATENT})
    reparameterized = False
    size_key = "categories"
    options = {
        "weights": Option(
            lambda v: (
                list_of(number, allow_empty=False)(v)
                if isinstance(v, list)
                else one_of(("uniform", "learned"))(v)
            ),
            None,
            "'uniform', 'learned' or [p1, p2, ...]",
        )
    }
    constraints = {"weights": PROBABILITIES}

    @classmethod
    def options_for(cls, role):
        return {
            "categories": Option(int_at_least(2), doc="categories = <integer >= 2>"),
            **cls.options,
        }

    @classmethod
    def check_context(cls, options, conditional):
        weights = options.get("weights")
        if weights is not None and conditional:
            raise OptionError("weights", "weights are given by the net when the node has parents")
        if isinstance(weights, list) and len(weights) != options["categories"]:
            raise OptionError(
                "weights", f"expected {options['categories']} weights, got {len(weights)}"
            )

    def __init__(self, size, conditional, weights=None):
        super().__init__(size, conditional)
        weights = weights if weights is not None else "uniform"
        if conditional:
            return
        if weights == "learned":
            self.logits = nn.Parameter(torch.zeros(size))
        else:
            probs = (
                torch.full((size,), 1.0 / size) if weights == "uniform" else torch.tensor(weights)
            )
            self.register_buffer("logits", probs.log())

    @classmethod
    def count(cls, size, conditional, entry, data):
        return head_or_own(size, conditional)  # learned or fixed, the logits are one tensor

    def forward(self, raw=None):
        return dist.Categorical(logits=self.logits if raw is None else raw)

    def mean(self, d):
        return d.probs.argmax(-1)

"""Learned priors for root latents: the prior is part of the model, and can be trained too.

``mixture_normal``
    :math:`p(z) = \\sum_c \\pi_c \\, \\mathcal N(z; \\mu_c, \\mathrm{diag}\\,\\sigma_c^2)` with
    ``components`` learned components and weights: a multi-modal prior.
``flow_normal``
    :math:`z = f^{-1}(\\varepsilon)`, :math:`\\varepsilon \\sim \\mathcal N(0, I)`, through
    ``flows`` affine autoregressive flows (:mod:`pyro_vae.model.flows`) arranged so that the density
    :math:`\\log p(z) = \\log \\mathcal N(f(z)) + \\log|\\det \\partial f / \\partial z|` costs one
    network pass per flow (a masked autoregressive flow, Papamakarios et al. 2017); sampling
    costs one pass per flow and dimension.
``vamp``
    the VampPrior (Tomczak & Welling 2018, "VAE with a VampPrior"):
    :math:`p(z) = \\frac1K \\sum_k q(z \\mid u_k)`, the guide's own family for this latent
    evaluated at K learned, data-shaped pseudo-inputs :math:`u_k`. It approximates the aggregate
    posterior :math:`\\frac1N \\sum_n q(z \\mid x_n)`, the prior that maximizes the ELBO.

None of them has a closed-form KL to a Gaussian guide, so ``trace_mean_field`` estimates their
KL terms by sampling (as Pyro's TraceMeanField_ELBO does where no closed form is registered).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn

from ..spec.options import Option, int_at_least, positive_int
from .counting import FamilyShape
from .families import FAMILIES, Family, OptionError, Role, in_float32
from .flows import FLOW_OPTIONS, autoregressive_flows, counted_hidden, flow_values, hidden_sizes


@FAMILIES.register("mixture_normal")
class MixtureNormal(Family):
    """A learned mixture of ``components`` diagonal Gaussians; means start spread out."""

    support = "real"
    roles = frozenset({Role.LATENT})
    parents = "forbidden"
    options = {"components": Option(int_at_least(2), doc="components = <integer >= 2>")}

    def __init__(self, size, conditional, components):
        super().__init__(size, conditional)
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, size))
        self.log_scale = nn.Parameter(torch.zeros(components, size))

    @classmethod
    def count(cls, size, conditional, entry, data):
        components = entry.size("components")
        return FamilyShape(size, [(components,), (components, size), (components, size)])

    def forward(self, raw=None):
        components = dist.Normal(self.loc, self.log_scale.exp()).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits), components)


@FAMILIES.register("flow_normal")
class FlowNormal(Family):
    """A standard normal pushed through ``flows`` learned autoregressive flows."""

    support = "real"
    roles = frozenset({Role.LATENT})
    parents = "forbidden"
    options = FLOW_OPTIONS

    @classmethod
    def check_context(cls, options, conditional):
        try:
            hidden_sizes(options.get("hidden"), options["dim"])
        except ValueError as e:
            raise OptionError("hidden", str(e)) from None

    def __init__(self, size, conditional, flows, hidden=None):
        super().__init__(size, conditional)
        self.flows = autoregressive_flows(size, hidden_sizes(hidden, size), flows)
        self.register_buffer("zeros", torch.zeros(size))

    @classmethod
    def count(cls, size, conditional, entry, data):
        flows = flow_values(entry.size("flows"), size, counted_hidden(entry, size), None)
        return FamilyShape(size, [(size,), *flows])

    def forward(self, raw=None):
        base = dist.Normal(self.zeros, torch.ones_like(self.zeros)).to_event(1)
        # Each flow maps z towards ε; its inverse is the generative direction.
        return dist.TransformedDistribution(base, [flow.inv for flow in reversed(self.flows)])


class VampPriorDistribution(dist.TorchDistribution):
    """:math:`\\frac1K \\sum_k q(z \\mid u_k)` for a guide ``encode(u) -> q(z | u)``."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self,
        encode: Callable[[torch.Tensor], dist.Distribution],
        pseudo_inputs: torch.Tensor,
        dim: int,
        batch_shape=(),
        validate_args=None,
    ):
        self.encode, self.pseudo_inputs, self.dim = encode, pseudo_inputs, dim
        super().__init__(torch.Size(batch_shape), torch.Size([dim]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return type(self)(self.encode, self.pseudo_inputs, self.dim, batch_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        components = self.encode(self.pseudo_inputs)  # batch (K,)
        k = len(self.pseudo_inputs)
        base = getattr(components, "base_dist", None)
        if isinstance(base, dist.Normal) and components.reinterpreted_batch_ndims == 1:
            log_q = _diagonal_log_densities(value, base.loc, base.scale)
        else:
            log_q = self._pairwise_log_densities(components, value, k)
        return torch.logsumexp(log_q, -1) - math.log(k)

    def _pairwise_log_densities(self, components, value: torch.Tensor, k: int) -> torch.Tensor:
        """log q(z | u_k) of every value against every component, ``(..., K)``. The values are
        broadcast explicitly (so that flows whose networks see a per-component context can run
        on them), a block of rows at a time so that memory stays bounded whatever K is."""
        rows = value.reshape(-1, self.dim)
        block = max(1, PAIRS_PER_BLOCK // (k * self.dim))
        log_q = [
            components.log_prob(part.unsqueeze(-2).expand(len(part), k, self.dim))
            for part in rows.split(block)
        ]
        return torch.cat(log_q).reshape(*value.shape[:-1], k)

    def sample(self, sample_shape=()):
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            pick = torch.randint(
                len(self.pseudo_inputs),
                (max(shape.numel(), 1),),
                device=self.pseudo_inputs.device,
            )
            z = self.encode(self.pseudo_inputs[pick]).sample()
        return z.reshape(*shape, self.dim)


#: Values × components × dims the generic VampPrior density evaluates at once.
PAIRS_PER_BLOCK = 1 << 24


def _diagonal_log_densities(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor):
    """:math:`\\log \\mathcal N(z; \\mu_k, \\mathrm{diag}\\,\\sigma_k^2)` for every value
    against every one of K diagonal Gaussians, ``(..., K)``, as two matrix products:
    :math:`-\\tfrac12 \\sum_d (z_d^2 - 2 z_d \\mu_{kd} + \\mu_{kd}^2)/\\sigma_{kd}^2 - \\sum_d
    \\log \\sigma_{kd} - \\tfrac D2 \\log 2\\pi`, with no (values × K × D) intermediate."""
    precision = scale.pow(-2)
    with in_float32(z):
        quadratic = z.pow(2) @ precision.T - 2 * z @ (loc * precision).T
    quadratic = quadratic + (loc.pow(2) * precision).sum(-1)
    constant = scale.log().sum(-1) + 0.5 * z.shape[-1] * math.log(2 * math.pi)
    return -0.5 * quadratic - constant


@FAMILIES.register("vamp")
class VampPrior(Family):
    """The VampPrior: the guide of this latent evaluated at ``pseudo_inputs`` learned inputs.

    The guide entry must be ``given = ["x"]``; its node is attached after the guide is built
    (:meth:`use_encoder`) and is not a submodule here, so its weights are the guide's only.
    """

    support = "real"
    roles = frozenset({Role.LATENT})
    parents = "forbidden"
    uses_encoder = True
    options = {
        "pseudo_inputs": Option(positive_int, doc="pseudo_inputs = <positive integer>, K"),
    }

    def __init__(self, size, conditional, pseudo_inputs):
        super().__init__(size, conditional)
        self.num_pseudo_inputs = pseudo_inputs

    @classmethod
    def count(cls, size, conditional, entry, data):
        return FamilyShape(size, [(entry.size("pseudo_inputs"), data)])  # set by use_encoder

    def use_encoder(self, encoder: nn.Module, data: str, data_size: int) -> None:
        """Evaluate ``encoder`` (the guide's node for this latent, whose only input is ``data``)
        at learned pseudo-inputs of ``data_size`` values each, started uniformly in [0, 1]
        like image intensities."""
        self.__dict__["encoder"] = encoder  # not a submodule: its weights belong to the guide
        self.data = data
        self.pseudo_inputs = nn.Parameter(torch.rand(self.num_pseudo_inputs, data_size))

    def encode(self, inputs: torch.Tensor) -> dist.Distribution:
        return self.encoder({self.data: inputs})

    def forward(self, raw=None):
        return VampPriorDistribution(self.encode, self.pseudo_inputs, self.size)

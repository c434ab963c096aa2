"""Sequence models built from specs: a chain latent over time steps and x emitted at each.

The model of a spec with a chain latent z (``transition = {...}``) is the state-space model

.. math::

    p(x_{1:T}, z_{1:T}) = \\prod_{t=1}^{T} p(z_t \\mid z_{t-1}) \\, p(x_t \\mid z_t),

with z_0 the chain's ``initial`` state (zeros, or learned), the transition and the emission
nets shared over t, and each sequence scored up to its length (the steps after it are masked
out). Its guide is Krishnan et al.'s structured one,

.. math:: q(z_{1:T} \\mid x) = \\prod_t q(z_t \\mid z_{t-1}, h_t),

h_t the state of a recurrent net over x (backward by default: h_t reads x_t … x_T, the
variables the exact posterior of z_t depends on given z_{t−1}) and the entry's ``net``
combining it with z_{t−1}; without an ``rnn``, h_t is x_t itself.

As Pyro programs both are plain ``model(x, lengths)`` / ``guide(x, lengths)`` callables with
x of shape (N, T, D) under ``pyro.plate("data", N)``, and one site per step, ``z_1 … z_T`` and
``x_1 … x_T`` (the names the per-step estimates group by), in a ``pyro.markov`` loop. The loop
runs over time steps only: every step is vectorized over the batch and the particles, and the
recurrent net runs once per batch in torch's fused kernels.

Reference: R. G. Krishnan, U. Shalit, D. Sontag, *Structured Inference Networks for Nonlinear
State Space Models*, AAAI 2017.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pyro
import pyro.poutine as poutine
import torch
from torch import nn

from ..errors import ModelGuideError, SpecError
from ..spec.parse import DATA, GuideSpec, ModelSpec, check_pair
from .families import OptionError
from .guide_families import GUIDE_FAMILIES
from .latent_model import LatentModel, Node
from .nets import NetInput
from .sequence_nets import SequenceEncoder
from .sizes import check_sizes

#: The data set's array of sequence lengths, the second argument of model and guide.
LENGTHS = "lengths"


def step_site(name: str, t: int) -> str:
    """The site of node ``name`` at time step ``t`` (from 1): ``z_3``, ``x_3``."""
    return f"{name}_{t}"


def step_mask(lengths: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """``(N, T)``: whether step t is within sequence n's length (None: all are)."""
    if lengths is None:
        return None
    steps = torch.arange(x.shape[1], device=x.device)
    return steps < lengths.to(x.device).unsqueeze(-1)


class ChainNode(Node):
    """A node over time steps: its net reads the node's own value at t − 1 (and, in the guide,
    the data's state h_t); ``initial`` is the value before the first step."""

    def __init__(self, spec, family, inputs, path, initial: str, encoder=None, net_key="net"):
        super().__init__(spec, family, inputs, path, net_key=net_key)
        zeros = torch.zeros(family.value_size)
        if initial == "learned":
            self.initial = nn.Parameter(zeros)
        else:
            self.register_buffer("initial", zeros)
        self.encoder = encoder

    def states(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """What the guide reads of the data at each step: the rnn's states, else x_t."""
        return x if self.encoder is None else self.encoder(x, lengths)


class SequenceModel(LatentModel):
    """A state-space model p(z_{1:T}) p(x_{1:T} | z_{1:T}) and its structured guide, from specs.

    :param data_shape: ``(T, D)``, the padded length and the size of one step; the model and
        guide take any T.
    """

    def __init__(
        self, model_spec: ModelSpec, guide_spec: GuideSpec, data_shape: Sequence[int]
    ):  # LatentModel's builder is for DAGs of single nodes; a chain is built here.
        nn.Module.__init__(self)
        check_pair(model_spec, guide_spec)
        if len(data_shape) != 2:
            raise SpecError(
                model_spec.path,
                f"latent.{next(iter(model_spec.chains))}.transition",
                f"a sequence model takes sequences of shape (N, T, D); one datapoint has "
                f"shape {tuple(data_shape)}, not (T, D)",
            )
        self.data_shape, self.image_shape = tuple(int(s) for s in data_shape), None
        self.data_sizes: dict[str, int] = {}
        self.enumerated = self.guide_enumerated = frozenset()
        self.model_spec, self.guide_spec = model_spec, guide_spec
        (self.chain,) = model_spec.chains
        check_sizes(model_spec, guide_spec, self.data_shape[1])
        self._build_generative()
        self._build_inference()

    def _build_generative(self) -> None:
        spec, name = self.model_spec, self.chain
        node = spec.latents[name]
        # The transition is the node's net with the node's own previous value as its parent.
        stepped = dataclasses.replace(node, given=(name,), net=node.transition)
        family = self._family(stepped, node.options["dim"])
        inputs = [NetInput(name, family.value_size)]
        chain = ChainNode(stepped, family, inputs, spec.path, node.initial, net_key="transition")
        x = spec.observed
        emission = Node(
            x, self._family(x, self.data_shape[1]), [NetInput(name, family.value_size)], spec.path
        )
        self.generative = nn.ModuleDict({name: chain, DATA: emission})

    def _build_inference(self) -> None:
        name, spec = self.chain, self.guide_spec.latents[self.chain]
        size = self.generative[name].family.value_size
        encoder = None if spec.rnn is None else SequenceEncoder(self.data_shape[1], **spec.rnn)
        state = NetInput(DATA, self.data_shape[1] if encoder is None else encoder.size)
        try:
            family = GUIDE_FAMILIES.get(spec.family).build(
                self.generative[name].family, conditional=True, **spec.options
            )
        except OptionError as e:  # an option that does not fit this latent, e.g. its dim
            raise SpecError(self.guide_spec.path, f"{spec.key}.{e.key}", str(e)) from None
        stepped = dataclasses.replace(spec, given=(name, DATA))
        inputs = [NetInput(name, size), state]
        node = ChainNode(stepped, family, inputs, self.guide_spec.path, "learned", encoder)
        self.inference = nn.ModuleDict({name: node})

    @property
    def argument_names(self) -> tuple[str, ...]:
        """``model(x, lengths)``: the padded sequences and their lengths (optional)."""
        return (DATA, LENGTHS)

    @property
    def data_names(self) -> tuple[str, ...]:
        return (DATA, LENGTHS)

    @property
    def has_fast_paths(self) -> bool:
        return False

    def model(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """p(z_{1:T}) p(x_{1:T} | z_{1:T}), x of shape (N, T, D); steps after a sequence's
        length are masked out."""
        pyro.module("model", self.generative)
        chain, emission = self.generative[self.chain], self.generative[DATA]
        mask = step_mask(lengths, x)
        z = chain.initial
        with pyro.plate("data", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                with poutine.mask(mask=True if mask is None else mask[:, t]):
                    z = pyro.sample(step_site(self.chain, t + 1), chain({self.chain: z}))
                    pyro.sample(step_site(DATA, t + 1), emission({self.chain: z}), obs=x[:, t])

    def guide(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """q(z_t | z_{t−1}, h_t) step by step, h the rnn's states over x."""
        pyro.module("guide", self.inference)
        node = self.inference[self.chain]
        mask = step_mask(lengths, x)
        full = torch.full(x.shape[:1], x.shape[1], device=x.device)
        states = node.states(x, full if lengths is None else lengths)
        z = node.initial
        with pyro.plate("data", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                with poutine.mask(mask=True if mask is None else mask[:, t]):
                    q = node({self.chain: z, DATA: states[:, t]})
                    z = pyro.sample(step_site(self.chain, t + 1), q)

    @torch.no_grad()
    def sample(
        self, n: int, *, mean: bool = True, return_latents: bool = False, steps=None, given=None
    ):
        """``n`` sequences of ``steps`` (default the data's T): z_t ~ p(z_t | z_{t−1}), then
        x_t ~ p(x_t | z_t) (or its mean); ``(n, T, D)`` (and the latents ``(n, T, Dz)``). A
        sequence model has no inputs or categorical latents to hold fixed (``given``)."""
        if given:
            raise ValueError(f"given: a sequence model has nothing to hold fixed, got {given}")
        chain, emission = self.generative[self.chain], self.generative[DATA]
        z, xs, zs = chain.initial.expand(n, -1), [], []
        for _ in range(steps or self.data_shape[0]):
            z = chain({self.chain: z}).sample()
            px = emission({self.chain: z})
            xs.append(emission.family.mean(px) if mean else px.sample())
            zs.append(z)
        x = torch.stack(xs, dim=1)
        return (x, {self.chain: torch.stack(zs, dim=1)}) if return_latents else x

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, lengths=None, *, mean: bool = True) -> torch.Tensor:
        """z_{1:T} ~ q(z | x), then the mean (or a draw) of p(x_t | z_t) at every step."""
        trace = poutine.trace(self.guide).get_trace(x, lengths)
        emission = self.generative[DATA]
        z = torch.stack(
            [trace.nodes[step_site(self.chain, t + 1)]["value"] for t in range(x.shape[1])], 1
        )
        px = emission({self.chain: z})
        return emission.family.mean(px) if mean else px.sample()

    def _refused(self, what: str):
        raise ModelGuideError(
            f"{what} is defined for models with one latent value per datapoint; "
            f"{self.model_spec.path} is a sequence model"
        )

    def encode(self, x, *, mean=True):
        self._refused("encode")

    def decode(self, latents, *, mean=True):
        self._refused("decode")

    def interpolate(self, x_from, x_to, steps=8):
        self._refused("interpolate")

    def attribute_vectors(self, x, labels):
        self._refused("attribute_vectors")

"""The nets of sequence models: the gated transition and the combiner of Krishnan, Shalit &
Sontag (2017), and the recurrent encoder a sequence guide reads its data through.

A chain latent's ``transition`` is a net from z_{t−1} to the raw parameters of p(z_t | z_{t−1}),
shared over t; any registered net can be one (``linear`` makes a linear-Gaussian state-space
model), ``gated`` is the deep Markov model's. A guide entry of a chain latent reads the data
through a :class:`SequenceEncoder` (``rnn = {...}``) and combines its state h_t with z_{t−1} by
its ``net`` (``combiner`` is the DMM's). All of them broadcast over leading (particle, data)
dimensions, as every net does.

Reference: R. G. Krishnan, U. Shalit, D. Sontag, *Structured Inference Networks for Nonlinear
State Space Models*, AAAI 2017.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..spec.options import Option, one_of, positive_int
from .counting import NetShape, Size, SpecEntry, Tally
from .nets import NetInput, NetOutput, register_net

#: The keys of a guide entry's ``rnn = {...}`` table.
RNN_OPTIONS = {
    "cell": Option(
        one_of(("gru", "lstm", "rnn_relu", "rnn_tanh")),
        "gru",
        doc="the recurrent cell (rnn_relu: Elman's with ReLU, as in Pyro's DMM example)",
    ),
    "hidden": Option(positive_int, 600, doc="the width of its state"),
    "direction": Option(
        one_of(("backward", "forward", "both")),
        "backward",
        doc="backward: h_t reads x_t..x_T (the structure of the exact posterior)",
    ),
    "layers": Option(positive_int, 1, doc="stacked recurrent layers"),
}
_CELLS = {
    "gru": nn.GRU,
    "lstm": nn.LSTM,
    "rnn_relu": functools.partial(nn.RNN, nonlinearity="relu"),
    "rnn_tanh": nn.RNN,
}


def _vector_input(inputs: list[NetInput], kind: str, count: int) -> None:
    if len(inputs) != count or any(i.categorical or i.image_shape for i in inputs):
        names = ", ".join(i.name for i in inputs)
        raise ValueError(f"a '{kind}' net takes {count} real vector input(s), got [{names}]")


class GatedTransition(nn.Module):
    """The DMM's transition: a gate g = σ(MLP(z)) mixes an identity-initialized linear map of
    z_{t−1} with a proposed mean m = MLP(z): loc = (1 − g) ⊙ Wz + g ⊙ m; the scale's raw value
    (the family's softplus makes it positive) is linear in relu(m)."""

    def __init__(self, size: int, hidden: int, out_size: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, size))
        self.proposed = nn.Sequential(nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, size))
        self.loc = nn.Linear(size, size)
        with torch.no_grad():  # start near z_t = z_{t-1}: a slowly moving chain
            self.loc.weight.copy_(torch.eye(size))
            self.loc.bias.zero_()
        self.scale = nn.Linear(size, size) if out_size == 2 * size else None

    def forward(self, values: list[torch.Tensor]) -> torch.Tensor:
        z = values[0]
        gate = torch.sigmoid(self.gate(z))
        proposed = self.proposed(z)
        loc = (1 - gate) * self.loc(z) + gate * proposed
        if self.scale is None:
            return loc
        return torch.cat([loc, self.scale(torch.relu(proposed))], dim=-1)


def _gated_count(tally: Tally, shape: NetShape, entry: SpecEntry) -> None:
    size, hidden = shape.inputs[0], entry.size("hidden")
    for _ in range(2):  # the gate's and the proposed mean's MLPs
        tally.linear(size, hidden)
        tally.linear(hidden, size)
    tally.linear(size, size)
    if shape.output.value == 2 * size.value:
        tally.linear(size, size)


@register_net(
    "gated",
    options={"hidden": Option(positive_int, 200, doc="the width of the gate's and mean's MLPs")},
    count=_gated_count,
)
def gated(inputs, output: NetOutput, hidden: int):
    _vector_input(inputs, "gated", 1)
    size = inputs[0].size
    if output.size not in (size, 2 * size):
        raise ValueError(
            f"a 'gated' transition maps z_(t-1) to the mean (and scale) of z_t, which needs a "
            f"'normal' family of the same dim; it was asked for {output.size} values from {size}"
        )
    return GatedTransition(size, hidden, output.size)


class Combiner(nn.Module):
    """The DMM guide's combiner: h = ½ (tanh(W z_{t−1} + b) + h_t), then a linear map of h to
    the guide family's raw parameters."""

    def __init__(self, size: int, state: int, out_size: int):
        super().__init__()
        self.previous = nn.Linear(size, state)
        self.out = nn.Linear(state, out_size)

    def forward(self, values: list[torch.Tensor]) -> torch.Tensor:
        previous, state = values
        return self.out(0.5 * (torch.tanh(self.previous(previous)) + state))


def _combiner_count(tally: Tally, shape: NetShape, entry: SpecEntry) -> None:
    if len(shape.vector_inputs) != 2 or len(shape.inputs) != 2:  # else the builder refuses it
        return
    size, state = shape.inputs
    tally.linear(size, state)
    tally.linear(state, shape.output)


@register_net("combiner", count=_combiner_count)
def combiner(inputs, output: NetOutput):
    _vector_input(inputs, "combiner", 2)
    return Combiner(inputs[0].size, inputs[1].size, output.size)


def reversed_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` (N, T, …) with each sequence's first ``lengths[n]`` steps in reverse order and its
    padding left where it is; applying it twice gives ``x`` back."""
    steps = torch.arange(x.shape[1], device=x.device)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    index = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class SequenceEncoder(nn.Module):
    """A recurrent net over a batch of padded sequences (N, T, D) → states (N, T, H·directions).

    The backward state h_t reads x_t … x_{L_n} of its own sequence: the sequence is reversed
    within its length, run forwards, and its states reversed back. Padding always comes after
    the steps an RNN has read, so the states within each length are those of the sequence alone
    and no packing is needed (steps past a length are masked out by the model). The initial
    states are learned, as in Krishnan et al.'s guide.
    """

    def __init__(self, size: int, cell: str, hidden: int, direction: str, layers: int):
        super().__init__()
        # Keys that are no attribute of nn.Module ("forward" is its method).
        names = {"forward": ("forwards",), "backward": ("backwards",)}.get(
            direction, ("forwards", "backwards")
        )
        self.rnns = nn.ModuleDict(
            {n: _CELLS[cell](size, hidden, layers, batch_first=True) for n in names}
        )
        states = 2 if cell == "lstm" else 1  # an LSTM also carries its cell state
        self.initial = nn.ParameterDict(
            {n: nn.Parameter(torch.zeros(states, layers, 1, hidden)) for n in names}
        )
        self.size = hidden * len(names)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        outputs = []
        for name, rnn in self.rnns.items():
            initial = self.initial[name].expand(-1, -1, x.shape[0], -1).contiguous()
            state = tuple(initial) if isinstance(rnn, nn.LSTM) else initial[0]
            if name == "backwards":
                outputs.append(reversed_within(rnn(reversed_within(x, lengths), state)[0], lengths))
            else:
                outputs.append(rnn(x, state)[0])
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)


def count_encoder(tally: Tally, size: Size, rnn: SpecEntry) -> Size:
    """Add the tensors of a :class:`SequenceEncoder` of input width ``size`` built from the
    ``rnn`` table; returns the width of its states."""
    hidden, layers = rnn.size("hidden"), rnn.options["layers"]
    gates = hidden.value * _GATES[rnn.options["cell"]]
    directions = 2 if rnn.options["direction"] == "both" else 1
    states = 2 if rnn.options["cell"] == "lstm" else 1
    for _ in range(directions):
        for layer in range(layers):
            tally.add(rnn.size("hidden", gates), size if layer == 0 else hidden)
            tally.add(rnn.size("hidden", gates), hidden)
            tally.add(rnn.size("hidden", 2 * gates))
        tally.add(hidden, rnn.size("layers", states * layers))
    return rnn.size("hidden", hidden.value * directions)


#: The gate blocks of each cell's weights.
_GATES = {"gru": 3, "lstm": 4, "rnn_relu": 1, "rnn_tanh": 1}

"""Networks that map parent values to the raw parameters of a distribution family.

A net is built from the list of its inputs (name, size, whether categorical, image shape) and
its output (how many raw numbers the family needs, and the image shape when it is the observed
image x); it is called with the parents' values in ``given`` order and broadcasts over any
leading (particle, enumeration, data) dimensions. Values are always flat vectors; nets that
see images (:mod:`pyro_vae.model.conv`) reshape them. Each kind is registered with its builder
and, beside it, the count of what that builder will allocate (:class:`NetKind`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from ..spec.options import Option, list_of, one_of, positive_int
from .counting import NetShape, SpecEntry, Tally, sum_of
from .relaxing import categories_as_vectors


@dataclass(frozen=True)
class NetInput:
    """One input of a net: a parent node (or the data ``x``)."""

    name: str
    size: int
    categorical: bool = False  # categorical values are integer codes, one-hot encoded for MLPs
    image_shape: tuple[int, int, int] | None = None  # (C, H, W) of image data seen flat


@dataclass(frozen=True)
class NetOutput:
    """What a net computes: ``size`` raw numbers for its family; for the observed x of image
    data, the ``image_shape`` (C, H, W) they lay out, P numbers per pixel, parameter-major
    (first the family's first parameter of every pixel in (C, H, W) order, then the next)."""

    size: int
    image_shape: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class NetKind:
    """A registered net: its builder ``build(inputs, output, **options)`` and its options.

    What it will hold is counted from the spec, before anything is built, by functions written
    beside the builder they mirror: ``count(tally, shape, entry)`` adds the net's parameters to
    the tally; ``feature_maps(shape, entry, limit)``, for a net whose activations can dwarf its
    weights (a strided conv net), gives the values of one datapoint's feature maps (counted up
    to just past ``limit``). A kind without it keeps no maps worth refusing a spec for.
    """

    build: Callable[..., nn.Module]
    options: dict[str, Option]
    count: Callable[[Tally, NetShape, SpecEntry], None]
    feature_maps: Callable[[NetShape, SpecEntry, int], int] | None = None


NETS: Registry[NetKind] = Registry("net")
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}


def register_net(
    name: str,
    options: dict[str, Option] | None = None,
    *,
    count: Callable[[Tally, NetShape, SpecEntry], None],
    feature_maps: Callable[[NetShape, SpecEntry, int], int] | None = None,
):
    def decorator(build):
        NETS.register(name)(NetKind(build, options or {}, count, feature_maps))
        return build

    return decorator


def concat_inputs(values: list[torch.Tensor], inputs: list[NetInput]) -> torch.Tensor:
    """One-hot encode categorical inputs and concatenate all, broadcasting leading dims."""
    coded = not categories_as_vectors()  # else a relaxation's points of the simplex
    parts = [
        F.one_hot(v.long(), spec.size).to(torch.get_default_dtype())
        if spec.categorical and coded
        else v
        for v, spec in zip(values, inputs, strict=True)
    ]
    if len(parts) == 1:
        return parts[0]
    batch_shape = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(*batch_shape, p.shape[-1]) for p in parts], dim=-1)


class MLP(nn.Module):
    """Fully connected net: concat(inputs) → [Linear → activation]* → Linear."""

    def __init__(self, inputs: list[NetInput], out_size: int, hidden: list[int], activation: str):
        super().__init__()
        self.inputs = list(inputs)
        sizes = [sum(i.size for i in inputs), *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(sizes[-1], out_size))
        self.layers = nn.Sequential(*layers)

    def forward(self, values: list[torch.Tensor]) -> torch.Tensor:
        h = concat_inputs(values, self.inputs)
        for layer in self.layers:
            if h.dtype in _REDUCED and not isinstance(layer, nn.Linear):
                # Under autocast only the products need bf16; a CPU computes the elementwise
                # activation about 3x faster (and exactly) in float32.
                h = h.float()
            h = layer(h)
        return h


_REDUCED = (torch.bfloat16, torch.float16)


def _mlp_values(tally: Tally, shape: NetShape, entry: SpecEntry) -> None:
    """The layers :class:`MLP` builds, for ``mlp`` and ``linear`` (no ``hidden``) alike."""
    widths = [sum_of(shape.inputs), *entry.sizes("hidden"), shape.output]
    for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
        tally.linear(n_in, n_out)


class Table(nn.Module):
    """One learned row of raw parameters per category of a single categorical parent."""

    def __init__(self, inputs: list[NetInput], out_size: int):
        super().__init__()
        # Spread rows apart so mixture components do not start identical.
        self.rows = nn.Parameter(torch.randn(inputs[0].size, out_size))

    def forward(self, values: list[torch.Tensor]) -> torch.Tensor:
        if categories_as_vectors():  # a point of the simplex weighs the rows
            return values[0] @ self.rows
        return self.rows[values[0].long()]


def _table_values(tally: Tally, shape: NetShape, entry: SpecEntry) -> None:
    """The rows of a :class:`Table`, one per category of its parent."""
    if len(shape.inputs) == 1 and shape.categorical_inputs == 1:  # else the builder refuses it
        tally.add(shape.inputs[0], shape.output)


@register_net(
    "mlp",
    options={
        "hidden": Option(list_of(positive_int), doc="hidden layer sizes, e.g. [200, 200]"),
        "activation": Option(one_of(sorted(ACTIVATIONS)), "relu", doc="nonlinearity"),
    },
    count=_mlp_values,
)
def mlp(inputs, output: NetOutput, hidden, activation):
    return MLP(inputs, output.size, hidden, activation)


class GatedMLP(nn.Module):
    """Gated dense layers (Dauphin et al. 2017; the nets of Tomczak & Welling 2018's VAEs):
    each hidden layer is ``(W h + b) ⊙ sigmoid(V h + c)``, the gate choosing per unit how much
    passes; then a Linear to the raw parameters."""

    def __init__(self, inputs: list[NetInput], out_size: int, hidden: list[int]):
        super().__init__()
        self.inputs = list(inputs)
        sizes = [sum(i.size for i in inputs), *hidden]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.values = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in pairs)
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.gates = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in pairs)
        self.out = nn.Linear(sizes[-1], out_size)

    def forward(self, values: list[torch.Tensor]) -> torch.Tensor:
        h = concat_inputs(values, self.inputs)
        for value, gate in zip(self.values, self.gates, strict=True):
            h = value(h) * torch.sigmoid(gate(h))
        return self.out(h)


def _gated_mlp_values(tally: Tally, shape: NetShape, entry: SpecEntry) -> None:
    """The layers :class:`GatedMLP` builds: two Linears per hidden layer, then the output."""
    widths = [sum_of(shape.inputs), *entry.sizes("hidden")]
    for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
        tally.linear(n_in, n_out)
        tally.linear(n_in, n_out)
    tally.linear(widths[-1], shape.output)


@register_net(
    "gated_mlp",
    options={"hidden": Option(list_of(positive_int), doc="hidden layer sizes, e.g. [300, 300]")},
    count=_gated_mlp_values,
)
def gated_mlp(inputs, output: NetOutput, hidden):
    return GatedMLP(inputs, output.size, hidden)


@register_net("linear", count=_mlp_values)
def linear(inputs, output: NetOutput):
    return MLP(inputs, output.size, hidden=[], activation="relu")


@register_net("table", count=_table_values)
def table(inputs, output: NetOutput):
    if len(inputs) != 1 or not inputs[0].categorical:
        names = ", ".join(i.name for i in inputs)
        raise ValueError(f"a 'table' net needs exactly one categorical parent, got [{names}]")
    return Table(inputs, output.size)

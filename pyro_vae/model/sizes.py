"""The size of what a model/guide spec pair builds, counted from the specs before anything is
allocated.

:func:`check_sizes` runs before :class:`~pyro_vae.model.latent_model.LatentModel` builds a single
torch module. It counts every parameter (and every buffer: the masks of the autoregressive
flows, the index table of ``full_normal``, counted as float32 values of the same bytes) the
nets and families of the pair will hold, and refuses a pair above :func:`max_bytes` of float32
with a :class:`~pyro_vae.errors.SpecError` naming the key that sizes most of it. Without it,
``dim = 10000000`` or ``hidden = [100000, 100000]`` fails deep in the allocator, or gets the
process killed by the system. It also counts the feature maps one datapoint's pass through a
``conv`` net holds, which a large ``stride`` or ``channels`` makes enormous while the weights
stay small. (What a training step needs on top, per datapoint and particle, is measured before
training starts, by :mod:`pyro_vae.runs.memory`.)

Each tensor is a product of sizes, each size knowing the key that set it (a latent's ``dim``, a
net's ``hidden``, a guide's ``rank``); a tensor is blamed on its largest factor, a factor that
no key sets (the data's size, a constant) on the node's net. The counts mirror the builders in
:mod:`~pyro_vae.model.nets`, :mod:`~pyro_vae.model.conv`, :mod:`~pyro_vae.model.families`,
:mod:`~pyro_vae.model.priors` and :mod:`~pyro_vae.model.guide_families`; the tests compare them
with the modules built for every registered family, guide family and net.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import PyroVaeError, SpecError
from ..spec.parse import DATA, GuideSpec, ModelSpec, NodeSpec
from .families import FAMILIES
from .guide_families import GUIDE_FAMILIES

#: The environment variable that overrides :data:`DEFAULT_MAX_BYTES`.
MAX_BYTES_ENV = "PYRO_VAE_MAX_BYTES"

#: The most bytes of float32 values a model and its guide may hold (2 GiB, 537 million
#: parameters: far above the nets these specs are written for, and below what a laptop has).
DEFAULT_MAX_BYTES = 2**31

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Size:
    """A width or a count, and the spec key that set it (``key`` empty: none did, e.g. the
    data's size or a constant)."""

    value: int
    path: str = ""
    key: str = ""


def _sum(sizes: list[Size]) -> Size:
    """The sum of ``sizes``, set by the key of the largest of them."""
    largest = max(sizes, key=lambda s: s.value, default=Size(0))
    return Size(sum(s.value for s in sizes), largest.path, largest.key)


def _times(*sizes: Size) -> Size:
    """The product of ``sizes``, set by the key of the largest of them."""
    largest = max(sizes, key=lambda s: s.value)
    return Size(math.prod(s.value for s in sizes), largest.path, largest.key)


class Tally:
    """Values counted by the spec key they are blamed on.

    :param where: the node (its file and net key) that a tensor none of whose factors has a
        key is blamed on; set per node while counting.
    """

    def __init__(self):
        self.counts: Counter[tuple[str, str]] = Counter()
        self.where = Size(0)

    def add(self, *factors: Size) -> None:
        """One tensor of ``prod(factors)`` values, blamed on its largest factor."""
        largest = max(factors, key=lambda s: s.value)
        blamed = largest if largest.key else self.where
        self.counts[(blamed.path, blamed.key)] += math.prod(f.value for f in factors)

    def linear(self, n_in: Size, n_out: Size) -> None:
        """An ``nn.Linear``: its weight and its bias."""
        self.add(n_in, n_out)
        self.add(n_out)


@dataclass(frozen=True)
class NetShape:
    """What a net is built from: its inputs' widths (with the image shape of the data input) and
    its output's width (with the image shape when it is the observed image x)."""

    inputs: list[Size]
    output: Size
    input_image: tuple[int, int, int] | None = None  # the (C, H, W) of an image input
    output_image: tuple[int, int, int] | None = None
    categorical_inputs: int = 0
    image_inputs: int = 0
    vector_inputs: tuple[Size, ...] = ()  # the inputs other than images


# -- nets ------------------------------------------------------------------------------------


def _mlp_values(tally: Tally, shape: NetShape, options: dict, path: str, key: str) -> None:
    hidden = [Size(h, path, f"{key}.hidden") for h in options.get("hidden", [])]
    widths = [_sum(shape.inputs), *hidden, shape.output]
    for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
        tally.linear(n_in, n_out)


def _table_values(tally: Tally, shape: NetShape, options: dict, path: str, key: str) -> None:
    if len(shape.inputs) == 1 and shape.categorical_inputs == 1:  # else the builder refuses it
        tally.add(shape.inputs[0], shape.output)


def _ceil_div(n: int, d: int) -> int:
    return -(-n // d)


def _conv_values(tally: Tally, shape: NetShape, options: dict, path: str, key: str) -> None:
    channels = [Size(c, path, f"{key}.channels") for c in options["channels"]]
    kernel = Size(options["kernel"] ** 2, path, f"{key}.kernel")
    stride = options["stride"]
    if shape.output_image is not None:
        c, h, w = shape.output_image
        pixels = c * h * w
        if shape.output.value % pixels:
            return  # the builder refuses it
        for _ in channels:  # the decoder starts at ⌈H / strideᴸ⌉ × ⌈W / strideᴸ⌉
            h, w = _ceil_div(h, stride), _ceil_div(w, stride)
        tally.linear(_sum(shape.inputs), _times(channels[0], Size(h * w)))
        widths = [*channels, Size(shape.output.value // pixels * c, shape.output.path)]
        for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
            tally.add(n_in, n_out, kernel)
            tally.add(n_out)
    elif shape.image_inputs == 1:
        c_in, h, w = shape.input_image
        width = Size(c_in)
        for out in channels:
            tally.add(width, out, kernel)
            tally.add(out)
            width, h, w = out, _ceil_div(h, stride), _ceil_div(w, stride)
        tally.linear(_sum([_times(width, Size(h * w)), *shape.vector_inputs]), shape.output)


def _conv_maps(shape: NetShape, options: dict, limit: int) -> int:
    """Values of the feature maps one datapoint's pass through a conv net holds (counted up to
    just past ``limit``: strides multiply them beyond any number worth writing)."""
    channels, stride = options["channels"], options["stride"]
    total = 0
    if shape.output_image is not None:
        c_out, h, w = shape.output_image
        per_pixel = shape.output.value // (c_out * h * w)
        for _ in channels:
            h, w = _ceil_div(h, stride), _ceil_div(w, stride)
        # Each layer's input maps, then the last layer's output (P values per pixel, uncropped).
        for c in [*channels, per_pixel * c_out]:
            total += c * h * w
            if total > limit:
                return total
            h, w = h * stride, w * stride
    elif shape.image_inputs == 1:
        _, h, w = shape.input_image
        for c in channels:
            h, w = _ceil_div(h, stride), _ceil_div(w, stride)
            total += c * h * w
    return total


#: Net kind → ``count(tally, shape, options, path, key)``, as the kind's builder builds it.
NET_VALUES: dict[str, Callable[..., None]] = {
    "mlp": _mlp_values,
    "linear": _mlp_values,
    "table": _table_values,
    "conv": _conv_values,
}


# -- families --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyShape:
    """A node's family: the raw outputs its net must give (``head``) and its own tensors."""

    head: Size
    own: list[tuple[Size, ...]]


def _made(dim: Size, hidden: list[Size], context: Size | None) -> list[tuple[Size, ...]]:
    """The tensors of one of Pyro's autoregressive networks (``AutoRegressiveNN``): each
    masked layer's weight, its mask (a buffer of the same shape) and bias; the outputs are a
    shift and a scale per dimension; the permutation is an int64 buffer (2 float32s each)."""
    two = Size(2)
    widths = [_sum([dim, context]) if context else dim, *hidden, _times(two, dim)]
    tensors: list[tuple[Size, ...]] = [(two, dim)]
    for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
        tensors += [(two, n_in, n_out), (n_out,)]
    return tensors


def _flows(count: Size, dim: Size, hidden: list[Size], context: Size | None):
    return [(count, *t) for t in _made(dim, hidden, context)]


def _flow_hidden(options: dict, dim: Size, path: str, key: str) -> list[Size]:
    if options.get("hidden"):
        return [Size(h, path, f"{key}.hidden") for h in options["hidden"]]
    return [_times(Size(4), dim)]  # the default, [4 · dim]


def _normal(size, conditional, options, path, key, data) -> FamilyShape:
    scale = options.get("scale")
    mode = scale if scale is not None else ("net" if conditional else "learned_per_dim")
    head = _times(Size(2), size) if mode == "net" else size
    own = [] if conditional else [(size,)]  # the learned mean of a node without parents
    own += {"learned_per_dim": [(size,)], "learned": [(Size(1),)]}.get(mode, [])
    if isinstance(mode, float):
        own.append((Size(1),))  # the fixed σ, a buffer
    return FamilyShape(head, own)


def _logits(size, conditional, options, path, key, data) -> FamilyShape:
    return FamilyShape(size, [] if conditional else [(size,)])


def _mixture_normal(size, conditional, options, path, key, data) -> FamilyShape:
    components = Size(options["components"], path, f"{key}.components")
    return FamilyShape(size, [(components,), (components, size), (components, size)])


def _flow_normal(size, conditional, options, path, key, data) -> FamilyShape:
    flows = Size(options["flows"], path, f"{key}.flows")
    own = [(size,), *_flows(flows, size, _flow_hidden(options, size, path, key), None)]
    return FamilyShape(size, own)


def _vamp(size, conditional, options, path, key, data) -> FamilyShape:
    return FamilyShape(size, [(Size(options["pseudo_inputs"], path, f"{key}.pseudo_inputs"), data)])


#: Model family → ``shape(size, conditional, options, path, key, data)``.
FAMILY_VALUES: dict[str, Callable[..., FamilyShape]] = {
    "standard_normal": lambda size, *_: FamilyShape(size, [(size,)]),
    "normal": _normal,
    "bernoulli": _logits,
    "continuous_bernoulli": _logits,
    "categorical": _logits,
    "mixture_normal": _mixture_normal,
    "flow_normal": _flow_normal,
    "vamp": _vamp,
}


def _full_normal(size, conditional, options, path, key) -> FamilyShape:
    lower = Size(size.value * (size.value - 1) // 2, size.path, size.key)
    head = _sum([_times(Size(2), size), lower])
    # The indices of the strictly lower triangle: two int64 (four float32s) per entry.
    own = [(Size(4), lower)] + ([] if conditional else [(head,)])
    return FamilyShape(head, own)


def _low_rank_normal(size, conditional, options, path, key) -> FamilyShape:
    rank = Size(options["rank"] + 2, path, f"{key}.rank")  # the factor's columns, mean, scale
    head = _times(size, rank)
    return FamilyShape(head, [] if conditional else [(head,)])


def _iaf(size, conditional, options, path, key) -> FamilyShape:
    flows = Size(options["flows"], path, f"{key}.flows")
    hidden = _flow_hidden(options, size, path, key)
    two_dims = _times(Size(2), size)
    if conditional:
        context = Size(options["context"], path, f"{key}.context")
        return FamilyShape(_sum([two_dims, context]), _flows(flows, size, hidden, context))
    return FamilyShape(two_dims, [*_flows(flows, size, hidden, None), (two_dims,)])


def _diagonal_normal(size, conditional, options, path, key) -> FamilyShape:
    return _normal(size, conditional, {}, path, key, None)


#: Guide family → ``shape(size, conditional, options, path, key)``; ``enumerate`` builds none.
GUIDE_FAMILY_VALUES: dict[str, Callable[..., FamilyShape]] = {
    "diagonal_normal": _diagonal_normal,
    "full_normal": _full_normal,
    "low_rank_normal": _low_rank_normal,
    "iaf": _iaf,
    "categorical": lambda size, conditional, *_: FamilyShape(
        size, [] if conditional else [(size,)]
    ),
}


# -- the pair --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    size: Size
    categorical: bool = False
    image: tuple[int, int, int] | None = None


def _count_node(
    tally: Tally,
    maps: Counter,
    spec: NodeSpec,
    path: str,
    family: FamilyShape,
    inputs: dict[str, _Input],
    output_image: tuple[int, int, int] | None,
    limit: int,
) -> None:
    """One node: its family's own tensors and its net's."""
    tally.where = Size(0, path, f"{spec.key}.net" if spec.net else spec.key)
    for tensor in family.own:
        tally.add(*tensor)
    if spec.net is None or spec.net.kind not in NET_VALUES:
        return
    parents = [inputs[p] for p in spec.given]
    images = [p.image for p in parents if p.image]
    shape = NetShape(
        inputs=[p.size for p in parents],
        output=family.head,
        input_image=images[0] if images else None,
        output_image=output_image,
        categorical_inputs=sum(p.categorical for p in parents),
        image_inputs=len(images),
        vector_inputs=tuple(p.size for p in parents if p.image is None),
    )
    key = f"{spec.key}.net"
    NET_VALUES[spec.net.kind](tally, shape, spec.net.options, path, key)
    if spec.net.kind == "conv":
        maps[(path, key)] += _conv_maps(shape, spec.net.options, limit)


def value_counts(
    model: ModelSpec,
    guide: GuideSpec,
    data_size: int,
    image_shape: tuple[int, int, int] | None = None,
    *,
    limit: int | None = None,
) -> tuple[Counter, Counter]:
    """``(values, maps)``: the float32 values (parameters and buffers) the pair's modules hold,
    and the values of the feature maps one datapoint's pass through each conv net holds, both
    keyed by ``(spec file, key)`` of what they are blamed on. ``limit`` (values) stops counting
    feature maps soon after it is passed."""
    limit = limit if limit is not None else max_bytes() // FLOAT32_BYTES
    tally, maps = Tally(), Counter()
    data = Size(data_size)
    inputs: dict[str, _Input] = {}
    sizes: dict[str, Size] = {}
    for name, spec in model.latents.items():
        size_key = FAMILIES.get(spec.family).size_key
        size = Size(spec.options[size_key], model.path, f"{spec.key}.{size_key}")
        family = FAMILY_VALUES[spec.family](
            size, bool(spec.given), spec.options, model.path, spec.key, data
        )
        _count_node(tally, maps, spec, model.path, family, inputs, None, limit)
        sizes[name] = size
        inputs[name] = _Input(size, categorical=FAMILIES.get(spec.family).support == "categorical")
    x = model.observed
    family = FAMILY_VALUES[x.family](data, True, x.options, model.path, x.key, data)
    _count_node(tally, maps, x, model.path, family, inputs, image_shape, limit)
    inputs[DATA] = _Input(data, image=image_shape)  # flat data feeds no conv encoder
    for name, spec in guide.latents.items():
        if not GUIDE_FAMILIES.get(spec.family).sampled:
            continue
        family = GUIDE_FAMILY_VALUES[spec.family](
            sizes[name], bool(spec.given), spec.options, guide.path, spec.key
        )
        _count_node(tally, maps, spec, guide.path, family, inputs, None, limit)
    return tally.counts, maps


def max_bytes() -> int:
    """The limit: ``PYRO_VAE_MAX_BYTES`` if set (a whole number of bytes), else
    :data:`DEFAULT_MAX_BYTES`."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    if not text.isdecimal() or not text.isascii() or int(text) < 1:
        raise PyroVaeError(f"{MAX_BYTES_ENV}={text[:40]!r}: expected a whole number of bytes > 0")
    return int(text)


def _bytes_text(n: int) -> str:
    """``74.5 GiB``: a byte count in the largest binary unit below it (``2 GiB``, not 2.0)."""
    if n >= 2**80:
        return "more than 10^24 bytes"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"


def _count_text(n: int) -> str:
    return f"{n:,}" if n < 10**30 else "more than 10^30"


def check_sizes(
    model: ModelSpec,
    guide: GuideSpec,
    data_size: int,
    image_shape: tuple[int, int, int] | None = None,
) -> None:
    """Refuse a pair whose modules would hold more than :func:`max_bytes` of float32 values,
    or whose conv nets would hold more for one datapoint's feature maps, naming the key that
    sizes most of them.

    :raises SpecError: naming that key, the count and the limit.
    """
    limit = max_bytes()
    counts, maps = value_counts(
        model, guide, data_size, image_shape, limit=limit // FLOAT32_BYTES + 1
    )
    total = sum(counts.values())
    allowed = f"above the limit of {_bytes_text(limit)} ({MAX_BYTES_ENV})"
    if total * FLOAT32_BYTES > limit:
        (path, key), share = counts.most_common(1)[0]
        raise SpecError(
            path,
            key,
            f"the model and guide would hold {_count_text(total)} parameters "
            f"({_bytes_text(total * FLOAT32_BYTES)} of float32), {allowed}; "
            f"{_count_text(share)} of them are sized by this key",
        )
    for (path, key), values in maps.items():
        if values * FLOAT32_BYTES > limit:
            raise SpecError(
                path,
                key,
                f"one datapoint's feature maps in this net would hold {_count_text(values)} "
                f"values ({_bytes_text(values * FLOAT32_BYTES)} of float32), {allowed}; "
                f"use fewer channels or a smaller stride",
            )

"""The size of what a model/guide spec pair builds, counted from the specs before anything is
allocated.

:func:`check_sizes` runs before :class:`~pyro_vae.model.latent_model.LatentModel` builds a single
torch module. It counts every parameter (and every buffer: the masks of the autoregressive
flows, the index table of ``full_normal``, counted as float32 values of the same bytes) the
nets and families of the pair will hold, and refuses a pair above :func:`max_bytes` of float32
with a :class:`~pyro_vae.errors.SpecError` naming the key that sizes most of it. Without it,
``dim = 10000000`` or ``hidden = [100000, 100000]`` fails deep in the allocator, or gets the
process killed by the system. It also counts the feature maps one datapoint's pass through a
net holds where its kind counts them (``conv``: a large ``stride`` or ``channels`` makes them
enormous while the weights stay small). (What a training step needs on top, per datapoint and
particle, is measured before training starts, by :mod:`pyro_vae.runs.memory`.)

This module only walks the pair. Each registry entry counts its own tensors beside the builder
it mirrors (:meth:`Family.count <pyro_vae.model.families.Family.count>`, ``GuideFamily.count``,
``NetKind.count`` and ``NetKind.feature_maps``), in the sizes of
:mod:`~pyro_vae.model.counting`: each tensor a product of sizes, each size knowing the key that
set it (a latent's ``dim``, a net's ``hidden``, a guide's ``rank``), a tensor blamed on its
largest factor. The tests compare the counts with the modules built for every registered
family, guide family and net.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

from ..errors import PyroVaeError, SpecError
from ..spec.parse import DATA, GuideSpec, ModelSpec, NodeSpec
from .counting import FamilyShape, NetShape, Size, SpecEntry, Tally
from .families import FAMILIES
from .guide_families import GUIDE_FAMILIES
from .nets import NETS
from .sequence_nets import count_encoder

#: The environment variable that overrides :data:`DEFAULT_MAX_BYTES`.
MAX_BYTES_ENV = "PYRO_VAE_MAX_BYTES"

#: The most bytes of float32 values a model and its guide may hold (2 GiB, 537 million
#: parameters: far above the nets these specs are written for, and below what a laptop has).
DEFAULT_MAX_BYTES = 2**31

FLOAT32_BYTES = 4


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
    """One node: its family's own tensors and its net's (and its net's feature maps, where the
    net's kind counts them)."""
    tally.where = Size(0, path, f"{spec.key}.net" if spec.net else spec.key)
    for tensor in family.own:
        tally.add(*tensor)
    if spec.net is None:
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
    kind, entry = NETS.get(spec.net.kind), SpecEntry(spec.net.options, path, f"{spec.key}.net")
    kind.count(tally, shape, entry)
    if kind.feature_maps is not None:
        maps[(path, entry.key)] += kind.feature_maps(shape, entry, limit)


def _count_chain(tally: Tally, spec: NodeSpec, path: str, family, inputs, net_key: str) -> None:
    """A chain node: its family's own tensors, the net at ``net_key`` (its ``transition``, or
    the guide's ``net``) over ``inputs``, and its initial state."""
    key = f"{spec.key}.{net_key}"
    tally.where = Size(0, path, key)
    for tensor in family.own:
        tally.add(*tensor)
    net = getattr(spec, net_key)
    shape = NetShape(inputs=list(inputs), output=family.head, vector_inputs=tuple(inputs))
    NETS.get(net.kind).count(tally, shape, SpecEntry(net.options, path, key))
    tally.add(inputs[0])


def value_counts(
    model: ModelSpec,
    guide: GuideSpec,
    data_size: int,
    image_shape: tuple[int, int, int] | None = None,
    *,
    limit: int | None = None,
    data_sizes: dict[str, int] | None = None,
) -> tuple[Counter, Counter]:
    """``(values, maps)``: the float32 values (parameters and buffers) the pair's modules hold,
    and the values of the feature maps one datapoint's pass through each net that counts them
    (``conv``) holds, both keyed by ``(spec file, key)`` of what they are blamed on. ``limit``
    (values) stops counting feature maps soon after it is passed. ``data_sizes``: the sizes of
    the other observed nodes and of the inputs (:meth:`LatentModel.data_sizes`)."""
    limit = limit if limit is not None else max_bytes() // FLOAT32_BYTES
    tally, maps = Tally(), Counter()
    data = Size(data_size)
    data_sizes = data_sizes or {}
    inputs: dict[str, _Input] = {n: _Input(Size(data_sizes[n])) for n in model.inputs}
    sizes: dict[str, Size] = {}
    for name, spec in model.latents.items():
        cls, entry = FAMILIES.get(spec.family), SpecEntry(spec.options, model.path, spec.key)
        size = entry.size(cls.size_key)
        chain = spec.transition is not None
        family = cls.count(size, bool(spec.given) or chain, entry, data)
        if chain:  # its net reads its own previous value, which starts at its initial state
            _count_chain(tally, spec, model.path, family, [size], "transition")
        else:
            _count_node(tally, maps, spec, model.path, family, inputs, None, limit)
        sizes[name] = size
        inputs[name] = _Input(size, categorical=cls.support == "categorical")
    for name, node in model.also_observed.items():
        size = Size(data_sizes[name])
        entry = SpecEntry(node.options, model.path, node.key)
        family = FAMILIES.get(node.family).count(size, True, entry, size)
        _count_node(tally, maps, node, model.path, family, inputs, None, limit)
        inputs[name] = _Input(size)
    x = model.observed
    entry = SpecEntry(x.options, model.path, x.key)
    family = FAMILIES.get(x.family).count(data, True, entry, data)
    _count_node(tally, maps, x, model.path, family, inputs, image_shape, limit)
    inputs[DATA] = _Input(data, image=image_shape)  # flat data feeds no conv encoder
    for name, spec in guide.latents.items():
        kind = GUIDE_FAMILIES.get(spec.family)
        if not kind.sampled:
            continue
        entry = SpecEntry(spec.options, guide.path, spec.key)
        family = kind.count(sizes[name], bool(spec.given), entry, data)
        if name in model.chains:  # q(z_t | z_(t-1), h_t): h_t the rnn's state, else x_t
            state = data
            if spec.rnn is not None:
                rnn = SpecEntry(spec.rnn, guide.path, f"{spec.key}.rnn")
                state = count_encoder(tally, data, rnn)
            _count_chain(tally, spec, guide.path, family, [sizes[name], state], "net")
        else:
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
    data_sizes: dict[str, int] | None = None,
) -> None:
    """Refuse a pair whose modules would hold more than :func:`max_bytes` of float32 values,
    or whose conv nets would hold more for one datapoint's feature maps, naming the key that
    sizes most of them.

    :raises SpecError: naming that key, the count and the limit.
    """
    limit = max_bytes()
    counts, maps = value_counts(
        model,
        guide,
        data_size,
        image_shape,
        limit=limit // FLOAT32_BYTES + 1,
        data_sizes=data_sizes,
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

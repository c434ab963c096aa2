"""Convolutional nets for image data: ``kind = "conv"``.

Data stay flat vectors everywhere else; a conv net reshapes them, using the image shape
(C, H, W) the data set carries.

- **Encoder** (its inputs include the image x, e.g. a guide entry ``given = ["x"]``): one
  ``Conv2d`` per entry of ``channels``, each with ``kernel`` × ``kernel`` filters, stride
  ``stride`` and padding ``kernel // 2`` (so a layer maps size n to ⌈n / stride⌉), each followed
  by ``activation``; the features are flattened, joined with any other (vector) inputs, and a
  linear layer gives the family's raw parameters.
- **Decoder** (its output is the image x, i.e. the observed node's net): a linear layer from the
  inputs to ``channels[0]`` maps of size ⌈H / strideᴸ⌉ × ⌈W / strideᴸ⌉, L = ``len(channels)``;
  then one ``ConvTranspose2d`` per entry (each multiplies the size by ``stride``), the last to
  P × C maps for the family's P parameters per pixel; the result is cropped to H × W and
  flattened parameter-major, as :class:`~pyro_vae.model.nets.NetOutput` lays it out.

``kernel`` must be odd, so that the sizes work out exactly as above.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..spec.options import Option, list_of, one_of, positive_int
from .counting import NetShape, Size, SpecEntry, Tally, sum_of, times
from .nets import ACTIVATIONS, NetInput, NetOutput, concat_inputs, register_net


def odd_positive_int(value) -> int:
    value = positive_int(value)
    if value % 2 == 0:
        raise ValueError(f"expected an odd positive integer, got {value}")
    return value


def _flat_batch(value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Leading dims folded into one batch dim, the rest reshaped to ``shape``."""
    return value.reshape(-1, *shape)


class ConvEncoder(nn.Module):
    def __init__(self, inputs, output: NetOutput, channels, kernel, stride, activation):
        super().__init__()
        (image,) = [i for i in inputs if i.image_shape]
        self.image_index = inputs.index(image)
        self.others = [i for i in inputs if i is not image]
        self.image_shape = image.image_shape
        c, h, w = self.image_shape
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [
                nn.Conv2d(c, out_channels, kernel, stride, padding=kernel // 2),
                ACTIVATIONS[activation](),
            ]
            c, h, w = out_channels, math.ceil(h / stride), math.ceil(w / stride)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * h * w + sum(i.size for i in self.others), output.size)

    def forward(self, values: list[torch.Tensor]) -> torch.Tensor:
        x = values[self.image_index]
        features = self.features(_flat_batch(x, self.image_shape)).flatten(1)
        features = features.reshape(*x.shape[:-1], -1)
        others = [v for i, v in enumerate(values) if i != self.image_index]
        if others:
            spec = NetInput("features", features.shape[-1])
            features = concat_inputs([features, *others], [spec, *self.others])
        return self.head(features)


class ConvDecoder(nn.Module):
    def __init__(self, inputs, output: NetOutput, channels, kernel, stride, activation):
        super().__init__()
        self.inputs = list(inputs)
        c, h, w = output.image_shape
        pixels = c * h * w
        if output.size % pixels:
            raise ValueError(
                f"the family needs {output.size} outputs, not a multiple of {pixels} pixels"
            )
        self.image_shape, self.per_pixel = (c, h, w), output.size // pixels
        levels = len(channels)
        self.start = (channels[0], math.ceil(h / stride**levels), math.ceil(w / stride**levels))
        self.project = nn.Sequential(
            nn.Linear(sum(i.size for i in inputs), math.prod(self.start)), ACTIVATIONS[activation]()
        )
        layers: list[nn.Module] = []
        sizes = [*channels, self.per_pixel * c]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(
                nn.ConvTranspose2d(
                    n_in, n_out, kernel, stride, padding=kernel // 2, output_padding=stride - 1
                )
            )
            if i < levels - 1:
                layers.append(ACTIVATIONS[activation]())
        self.upsample = nn.Sequential(*layers)

    def forward(self, values: list[torch.Tensor]) -> torch.Tensor:
        z = concat_inputs(values, self.inputs)
        maps = self.upsample(_flat_batch(self.project(z), self.start))
        c, h, w = self.image_shape
        maps = maps[..., :h, :w]  # the upsampled maps are at least H × W
        return maps.reshape(*z.shape[:-1], self.per_pixel * c * h * w)


def _ceil_div(n: int, d: int) -> int:
    """⌈n / d⌉ in integers: exact at any size, where ``math.ceil`` of a float is not."""
    return -(-n // d)


def _conv_values(tally: Tally, shape: NetShape, entry: SpecEntry) -> None:
    """The weights of the :class:`ConvDecoder` or :class:`ConvEncoder` :func:`conv` builds."""
    channels = entry.sizes("channels")
    kernel = entry.size("kernel", entry.options["kernel"] ** 2)
    stride = entry.options["stride"]
    if shape.output_image is not None:
        c, h, w = shape.output_image
        pixels = c * h * w
        if shape.output.value % pixels:
            return  # the builder refuses it
        for _ in channels:  # the decoder starts at ⌈H / strideᴸ⌉ × ⌈W / strideᴸ⌉
            h, w = _ceil_div(h, stride), _ceil_div(w, stride)
        tally.linear(sum_of(shape.inputs), times(channels[0], Size(h * w)))
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
        tally.linear(sum_of([times(width, Size(h * w)), *shape.vector_inputs]), shape.output)


def _conv_maps(shape: NetShape, entry: SpecEntry, limit: int) -> int:
    """Values of the feature maps one datapoint's pass through a conv net holds (counted up to
    just past ``limit``: strides multiply them beyond any number worth writing). A large
    ``stride`` or ``channels`` makes them enormous while the weights stay small."""
    channels, stride = entry.options["channels"], entry.options["stride"]
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


@register_net(
    "conv",
    options={
        "channels": Option(
            list_of(positive_int, allow_empty=False), doc="channels per layer, e.g. [32, 64]"
        ),
        "kernel": Option(odd_positive_int, 3, "filter size (odd)"),
        "stride": Option(positive_int, 2, "stride of every layer"),
        "activation": Option(one_of(sorted(ACTIVATIONS)), "relu", "nonlinearity"),
    },
    count=_conv_values,
    feature_maps=_conv_maps,
)
def conv(inputs: list[NetInput], output: NetOutput, channels, kernel, stride, activation):
    if output.image_shape is not None:
        return ConvDecoder(inputs, output, channels, kernel, stride, activation)
    images = [i.name for i in inputs if i.image_shape]
    if len(images) == 1:
        return ConvEncoder(inputs, output, channels, kernel, stride, activation)
    raise ValueError(
        "a 'conv' net needs image data: as its input (a guide entry given x) or as its output "
        "(the observed x), and the data must be images (C, H, W), not flat vectors"
    )

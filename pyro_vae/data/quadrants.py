"""The quadrant-completion task of Pyro's CVAE tutorial (after Sohn, Lee & Yan 2015): given 1,
2 or 3 quadrants of an MNIST digit, predict the others.

``load_dataset("mnist-quadrants", given=1)``: ``x`` holds the pixels to predict (the quadrants
not given, grayscale in [0, 1], flat) and the column ``given`` the input quadrants' pixels. The
quadrants given are, as in the tutorial, bottom-left (1), then top-left (2), then top-right (3);
``Dataset.parts`` says where each array's values sit in the 28 × 28 image, so that completions
can be drawn whole again. Labels are kept.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import DataError
from .dataset import Dataset
from .files import DataLocation
from .mnist import MNIST_IMAGE_SHAPE, load_mnist
from .registry import DATASETS

#: The column of the input quadrants.
GIVEN = "given"

#: Quadrants by (row half, column half), in the order the tutorial gives them.
QUADRANT_ORDER = ((1, 0), (0, 0), (0, 1), (1, 1))


def quadrant_mask(given: int, height: int = 28, width: int = 28) -> torch.Tensor:
    """A (height, width) boolean mask of the pixels of the first ``given`` quadrants."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    h, w = height // 2, width // 2
    for row, col in QUADRANT_ORDER[:given]:
        mask[
            row * h : (row + 1) * h if row == 0 else height,
            col * w : (col + 1) * w if col == 0 else width,
        ] = True
    return mask


@DATASETS.register("mnist-quadrants")
def load_mnist_quadrants(location: DataLocation, *, seed: int, given: int = 1) -> Dataset:
    """MNIST cut into input quadrants (the column ``given``) and the rest to predict (``x``)."""
    if isinstance(given, bool) or given not in (1, 2, 3):
        raise DataError(f"mnist-quadrants: given must be 1, 2 or 3 quadrants, got {given!r}")
    mnist = load_mnist(location, seed=seed)
    inputs = quadrant_mask(given).flatten()
    inside, outside = inputs.nonzero()[:, 0], (~inputs).nonzero()[:, 0]
    return replace(
        mnist,
        name="mnist-quadrants",
        train=mnist.train[:, outside].contiguous(),
        test=mnist.test[:, outside].contiguous(),
        image_shape=None,
        columns={GIVEN: (mnist.train[:, inside].contiguous(), mnist.test[:, inside].contiguous())},
        options={"given": given},
        parts={"x": outside, GIVEN: inside},
        parts_image=MNIST_IMAGE_SHAPE,
    )

"""Conditional draws of a trained model, as image grids: completions of given inputs (a CVAE on
the quadrant task: each row a test digit, then draws of the rest given its quadrants) and
digits of a chosen class (M2: x ~ p(x | y = c, z), z ~ p(z)).

A completion is drawn whole again from the pieces the data set cut it into
(:attr:`~pyro_vae.data.dataset.Dataset.parts`): the input's pixels where they were given, the
model's mean of p(x | z, c) elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import PyroVaeError
from . import plots


def whole_images(dataset, pieces: dict[str, torch.Tensor]) -> torch.Tensor:
    """Flat images of ``dataset.parts_image`` from ``pieces`` (array name → (N, its values))."""
    image = dataset.parts_image
    n = len(next(iter(pieces.values())))
    out = torch.zeros(n, image[0] * image[1] * image[2])
    for name, values in pieces.items():
        out[:, dataset.parts[name]] = values.float().cpu()
    return out


def completion_grid(vae, dataset, path: Path, rows: int = 8, draws: int = 7) -> Path:
    """Each row: a test datapoint whole, then ``draws`` completions of its inputs (the mean of
    p(x | z, inputs) at z ~ p(z | inputs))."""
    if not dataset.parts:
        raise PyroVaeError(
            f"data set {dataset.name!r} does not say where its arrays sit in an image; "
            f"completions cannot be drawn"
        )
    device = next(vae.parameters()).device
    spec, images = vae.model_spec, []
    inputs = {n: dataset.array(node.data, "test")[:rows] for n, node in spec.inputs.items()}
    for i in range(rows):
        given = {n: v[i : i + 1].to(device) for n, v in inputs.items()}
        drawn = vae.sample(draws, given=given).cpu()
        pieces = {node.data: v[i : i + 1] for n, node in spec.inputs.items() for v in [inputs[n]]}
        truth = whole_images(dataset, {"x": dataset.test[i : i + 1], **pieces})
        completed = whole_images(
            dataset, {"x": drawn, **{k: v.expand(draws, -1) for k, v in pieces.items()}}
        )
        images += [truth, completed]
    title = f"test digits (left), then {draws} completions of the given part"
    grid = torch.cat(images)
    return plots.image_grid(grid, dataset.parts_image, path, title, columns=draws + 1)


def class_grid(vae, image_shape, path: Path, node: str, per_class: int = 8) -> Path:
    """One row per value c of the categorical latent ``node``: draws of x given ``node`` = c."""
    categories = vae.generative[node].family.size
    rows = [vae.sample(per_class, given={node: torch.tensor(c)}).cpu() for c in range(categories)]
    title = f"samples given {node} = 0 … {categories - 1} (one row each)"
    return plots.image_grid(torch.cat(rows), image_shape, path, title, columns=per_class)

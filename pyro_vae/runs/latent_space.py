"""Pictures of a trained run's latent space: interpolations between test images, and class
attribute vectors (Larsen et al. 2016; White 2016) added to encodings.

An attribute vector of class c is the mean encoding of the test images labelled c minus the
mean encoding of all test images; adding it to the encoding of an image of another class moves
the decoded image towards c, where the latent space has organized itself by class.

The picture's folder is checked before the run is loaded: one that is a file, lies under a file
or cannot be written is refused (:func:`~pyro_vae.runs.files.check_writable`) before any work.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..devices import module_device
from ..errors import DataError, PyroVaeError
from . import plots
from .config import prepare_data
from .files import check_writable
from .run_dir import load_run, run_metadata


def _images(run_dir, out, device=None):
    """The run's model in eval mode, its data and image shape, once ``out``'s folder is known
    to take the picture."""
    check_writable(Path(out).parent)
    vae, config = load_run(run_dir, device=device)
    image_shape = run_metadata(run_dir)["image_shape"]
    if not image_shape:
        raise PyroVaeError(f"data set '{config.data}' is not made of images; nothing to draw")
    vae.eval()
    return vae, prepare_data(vae, config), tuple(image_shape)


def interpolation_grid(
    run_dir, out: Path, pairs: int = 8, steps: int = 10, seed: int = 0, device=None
):
    """Rows of decoded images along the line between the encodings of two test images."""
    vae, dataset, image_shape = _images(run_dir, out, device)
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(dataset.test), generator=generator)[: 2 * pairs]
    if len(pick) < 2:
        raise DataError(f"data set '{dataset.name}' has fewer than 2 test images")
    ends = dataset.test[pick].to(module_device(vae))
    half = len(ends) // 2
    path = vae.interpolate(ends[:half], ends[half : 2 * half], steps).cpu()  # (pairs, steps, D)
    return plots.image_grid(
        path.reshape(-1, path.shape[-1]),
        image_shape,
        out,
        f"interpolations between the encodings of {half} pairs of test images",
        columns=steps,
    )


def attribute_grid(run_dir, out: Path, images: int = 8, seed: int = 0, device=None):
    """Rows: test images; columns: the image itself, then its encoding plus the attribute
    vector of each class, decoded."""
    vae, dataset, image_shape = _images(run_dir, out, device)
    device = module_device(vae)
    if dataset.test_labels is None:
        raise DataError(f"data set '{dataset.name}' has no labels, so no attribute vectors")
    vectors = vae.attribute_vectors(dataset.test.to(device), dataset.test_labels.to(device))
    generator = torch.Generator().manual_seed(seed)
    x = dataset.test[torch.randperm(len(dataset.test), generator=generator)[:images]]
    codes = vae.encode(x.to(device))
    columns = [x]
    for c in sorted(vectors):
        shifted = {n: codes[n] + vectors[c][n] for n in codes}
        columns.append(vae.decode(shifted).cpu())
    grid = torch.stack(columns, 1)  # (images, 1 + classes, D)
    return plots.image_grid(
        grid.reshape(-1, grid.shape[-1]),
        image_shape,
        out,
        "test images (first column), then their encodings plus the attribute vector of class "
        + ", ".join(str(c) for c in sorted(vectors)),
        columns=grid.shape[1],
    )

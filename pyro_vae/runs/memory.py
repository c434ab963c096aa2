"""The memory of one training step, estimated before training starts.

A step keeps, for the backward pass, tensors that grow with the number of rows it scores:
``batch_size × particles`` (``iwae:k=50`` scores 50 rows per datapoint). Instead of modelling
every net, the estimate *measures* what autograd saves for one and for two rows of a
one-particle step (``torch.autograd.graph.saved_tensors_hooks``), which gives the cost of a row
and the fixed part, and extrapolates to the configured batch:

.. math:: \\text{bytes} \\approx \\text{fixed} + \\text{per row} \\cdot B \\cdot K
          + 4 \\cdot \\text{parameter bytes}

(the parameters, their gradients and Adam's two moments). A step that would need more than the
device has is refused with the figure and the settings at fault, instead of failing in the
allocator (or being killed by the system) mid-epoch. This works for any Pyro pair: it only runs
the pair's own objective.
"""

from __future__ import annotations

import os
import warnings

import pyro
import torch

from ..devices import fork_rng
from ..errors import PyroVaeError
from ..objectives.registry import ObjectiveChoice
from . import batches


def saved_bytes(loss_fn) -> int:
    """Bytes of the distinct tensors autograd saves while ``loss_fn()`` runs."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn()
    return sum(storages.values())


def step_bytes(pair, choice: ObjectiveChoice, batch: torch.Tensor, rows: int) -> int:
    """Estimated peak bytes of one step of ``choice``'s one-particle form scoring ``rows`` rows
    (datapoints × particles; see the module docstring); ``batch`` holds at least two datapoints
    to measure on."""
    one_particle = ObjectiveChoice(choice.name, 1, dict(choice.options)).build(pair)

    def measured(n: int) -> int:
        args = batches.as_args(batches.head(batch, n))
        return saved_bytes(lambda: one_particle.differentiable_loss(pair.model, pair.guide, *args))

    with (
        fork_rng(batches.as_args(batch)[0].device),
        pyro.validation_enabled(False),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        one, two = measured(1), measured(2)
    per_row = max(two - one, 0)
    parameters = sum(p.numel() * p.element_size() for p in pair.parameters())
    return max(one - per_row, 0) + per_row * rows + 4 * parameters


def device_bytes(device: torch.device) -> int | None:
    """The memory of ``device``: a GPU's own, else the machine's (None if unknown)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_rows_memory(
    pair, choice: ObjectiveChoice, batch: torch.Tensor, rows: int, device, settings: str
) -> None:
    """Refuse work that scores ``rows`` rows at once with gradients (a training step, AIS's
    chains) when it needs more memory than ``device`` has; ``settings`` names the options that
    set ``rows``, for the message."""
    available = device_bytes(device)
    if available is None or batches.rows(batch) < 2:
        return
    try:
        needed = step_bytes(pair, choice, batch, rows)
    except Exception:  # the work itself reports a pair that cannot run, with its own message
        return
    if needed > available:
        raise PyroVaeError(
            f"{settings}: {rows:,} rows scored at once need about {needed / 2**30:,.1f} GiB, "
            f"more than the {available / 2**30:,.1f} GiB of {device}; lower them"
        )


def check_step_memory(pair, config, batch: torch.Tensor, device: torch.device) -> None:
    """:func:`check_rows_memory` for a training step: ``--batch-size`` × the objective's ``k``."""
    choice = config.objective
    check_rows_memory(
        pair,
        choice,
        batch,
        config.batch_size * choice.num_particles,
        device,
        f"--batch-size {config.batch_size} with --objective {choice.label}",
    )

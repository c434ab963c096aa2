"""One random stream per datapoint, so that per-datapoint estimates do not depend on batching.

An estimator that draws the samples of a whole batch at once gives datapoint n numbers that
depend on which other datapoints share its batch (and in what order): the global random
stream is consumed by all of them together. With ``seed=`` the estimators of this package
(:func:`~pyro_vae.log_likelihood`, :func:`~pyro_vae.elbo`) instead run each datapoint by itself,
inside its own stream seeded by ``(seed, datapoint id)``. Its samples, and so its estimate,
are then the same whatever the batch size, however the data set is split between processes,
and whichever datapoints come before it: bit for bit, since each datapoint is computed alone.

A datapoint of a Pyro pair is taken by slicing every argument with one row per datapoint of the
data plate (:mod:`~pyro_vae.inference.arguments`: ``model(x)`` gets ``x[n : n + 1]``); the slice
must give a plate of size 1, which :func:`each_datapoint` checks.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..devices import fork_rng
from .arguments import cannot_slice, take_rows, unsliced
from .estimand import named_arguments
from .layout import PlateLayout, inspect_pair
from .precision import data_device


def datapoint_seeds(seed: int, ids) -> list[int]:
    """The seed of each datapoint's stream: 63 bits from NumPy's ``SeedSequence`` of
    ``(seed, id)``, so that nearby seeds and ids give unrelated streams."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return [
        int(np.random.SeedSequence([seed, int(i)]).generate_state(1, np.uint64)[0] >> 1)
        for i in ids
    ]


def checked_ids(ids, num_data: int) -> list[int]:
    """The ids of the N datapoints: ``0 … N−1`` by default, else ``ids`` checked (N distinct
    non-negative integers, e.g. each row's index in the full test set)."""
    if ids is None:
        return list(range(num_data))
    values = [int(i) for i in (ids.tolist() if torch.is_tensor(ids) else ids)]
    if len(values) != num_data or len(set(values)) != num_data or min(values, default=0) < 0:
        raise ValueError(
            f"datapoint_ids must be {num_data} distinct non-negative integers, one per "
            f"datapoint of the 'data' plate; got {len(values)} values"
        )
    return values


@contextlib.contextmanager
def random_streams(device: torch.device | str | None = None):
    """Leave the caller's random state as it was, whatever the streams inside consume."""
    with fork_rng(torch.device(device or "cpu")):
        yield


def enter_stream(seed: int, device: torch.device | str | None = None) -> None:
    """Start the stream with ``seed`` (inside :func:`random_streams`)."""
    device = torch.device(device or "cpu")
    # The generators themselves: torch.manual_seed also queues a seeding of every CUDA
    # device, recording a stack trace each time (a millisecond per datapoint).
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def each_datapoint(
    model,
    guide,
    args,
    kwargs,
    layout: PlateLayout,
    seed: int,
    ids=None,
    proposal="guide",
    data_plate=None,
):
    """Yield ``(args, kwargs)`` of each datapoint alone, in order, each time inside that
    datapoint's own stream: what the caller draws until the next item comes from it. The
    caller's random state is left as it was.

    :param layout: the pair's layout on the whole batch (:func:`inspect_pair` with the same
        ``proposal`` and ``data_plate``, which the check of the first datapoint's slice uses).
    """
    seeds = datapoint_seeds(seed, checked_ids(ids, layout.num_data))
    device = data_device(args, kwargs)
    with random_streams(device):
        for n, stream_seed in enumerate(seeds):
            row = torch.tensor([n])
            one_args, one_kwargs = take_rows(args, kwargs, layout.num_data, row)
            if n == 0:
                one = inspect_pair(
                    model, guide, one_args, one_kwargs, proposal, data_plate=data_plate
                )
                if one.num_data != 1:
                    named = named_arguments(model, args, kwargs)
                    raise cannot_slice(layout.num_data, unsliced(named))
            enter_stream(stream_seed, device)
            yield one_args, one_kwargs

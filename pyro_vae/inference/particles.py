"""K particles per datapoint, for any pair.

Vectorized (as Pyro's ``vectorize_particles``): the programs run once inside an outer plate
``"particles"`` of size K, left of the model's plates, and every site gets a leading particle
dimension. A model that cannot take one — it indexes with a mask of the batch's shape, say, or
builds tensors from ``x.shape`` and mixes them with sampled ones — fails there; for such a pair
(:func:`~pyro_vae.inference.layout.inspect_pair` finds out once, by running it with two
particles) the programs instead run on K copies of every data row, ``N·K`` rows ordered
particle by particle (row ``k·N + n`` is datapoint n's k-th particle), which never asks the
model to broadcast. The two give the same estimates in distribution; the replicated one runs
the nets on the same number of rows, with more Python work per row when the rows of a chunk
are few.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass

import pyro
import torch

from .arguments import rows_of, take_rows
from .layout import PARTICLES, PlateLayout


def particles_of(layout: PlateLayout) -> str:
    """How a result's draws ran, as it records it: "vectorized" or "replicated"."""
    return "vectorized" if layout.vectorized else "replicated"


def batch_rows(args: tuple, kwargs: dict, layout: PlateLayout) -> int:
    """How many datapoints the arguments of this call hold: the data plate's size when some
    argument has that many rows, else the most common row count (a datapoint cut out alone)."""
    rows = [rows_of(v) for v in (*args, *kwargs.values())]
    rows = [r for r in rows if r is not None]
    if not rows or layout.num_data in rows:
        return layout.num_data
    return Counter(rows).most_common(1)[0][0]


@dataclass(frozen=True)
class Particles:
    """``k`` particles of every datapoint of a call of the pair laid out as ``layout`` says."""

    layout: PlateLayout
    k: int

    @property
    def vectorized(self) -> bool:
        return self.layout.vectorized

    @contextlib.contextmanager
    def running(self, args: tuple, kwargs: dict):
        """Yield the arguments to call the programs with: inside the particles plate, or the
        data rows replicated ``k`` times."""
        if self.vectorized:
            with pyro.plate(PARTICLES, self.k, dim=self.layout.particle_dim):
                yield args, kwargs
            return
        n = batch_rows(args, kwargs, self.layout)
        yield take_rows(args, kwargs, n, torch.arange(n).repeat(self.k))

    def to_program(self, value: torch.Tensor) -> torch.Tensor:
        """Latent values ``(K, N, *event)`` as the programs take them."""
        return value if self.vectorized else value.reshape(-1, *value.shape[2:])

    def from_program(self, value: torch.Tensor) -> torch.Tensor:
        """A program's per-row values, ``(K, N, *rest)`` or ``(K·N, *rest)``, as ``(K, N, ...)``."""
        return value if self.vectorized else value.reshape(self.k, -1, *value.shape[1:])

    def program_shape(self, rows: int) -> tuple[int, int]:
        """The shape per-datapoint sums take in programs that ran on ``rows`` data rows:
        ``(K, N)``, or ``(1, K·N)`` for replicated rows (no particle dimension)."""
        return (self.k, rows) if self.vectorized else (1, rows)

    def per_datapoint(self, total: torch.Tensor) -> torch.Tensor:
        """A sum in :meth:`program_shape` as ``(K, N)``."""
        return total if self.vectorized else total.reshape(self.k, -1)

    def flat(self, values: torch.Tensor) -> torch.Tensor:
        """``(K, N)`` values in :meth:`program_shape`."""
        return values if self.vectorized else values.reshape(1, -1)

"""What the checkpoint's safety costs per epoch: the SHA-256 of its tensors and the fsyncs.

A checkpoint of the bundled MNIST model (``bernoulli_vae``, 784-dimensional data, with Adam's
state) is written and read as training does once per epoch, three ways, each timed over
``--repeats`` rounds in the same run:

- *plain*: ``save_checkpoint`` without its checksum and fsyncs (the reference);
- *+ checksum*, *+ fsync*: with one of them;
- *full*: what ``save_checkpoint`` does — the SHA-256 of every tensor, then fsync of the file
  before the rename and of its folder after it.

Reading is timed plainly and with the checksum verified (``Checkpoint``). The overheads print in
milliseconds per epoch and as ratios to the plain write::

    python benchmarks/checkpoint_overhead.py [--repeats 30] [--dir /path/on/the/run/disk]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from safetensors.torch import load_file

import pyro_vae as pv
from pyro_vae.objectives.registry import ObjectiveChoice
from pyro_vae.runs import checkpoint, files
from pyro_vae.runs.checkpoint import Checkpoint, save_checkpoint


def trained_state():
    vae = pv.load("bernoulli_vae", data_shape=(784,), seed=0)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    x = torch.rand(100, 784).round()
    loss = (
        ObjectiveChoice("trace_mean_field").build(vae).differentiable_loss(vae.model, vae.guide, x)
    )
    loss.backward()
    optimizer.step()
    return vae, optimizer


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--dir", help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    vae, optimizer = trained_state()
    rng = {"torch": torch.get_rng_state(), "batches": torch.Generator().get_state()}
    folder = Path(args.dir or tempfile.mkdtemp())
    path = folder / "checkpoint.safetensors"

    def write(checksum: bool, fsync: bool):
        with contextlib.ExitStack() as stack:
            if not checksum:
                stack.enter_context(mock.patch.object(checkpoint, "tensors_digest", lambda t: ""))
            if not fsync:
                stack.enter_context(mock.patch.object(files, "durable", lambda path: None))
            save_checkpoint(path, vae, optimizer, rng=rng, info={"epoch": 1})

    results = {
        "plain write": median_ms(lambda: write(False, False), args.repeats),
        "+ checksum": median_ms(lambda: write(True, False), args.repeats),
        "+ fsync": median_ms(lambda: write(False, True), args.repeats),
        "save_checkpoint (checksum + fsync)": median_ms(lambda: write(True, True), args.repeats),
    }

    def full():
        write(True, True)

    full()
    results["plain read"] = median_ms(lambda: load_file(str(path)), args.repeats)
    results["Checkpoint (verified)"] = median_ms(lambda: Checkpoint(path), args.repeats)
    size = path.stat().st_size / 2**20
    print(f"checkpoint of bernoulli_vae (784-d) with Adam's state: {size:.1f} MiB in {folder}")
    reference = results["plain write"]
    for name, ms in results.items():
        print(f"{name:<36} {ms:8.2f} ms  {ms / reference:5.2f}x the plain write")
    extra = results["save_checkpoint (checksum + fsync)"] - reference
    print(f"overhead per epoch (one write): {extra:.2f} ms")


if __name__ == "__main__":
    main()

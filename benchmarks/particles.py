"""What the particle path for models that cannot broadcast costs, against the vectorized one.

``pv.log_likelihood`` runs K particles of every datapoint inside a ``"particles"`` plate when the
pair accepts one; a model that cannot take the extra leading dimension runs instead on K copies
of every data row (``inference/particles.py``). This script times both on the same networks —
those of the bundled ``bernoulli_vae`` (784-200-200-50, tanh), trained with ``--run`` — written
as a hand-made Pyro pair twice: once as it broadcasts, once with the line a user often writes,
``z.reshape(len(x), -1)``, that breaks under a particle dimension and sends the pair to the
replicated path. The bundled pair itself (which the estimator runs from its modules, in
cache-sized passes) is timed beside them, and a 2048³ float32 matrix product gives the roof.

It prints, for each path, the median seconds over interleaved repeats, the decoder's arithmetic
rate as a fraction of the GEMM rate, the ratio to the vectorized hand-written pair, and the mean
largest difference of its per-datapoint log p̂ from the vectorized pair's. Under ``seed=`` every
datapoint draws from its own stream, so all three paths see the same draws and the differences
are rounding only — the replicated path changes how the work runs, not what it computes.

    PYRO_VAE_DATA=../shared/data python benchmarks/particles.py
    PYRO_VAE_DATA=../shared/data python benchmarks/particles.py --run runs/gap --json p.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import pyro
import torch
from log_likelihood_roof import DECODER_FLOPS, gemm_rate, load  # this folder's roof benchmark

import pyro_vae as pv
from pyro_vae.model.latent_model import LatentModel


def hand_written_pair(vae: LatentModel, broadcasts: bool):
    """The bundled VAE's networks as a Pyro user writes a VAE; with ``broadcasts=False`` the
    model reshapes z to ``(len(x), -1)``, which a particle dimension breaks."""
    prior, likelihood, encoder = vae.generative["z"], vae.generative["x"], vae.inference["z"]

    def model(x):
        pyro.module("vae", vae)
        with pyro.plate("images", len(x)):
            z = pyro.sample("code", prior({}).expand([len(x)]))
            if not broadcasts:
                z = z.reshape(len(x), -1)
            pyro.sample("pixels", likelihood({"z": z}), obs=x)

    def guide(x):
        pyro.module("vae", vae)
        with pyro.plate("images", len(x)):
            pyro.sample("code", encoder({"x": x}))

    return model, guide


def estimate(pair, x: torch.Tensor, k: int, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Per-datapoint log p̂, its standard error, and how the particles ran."""
    model, guide = pair
    parts = [
        pv.log_likelihood(model, guide, x[i : i + batch_size], num_samples=k, seed=0)
        for i in range(0, len(x), batch_size)
    ]
    log_px = torch.cat([p.log_px for p in parts])
    return log_px, torch.cat([p.stderr for p in parts]), parts[0].particles


def measure(pairs: dict, x, k: int, batch_size: int, repeats: int) -> dict:
    """Median seconds of each pair's estimate, the pairs taking turns; the last estimates."""
    times = {name: [] for name in pairs}
    values = {}
    for pair in pairs.values():  # one untimed call each: the particle check, warm caches
        estimate(pair, x[:2], 8, batch_size)
    for _ in range(repeats):
        for name, pair in pairs.items():
            start = time.perf_counter()
            values[name] = estimate(pair, x, k, batch_size)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), values[name]) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run directory of bernoulli_vae (trained weights)")
    parser.add_argument("--num-data", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=20, help="datapoints per call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(min(args.threads, os.cpu_count() or 1))
    args.device = "cpu"
    vae, x, origin = load(args, torch.device("cpu"))
    k, n = args.num_samples, len(x)
    print(f"bernoulli_vae, {origin}; K = {k}; {torch.get_num_threads()} threads")

    roof_before = gemm_rate(torch.float32, torch.device("cpu"))
    pairs = {
        "bundled pair (from its modules)": (vae.model, vae.guide),
        "hand-written, vectorized": hand_written_pair(vae, broadcasts=True),
        "hand-written, replicated rows": hand_written_pair(vae, broadcasts=False),
    }
    results = measure(pairs, x, k, args.batch_size, args.repeats)
    roof = (roof_before + gemm_rate(torch.float32, torch.device("cpu"))) / 2
    reference = results["hand-written, vectorized"][0]
    print(f"float32 GEMM rate {roof:.0f} GFLOP/s; {n} datapoints × {k} particles\n")
    print(
        f"{'path':32} {'particles':>10} {'seconds':>8} {'of roof':>8} {'× vectorized':>13}"
        "   max |Δ log p̂|"
    )
    report = {"origin": origin, "num_samples": k, "num_data": n, "gemm_gflops": roof}
    base_log_px = results["hand-written, vectorized"][1][0]
    for name, (seconds, (log_px, stderr, particles)) in results.items():
        fraction = n * k * DECODER_FLOPS / seconds / 1e9 / roof
        delta = (log_px - base_log_px).abs().max().item()
        print(
            f"{name:32} {particles:>10} {seconds:8.2f} {fraction:8.3f} "
            f"{seconds / reference:13.2f}   {delta:.2e} (s.e. {stderr.mean():.3f})"
        )
        report[name] = {
            "particles": particles,
            "seconds": seconds,
            "of_roof": fraction,
            "ratio_to_vectorized": seconds / reference,
            "mean_log_px": log_px.mean().item(),
            "max_abs_difference": delta,
            "mean_stderr": stderr.mean().item(),
        }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

"""How close importance sampling comes to the machine's matrix-product roof, in float32 and
bfloat16, and what bfloat16 costs in accuracy.

The model is the bundled ``bernoulli_vae`` (784-200-200-50, tanh) — trained weights with
``--run`` (a run directory of that model), else its initial weights (the work is the same; only
the bf16 error depends on the weights). On ``--num-data`` binarized-MNIST test images (a seeded
random subset; random binary images without data) it times
``pyro_vae.log_likelihood(model, guide, x, num_samples=K, seed=0, precision=p)`` for each
precision and prints, against rates measured in the same run:

* the decoder's arithmetic rate, ``N·K·F / seconds`` with F = 2·(50·200 + 200·200 + 200·784)
  multiply-adds of one decoder pass, as a fraction of the float32 GEMM rate (a 2048³ product,
  median of interleaved repeats before and after the estimates) and of the bf16 GEMM rate;
* the rate of the decoder's own three products alone, at the row count the estimator uses;
* the time the whole binarized-MNIST test set (10,000 images) would take at that rate;
* peak memory: the growth of the resident set's high-water mark during each estimate;
* for bf16, the mean and largest |Δ log p̂| per datapoint against float32 on the same samples
  (the per-datapoint streams make them the same draws), next to the Monte Carlo standard error.

It also measures "split bf16", a = a_hi + a_lo with both halves in bf16 and a·b ≈ a_hi·b_hi +
a_hi·b_lo + a_lo·b_hi, on the decoder's last product: its speed and its error against float32.

    PYRO_VAE_DATA=../shared/data python benchmarks/log_likelihood_roof.py
    PYRO_VAE_DATA=../shared/data python benchmarks/log_likelihood_roof.py --run runs/gap \\
        --num-data 10000 --json roof.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path

import torch

import pyro_vae as pv
from pyro_vae.data.registry import DATA_ROOT_ENV
from pyro_vae.devices import resolve_device
from pyro_vae.errors import DataError
from pyro_vae.inference.precision import PRECISIONS
from pyro_vae.model.latent_model import LatentModel

DECODER_FLOPS = 2 * (50 * 200 + 200 * 200 + 200 * 784)
TEST_SET = 10_000
GEMM_SIZE = 2048


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed call."""
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_rate(dtype: torch.dtype, device: torch.device, repeats: int = 5) -> float:
    """Median GFLOP/s of a GEMM_SIZE³ product in ``dtype``."""
    a = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device).to(dtype)
    b = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device).to(dtype)
    return 2 * GEMM_SIZE**3 / timed(lambda: a @ b, device, repeats) / 1e9


def decoder_products_rate(vae: LatentModel, dtype: torch.dtype, rows: int, device) -> float:
    """GFLOP/s of the decoder's three products alone (no bias, no activation) on ``rows``."""
    weights = [m.weight.detach().to(dtype) for m in vae.likelihood.net.layers[::2]]
    inputs = [torch.randn(rows, w.shape[1], device=device).to(dtype) for w in weights]

    def run():
        for h, w in zip(inputs, weights, strict=True):
            h @ w.T

    return rows * DECODER_FLOPS / timed(run, device, 20) / 1e9


def split_bf16(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a·b from the bf16 halves of each factor: three bf16 products."""
    a_hi, b_hi = a.bfloat16(), b.bfloat16()
    a_lo, b_lo = (a - a_hi.float()).bfloat16(), (b - b_hi.float()).bfloat16()
    return (a_hi @ b_hi).float() + (a_hi @ b_lo).float() + (a_lo @ b_hi).float()


def split_bf16_experiment(vae: LatentModel, rows: int, device) -> dict:
    """Speed and relative error of split bf16 against float32 and plain bf16 on the decoder's
    last product (200 → 784) with ``rows`` rows of tanh activations."""
    w = vae.likelihood.net.layers[-1].weight.detach().T.contiguous()
    h = torch.tanh(torch.randn(rows, w.shape[0], device=device))
    exact = h.double() @ w.double()
    variants = {
        "fp32": lambda: h @ w,
        "bf16": lambda: (h.bfloat16() @ w.bfloat16()).float(),
        "split_bf16": lambda: split_bf16(h, w),
    }
    out = {}
    for name, fn in variants.items():
        seconds = timed(fn, device, 20)
        error = ((fn().double() - exact).abs().max() / exact.abs().max()).item()
        out[name] = {"seconds": seconds, "relative_error": error}
    for name in ("bf16", "split_bf16"):
        out[name]["speedup_vs_fp32"] = out["fp32"]["seconds"] / out[name]["seconds"]
    return out


def high_water_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_high_water(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux: reset VmHWM to the current resident set
        Path("/proc/self/clear_refs").write_text("5")


def load(args, device) -> tuple[LatentModel, torch.Tensor, str]:
    if args.run:
        vae, _ = pv.load_run(args.run, device=device)
        origin = f"trained weights of {args.run}"
    else:
        vae = pv.load("bernoulli_vae", data_shape=(784,), seed=0, device=device)
        origin = "initial weights (seed 0)"
    vae.eval()
    if os.environ.get(DATA_ROOT_ENV):
        try:
            data = pv.load_dataset("binarized-mnist", download=False)
        except DataError as error:
            print(f"note: binarized-mnist could not be loaded ({error})")
        else:
            rows = data.test_indices(args.num_data, seed=0)
            images = f"{len(rows)} binarized-MNIST test images"
            return vae, data.test[rows].to(device), f"{origin}; {images}"
    generator = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((args.num_data, 784), 0.13), generator=generator)
    images = f"{args.num_data} random binary images ({DATA_ROOT_ENV} not set)"
    return vae, x.to(device), f"{origin}; {images}"


COMPILE_CHOICES = {"off": (False,), "on": (True,), "both": (False, True)}


def estimate(vae, x, args, precision: str, compiled: bool, device):
    """The estimate of every datapoint of ``x``, batch by batch, and its timing: the whole
    time, compilation included (it happens in the first batch), and the compilation alone."""
    k, n = args.num_samples, len(x)
    if not compiled:  # warm up outside the timing; a compiled run pays its warm-up
        pv.log_likelihood(vae.model, vae.guide, x[:2], num_samples=64, seed=0, precision=precision)
    synchronize(device)
    reset_high_water(device)
    before = high_water_mb(device)
    start = time.perf_counter()
    parts = []
    batches = range(0, n, args.batch_size)
    if args.progress:
        from tqdm.auto import tqdm

        desc = f"log p(x), {precision}" + (", compiled" if compiled else "")
        batches = tqdm(batches, desc=desc, unit="batch", leave=False)
    for b in batches:
        ids = torch.arange(b, min(b + args.batch_size, n))
        options = {"datapoint_ids": ids, "precision": precision, "compile": compiled}
        parts.append(
            pv.log_likelihood(vae.model, vae.guide, x[ids], num_samples=k, seed=0, **options)
        )
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = high_water_mb(device)
    compile_seconds = sum(p.details.get("compile_seconds", 0.0) for p in parts)
    result = pv.LogLikelihood.concatenate(parts)
    rate = n * k * DECODER_FLOPS / seconds / 1e9
    return result, {
        "seconds": seconds,
        "compile_seconds": compile_seconds,
        "datapoint_samples_per_second": n * k / seconds,
        "decoder_gflops": rate,
        "fraction_of_fp32_gemm": None,  # filled in once the roof is measured again
        "test_set_seconds": (seconds - compile_seconds) * TEST_SET / n + compile_seconds,
        "peak_memory_growth_mb": None if peak is None else peak - before,
        "peak_memory_mb": peak,
        "log_px_mean": result.mean,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run directory of bernoulli_vae (trained weights)")
    parser.add_argument("--num-data", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=100, help="datapoints per call")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument(
        "--compile",
        choices=sorted(COMPILE_CHOICES),
        default="both",
        help="time the passes uncompiled, compiled by torch.compile, or both",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(min(args.threads, os.cpu_count() or 1))
    device = resolve_device(args.device)
    vae, x, origin = load(args, device)
    k, n = args.num_samples, len(x)
    where = f"{torch.get_num_threads()} threads" if device.type == "cpu" else str(device)
    print(f"bernoulli_vae, {origin}; K = {k}; {where}")

    def roof():
        return {p: gemm_rate(PRECISIONS[p] or torch.float32, device) for p in ("fp32", "bf16")}

    roof_before = roof()
    rows = LatentModel.SCORE_ROWS
    products = {
        p: decoder_products_rate(vae, PRECISIONS[p] or torch.float32, rows, device)
        for p in ("fp32", "bf16")
    }
    results, estimates = {}, {}
    for precision in args.precisions:
        for compiled in COMPILE_CHOICES[args.compile]:
            name = f"{precision} compiled" if compiled else precision
            estimates[name], results[name] = estimate(vae, x, args, precision, compiled, device)
    roof_after = roof()
    roof = {p: statistics.fmean([roof_before[p], roof_after[p]]) for p in roof_before}
    for r in results.values():
        r["fraction_of_fp32_gemm"] = r["decoder_gflops"] / roof["fp32"]
        r["fraction_of_bf16_gemm"] = r["decoder_gflops"] / roof["bf16"]
    accuracy = {}
    for reference, reduced in (("fp32", "bf16"), ("fp32 compiled", "bf16 compiled")):
        if {reference, reduced} <= set(estimates):
            change = (estimates[reduced].log_px - estimates[reference].log_px).abs()
            accuracy[reduced] = {
                "mean_abs_change": change.mean().item(),
                "max_abs_change": change.max().item(),
                "mean_mc_stderr_fp32": estimates[reference].stderr.mean().item(),
                "speedup": results[reference]["seconds"] / results[reduced]["seconds"],
            }
    split = split_bf16_experiment(vae, rows, device)

    print(
        f"GEMM roof ({GEMM_SIZE}³): fp32 {roof['fp32']:.0f} GFLOP/s "
        f"(before {roof_before['fp32']:.0f}, after {roof_after['fp32']:.0f}), bf16 "
        f"{roof['bf16']:.0f} ({roof_before['bf16']:.0f}, {roof_after['bf16']:.0f})"
    )
    print(
        f"the decoder's three products alone, {rows} rows: fp32 {products['fp32']:.0f} "
        f"GFLOP/s ({products['fp32'] / roof['fp32']:.2f} of the roof), bf16 "
        f"{products['bf16']:.0f} ({products['bf16'] / roof['bf16']:.2f} of the bf16 roof)"
    )
    print(
        f"\n| pass | seconds ({n} × K={k}) | of which compiling | decoder GFLOP/s | of fp32 "
        "roof | of bf16 roof | 10,000 images | peak memory (growth) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        memory = "–"
        if r["peak_memory_mb"] is not None:
            memory = f"{r['peak_memory_mb']:.0f} MB (+{r['peak_memory_growth_mb']:.0f})"
        print(
            f"| {name} | {r['seconds']:.1f} | {r['compile_seconds']:.1f} | "
            f"{r['decoder_gflops']:.0f} | {r['fraction_of_fp32_gemm']:.2f} | "
            f"{r['fraction_of_bf16_gemm']:.2f} | {r['test_set_seconds']:.0f} s | {memory} |"
        )
    for name, a in accuracy.items():
        print(
            f"\n{name} against fp32 on the same samples: mean |Δ log p̂| "
            f"{a['mean_abs_change']:.4f} nats, largest {a['max_abs_change']:.4f} "
            f"(Monte Carlo stderr {a['mean_mc_stderr_fp32']:.4f}); {a['speedup']:.2f}× faster"
        )
    print(
        "split bf16 on the decoder's last product: "
        + ", ".join(
            f"{name} {v['seconds'] * 1e3:.2f} ms (relative error {v['relative_error']:.1e})"
            for name, v in split.items()
        )
    )
    if args.json:
        payload = {
            "setup": origin,
            "num_data": n,
            "num_samples": k,
            "threads": torch.get_num_threads(),
            "device": str(device),
            "gemm_roof_gflops": roof,
            "gemm_roof_before": roof_before,
            "gemm_roof_after": roof_after,
            "decoder_products_gflops": products,
            "results": results,
            "bf16_vs_fp32": accuracy,
            "compile": args.compile,
            "split_bf16": split,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()

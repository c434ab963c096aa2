"""Speed and memory of ``pyro_vae.log_likelihood`` against two baselines.

The model is a Bernoulli VAE with 784-400-50 nets (one hidden layer of 400 units, tanh) in the
decoder and in the diagonal Gaussian encoder, with untrained weights (seed 0): the work an
importance-sampling estimate does does not depend on what the weights are. On N binarized MNIST
test images (random binary images when no data is found) and for each K it measures:

1. Throughput, in datapoint·samples per second (N·K / seconds), of
   ``pyro_vae.log_likelihood(model, guide, x, num_samples=K)`` and of the same
   estimator written by hand in vectorized PyTorch with the *same* ``nn.Module`` weights: encode
   once, sample z in chunks of the size pyro_vae uses by default (and, when K is larger than a
   chunk, also all K at once; the faster of the two is the reference), log p(x | z) + log p(z)
   − log q(z | x), and a float64 log-sum-exp. Both run under ``torch.no_grad``; each is warmed up
   once and timed as the median of ``--repeats`` runs, the estimators taking turns so that a
   slow spell on a shared machine hits them alike. The two estimates are checked to agree: the
   timed runs are independent draws of the same estimator, so their spread gives the standard
   error of the difference of their means (the delta-method standard error that
   ``log_likelihood`` reports is printed too, but it is unreliable when k̂ > 0.7, as it is for an
   untrained guide).
2. Throughput of ``pyro.infer.Importance(model, guide, num_samples=K).run(x)`` followed by
   ``get_log_normalizer()`` (median of at most 3 runs). It runs model and guide once per sample
   in Python and weights the batch jointly, so it estimates log p(x_1, …, x_N), not N
   per-datapoint values. When one run would take longer than ``--importance-seconds`` its time
   is extrapolated linearly (it is a Python loop over samples) from a run at K = 200, and the
   output says so.
3. Peak memory at the largest K, in a fresh subprocess per estimator: the resident set size
   after imports and model build, after a small warm-up call (which does the lazy imports, e.g.
   of arviz for k̂), and its high-water mark after one estimate (Linux's VmHWM, reset after the
   warm-up; ``getrusage`` elsewhere); the difference is what the estimate itself needs.

Run from the repository root (``PYRO_VAE_DATA`` names the data root holding
``binarized-mnist/``; without it random binary images are used)::

    PYRO_VAE_DATA=../shared/data python benchmarks/log_likelihood.py
    PYRO_VAE_DATA=../shared/data python benchmarks/log_likelihood.py --ks 1000 --json ll.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from pyro.infer import Importance

import pyro_vae as pv
from pyro_vae.data.registry import DATA_ROOT_ENV
from pyro_vae.errors import DataError
from pyro_vae.inference.log_likelihood import ROWS_PER_CHUNK, log_likelihood
from pyro_vae.model.families import MIN_SCALE

# The model and guide specs live beside this script (shared with svi_step.py).
SPECS = Path(__file__).resolve().parent / "specs"
MODEL_SPEC, GUIDE_SPEC = SPECS / "vae_400.toml", SPECS / "encoder_400.toml"

DATA_SHAPE = (784,)
IMPORTANCE_PILOT_K = 200  # long enough to time the per-sample cost, short enough to always run
MEMORY_WARMUP_K = 8  # ≥ 5, so that the warm-up also computes k̂ and imports arviz


def build_model(seed: int) -> pv.LatentModel:
    return pv.load(MODEL_SPEC, GUIDE_SPEC, data_shape=DATA_SHAPE, seed=seed)


def load_batch(num_data: int, seed: int) -> tuple[torch.Tensor, str]:
    """``num_data`` binarized MNIST test images (a seeded random subset), or random binary
    images."""
    if os.environ.get(DATA_ROOT_ENV):
        try:
            # download=False: a benchmark should not reach the network behind the user's back.
            data = pv.load_dataset("binarized-mnist", download=False)
        except DataError as error:
            reason = f"binarized-mnist could not be loaded ({error})"
        else:
            rows = data.test_indices(num_data, seed=seed)
            return data.test[rows].clone(), f"binarized-mnist, {len(rows)} random test images"
    else:
        reason = f"{DATA_ROOT_ENV} is not set"
    print(f"note: {reason}; using random binary images instead", flush=True)
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(num_data, *DATA_SHAPE, generator=generator)
    return torch.bernoulli(probs, generator=generator), "random binary images"


def default_chunk(num_data: int) -> int:
    """Samples per pass that pyro_vae's log_likelihood picks when chunk_size is None."""
    return max(1, ROWS_PER_CHUNK // max(num_data, 1))


class HandWritten:
    """The importance-sampling estimate written directly against the LatentModel's nets."""

    def __init__(self, vae: pv.LatentModel):
        self.encoder = vae.inference["z"].net  # x ↦ raw (…, 2L): loc and pre-softplus scale
        self.decoder = vae.likelihood.net  # z ↦ Bernoulli logits (…, 784)
        self.latent = vae.inference["z"].family.size

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, num_samples: int, chunk_size: int):
        """Per-datapoint log p̂(x) and its delta-method standard error, float64 (N,)."""
        raw = self.encoder([x])  # once: the encoder does not depend on the samples
        loc = raw[..., : self.latent]
        scale = F.softplus(raw[..., self.latent :]) + MIN_SCALE
        log_scale = scale.log().sum(-1)
        parts = []
        for start in range(0, num_samples, chunk_size):
            eps = torch.randn(min(chunk_size, num_samples - start), *loc.shape)
            z = torch.addcmul(loc, scale, eps)
            logits = self.decoder([z])
            # The fastest exact form we know (the one pyro_vae's bernoulli family uses too):
            # Σ_d x_d ℓ_d − softplus(ℓ_d), the pixel sum fused into one einsum.
            log_px_z = torch.einsum("...d,...d->...", logits, x) - F.softplus(logits).sum(-1)
            # log p(z) − log q(z | x) with z = loc + scale·eps; the Gaussian constants cancel.
            log_pz_qz = 0.5 * (eps.square() - z.square()).sum(-1) + log_scale
            parts.append((log_px_z + log_pz_qz).double())
        log_w = torch.cat(parts)  # (K, N): small, so one float64 log-sum-exp at the end
        log_px = torch.logsumexp(log_w, 0) - math.log(num_samples)
        w = torch.softmax(log_w, 0)
        k = num_samples
        stderr = ((k * w.square().sum(0) - 1).clamp(min=0) / max(k - 1, 1)).sqrt()
        return log_px, stderr


def run_pyro_vae(vae, x, num_samples):
    # k̂ is computed lazily, on access, outside the timed call (the reference has none).
    with torch.no_grad():
        result = log_likelihood(vae.model, vae.guide, x, num_samples=num_samples)
    return {"log_px": result.log_px.tolist(), "stderr": result.mean_stderr, "result": result}


def khat_median(result) -> float:
    finite = result.khat[torch.isfinite(result.khat)]
    return finite.median().item() if len(finite) else math.nan


def run_hand(hand, x, num_samples, chunk_size):
    log_px, stderr = hand.log_likelihood(x, num_samples, chunk_size)
    return {
        "log_px": log_px.tolist(),
        "stderr": (stderr.square().sum().sqrt() / len(stderr)).item(),
    }


def run_importance(vae, x, num_samples):
    with torch.no_grad():
        posterior = Importance(vae.model, vae.guide, num_samples=num_samples).run(x)
        return {"log_px_joint": posterior.get_log_normalizer().item()}


def timed(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """Median wall time of ``repeats`` calls of each function, after ``warmup`` untimed ones.

    The functions take turns, one call each per round, so that a slow spell on a shared machine
    hits all of them alike instead of whichever happened to be running.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    seconds = {name: [] for name in fns}
    results = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name].append(fn())
            seconds[name].append(time.perf_counter() - start)
    return {
        name: {
            "seconds": statistics.median(seconds[name]),
            "all_seconds": seconds[name],
            "runs": results[name],
        }
        for name in fns
    }


def summarize(timing: dict, num_data: int, num_samples: int) -> dict:
    runs = timing.pop("runs")
    per_datapoint = [r["log_px"] for r in runs]
    return {
        **timing,
        "throughput": num_data * num_samples / timing["seconds"],
        "log_px_runs": per_datapoint,  # one list of N per-datapoint estimates per run
        "log_px": statistics.fmean(e for run in per_datapoint for e in run),
        "delta_stderr": statistics.fmean(r["stderr"] for r in runs),
        **({"khat_median": khat_median(runs[0]["result"])} if "result" in runs[0] else {}),
    }


def agreement(ours: list[list[float]], theirs: list[list[float]], delta_stderr: float) -> dict:
    """Difference of the mean estimates, in standard errors estimated from the runs' spread.

    ``ours`` and ``theirs`` hold one list of per-datapoint estimates per run. Both are
    independent draws of the same estimator at the same K (with the same variance, if they
    agree), so each datapoint's variance is pooled over both sets of runs; datapoints are
    independent, so the N variances add up to a steady estimate even from a few runs.
    """
    a, b = torch.tensor(ours, dtype=torch.float64), torch.tensor(theirs, dtype=torch.float64)
    diff = (a.mean() - b.mean()).item()
    dof = len(a) + len(b) - 2
    if dof > 0:
        squares = (a - a.mean(0)).square().sum(0) + (b - b.mean(0)).square().sum(0)
        var_of_diff = (squares / dof).sum() * (1 / len(a) + 1 / len(b)) / a.shape[1] ** 2
        stderr = var_of_diff.sqrt().item()
    else:
        stderr = math.nan
    return {
        "difference": diff,
        "stderr": stderr,
        "z": diff / stderr if stderr > 0 else math.nan,
        "delta_method_stderr": delta_stderr,
        # NaN (one repeat each) compares False: "agree" then only means nothing contradicts it.
        "agree": not abs(diff) > 3 * stderr,
    }


def bench_importance(vae, x, ks, repeats, max_seconds) -> dict:
    run_importance(vae, x, 10)  # warm-up: first traces, lazy imports
    start = time.perf_counter()
    run_importance(vae, x, IMPORTANCE_PILOT_K)
    per_sample = (time.perf_counter() - start) / IMPORTANCE_PILOT_K
    out = {}
    for k in ks:
        predicted = per_sample * k
        if predicted > max_seconds:
            out[k] = {
                "seconds": predicted,
                "extrapolated_from_k": IMPORTANCE_PILOT_K,
                "repeats": 0,
                "log_px_joint": None,
            }
        else:
            # As many repeats as fit in the time cap (at least one); no warm-up needed beyond
            # the pilot, which already ran the same code path.
            n = max(1, min(repeats, int(max_seconds // max(predicted, 1e-9))))
            timing = timed({"importance": lambda k=k: run_importance(vae, x, k)}, n, warmup=0)
            timing = timing["importance"]
            out[k] = {
                "seconds": timing["seconds"],
                "all_seconds": timing["all_seconds"],
                "extrapolated_from_k": None,
                "repeats": n,
                "log_px_joint": timing["runs"][0]["log_px_joint"],
            }
        out[k]["throughput"] = len(x) * k / out[k]["seconds"]
    return out


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Current resident set size (Linux); elsewhere the high-water mark."""
    return _proc_status_mb("VmRSS") or peak_rss_mb()


def peak_rss_mb() -> float:
    """High-water mark of this process's resident set size.

    Linux's VmHWM rather than ``ru_maxrss``: the latter survives exec, so a child would report
    the benchmark parent's RSS at the moment it was forked.
    """
    return _proc_status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0), so the next peak is the estimate's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the "upper bound" flag below tells whether the peak is still meaningful


def memory_child(variant: str, num_data: int, num_samples: int, seed: int) -> None:
    """Run one estimate in this (fresh) process and print its RSS figures as one JSON line.

    The batch comes on stdin: loading the data set here would set a high-water mark (the whole
    of MNIST) that hides the estimate's own peak.
    """
    torch.manual_seed(seed)
    vae = build_model(seed)
    pixels = sys.stdin.buffer.read()
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).float().reshape(num_data, -1)
    hand = HandWritten(vae)
    chunk = num_samples if variant == "hand_one_pass" else default_chunk(num_data)

    def estimate(k):
        if variant == "pyro_vae":
            run_pyro_vae(vae, x, k)
        else:
            run_hand(hand, x, k, min(chunk, k))

    built = rss_mb()
    estimate(MEMORY_WARMUP_K)
    reset_peak_rss()
    warm, max_before = rss_mb(), peak_rss_mb()
    estimate(num_samples)
    peak = peak_rss_mb()
    figures = {"built_mb": built, "warm_mb": warm, "max_before_mb": max_before, "peak_mb": peak}
    print(json.dumps(figures))


def measure_memory(variant: str, x: torch.Tensor, num_samples: int, seed: int) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-child",
        variant,
        "--num-data",
        str(len(x)),
        "--ks",
        str(num_samples),
        "--seed",
        str(seed),
    ]
    pixels = x.to(torch.uint8).numpy().tobytes()  # binary images: exact as uint8
    done = subprocess.run(command, input=pixels, capture_output=True, check=True)
    figures = json.loads(done.stdout.decode().strip().splitlines()[-1])
    figures["increment_mb"] = figures["peak_mb"] - figures["warm_mb"]
    # If the estimate never rose above an earlier high-water mark, the increment is an upper
    # bound rather than a measurement.
    figures["upper_bound"] = figures["peak_mb"] <= figures["max_before_mb"]
    return figures


def json_safe(value):
    """NaN and infinities as null: JSON has no such numbers, and strict parsers reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def parse_ks(text: str) -> list[int]:
    ks = [int(k) for k in text.split(",") if k.strip()]
    if not ks or min(ks) < 2:
        raise argparse.ArgumentTypeError("--ks needs comma-separated integers ≥ 2")
    return ks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=16, help="datapoints N (default 16)")
    parser.add_argument("--ks", type=parse_ks, default=[1000, 5000], help="K values: 1000,5000")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per estimator and K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-importance", action="store_true", help="skip pyro's Importance")
    parser.add_argument(
        "--importance-seconds",
        type=float,
        default=60.0,
        help="longest Importance run to time; longer ones are extrapolated (default 60)",
    )
    parser.add_argument("--json", help="also write every number here")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # internal: one RSS probe
    args = parser.parse_args()

    if args.memory_child:
        memory_child(args.memory_child, args.num_data, args.ks[0], args.seed)
        return

    torch.manual_seed(args.seed)
    vae = build_model(args.seed)
    x, source = load_batch(args.num_data, args.seed)
    hand = HandWritten(vae)
    n, chunk = len(x), default_chunk(len(x))
    print(
        f"Bernoulli VAE 784-400-50 (tanh), untrained (seed {args.seed}); N = {n} ({source}); "
        f"torch {torch.__version__}, pyro {pyro.__version__}, {torch.get_num_threads()} threads; "
        f"pyro_vae chunk = {chunk} samples per pass\n",
        flush=True,
    )

    results: dict = {}
    for k in args.ks:
        print(f"K = {k}: timing ...", flush=True)
        # A chunk at least K is one pass; only when K spans several chunks is there a choice.
        variants = {"chunked": min(chunk, k)}
        if k > chunk:
            variants["one_pass"] = k
        fns = {"pyro_vae": lambda k=k: run_pyro_vae(vae, x, k)}
        for name, c in variants.items():
            fns[name] = lambda k=k, c=c: run_hand(hand, x, k, c)
        timings = timed(fns, args.repeats)
        ours = summarize(timings.pop("pyro_vae"), n, k)
        hand_runs = {
            name: summarize(timing, n, k) | {"chunk_size": variants[name]}
            for name, timing in timings.items()
        }
        best = min(hand_runs, key=lambda name: hand_runs[name]["seconds"])
        reference = hand_runs[best]
        pooled = [e for r in hand_runs.values() for e in r["log_px_runs"]]  # same estimator
        results[k] = {
            "pyro_vae": ours,
            "hand_written": hand_runs,
            "hand_written_reference": best,
            "ratio_vs_hand_written": ours["throughput"] / reference["throughput"],
            "agreement": agreement(
                ours["log_px_runs"],
                pooled,
                math.hypot(ours["delta_stderr"], reference["delta_stderr"]),
            ),
        }

    if not args.skip_importance:
        print("pyro.infer.Importance: timing ...", flush=True)
        imp = bench_importance(vae, x, args.ks, min(args.repeats, 3), args.importance_seconds)
        for k in args.ks:
            results[k]["importance"] = imp[k]
            results[k]["ratio_vs_importance"] = (
                results[k]["pyro_vae"]["throughput"] / imp[k]["throughput"]
            )

    k_mem = max(args.ks)
    print(f"peak memory at K = {k_mem}: one fresh process per estimator ...\n", flush=True)
    memory = {"num_samples": k_mem}
    for variant in ("pyro_vae", "hand_chunked", "hand_one_pass"):
        if variant == "hand_one_pass" and k_mem <= chunk:
            continue
        memory[variant] = measure_memory(variant, x, k_mem, args.seed)

    report(results, memory, n, chunk)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "memory_child")}
        with open(args.json, "w") as f:
            record = {
                "settings": settings | {"chunk_size": chunk, "data": source},
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "pyro": pyro.__version__,
                "results": results,
                "memory": memory,
            }
            json.dump(json_safe(record), f, indent=2)


def report(results: dict, memory: dict, n: int, chunk: int) -> None:
    header = f"{'K':>6}  {'estimator':<34} {'median s':>9} {'N·K per s':>11} {'log p̂(x)':>10}"
    print(header)
    print("-" * len(header))
    for k, r in results.items():
        rows = [("pyro_vae.log_likelihood", r["pyro_vae"])]
        for name, h in r["hand_written"].items():
            mark = " *" if name == r["hand_written_reference"] else ""
            rows.append((f"hand-written, {name} ({h['chunk_size']}){mark}", h))
        for label, row in rows:
            print(
                f"{k:>6}  {label:<34} {row['seconds']:>9.3f} {row['throughput']:>11,.0f} "
                f"{row['log_px']:>10.2f}"
            )
        if "importance" in r:
            imp = r["importance"]
            how = (
                f"extrapolated from K={imp['extrapolated_from_k']}"
                if imp["extrapolated_from_k"]
                else f"{imp['repeats']} run(s)"
            )
            print(
                f"{k:>6}  {'pyro.infer.Importance':<34} {imp['seconds']:>9.3f} "
                f"{imp['throughput']:>11,.0f} {'(joint)':>10}   {how}"
            )
    print("* the faster hand-written variant, used as the reference\n")

    for k, r in results.items():
        a, ours = r["agreement"], r["pyro_vae"]
        verdict = "agree" if a["agree"] else "DISAGREE"
        print(
            f"K = {k}: pyro_vae / hand-written throughput = {r['ratio_vs_hand_written']:.2f} "
            f"(target ≥ 0.9)"
            + (
                f"; pyro_vae / Importance = {r['ratio_vs_importance']:.1f}x"
                if "ratio_vs_importance" in r
                else ""
            )
        )
        print(
            f"  mean log p̂(x): pyro_vae − hand-written = {a['difference']:+.3f} nats, "
            f"stderr {a['stderr']:.3f} from the runs' spread (z = {a['z']:+.1f}: {verdict}); "
            f"delta-method stderr {a['delta_method_stderr']:.3f}, median k̂ "
            f"{ours['khat_median']:.2f}"
        )
        if "importance" in r and not r["importance"]["extrapolated_from_k"]:
            total = ours["log_px"] * n
            print(
                f"  Importance's joint log p̂(x_1..x_{n}) = {r['importance']['log_px_joint']:.1f} "
                f"vs pyro_vae's sum of per-datapoint estimates {total:.1f} (joint weights "
                f"degenerate, so it is far lower)"
            )

    print(f"\npeak memory at K = {memory['num_samples']} (MB; a fresh process per estimator)")
    print(f"  {'estimator':<30} {'RSS built':>10} {'RSS warm':>9} {'max RSS':>8} {'increment':>10}")
    labels = {
        "pyro_vae": "pyro_vae.log_likelihood",
        "hand_chunked": f"hand-written, chunked ({chunk})",
        "hand_one_pass": "hand-written, one pass",
    }
    for variant, label in labels.items():
        if variant in memory:
            m = memory[variant]
            bound = "≤" if m["upper_bound"] else " "
            print(
                f"  {label:<30} {m['built_mb']:>10.0f} {m['warm_mb']:>9.0f} {m['peak_mb']:>8.0f} "
                f"{bound}{m['increment_mb']:>9.0f}"
            )
    print(
        "  RSS built: after imports and model build; RSS warm: after a K = "
        f"{MEMORY_WARMUP_K} warm-up call;\n  max RSS: high-water mark after one estimate; "
        "increment = max RSS − RSS warm"
    )


if __name__ == "__main__":
    main()

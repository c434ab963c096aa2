"""ELBO surgery on a whole test set: the aggregate posterior's density from M random
components (O(N·M)) against the exact sum over every datapoint (O(N²)), on the same draws.

On a trained run (``--run``; else the bundled ``bernoulli_vae`` at its initial weights) and the
run's test set, for the first ``--subset`` seeded test images and then for all of them, it
times :func:`pyro_vae.elbo_surgery` exactly and with each ``--components`` M, and prints per M:

* the seconds, and their ratio to the exact sum's measured in the same run;
* the shortcut's error on the mutual information against the exact sum (the marginal KL
  carries the opposite), the standard error it reports and the error in those standard errors;
* the bias it removed (what the error would have been without the jackknife).

Before that, on ``--traced-data`` images, the exact sum through the float64 products against
the same sum through the guide's traced densities (what a guide other than one diagonal
Gaussian site goes through, and what every guide went through before): their ratio and their
difference. After, the time of :func:`pyro_vae.latent_usage` on all of them, the other half of
``evaluate --surgery``, and the peak resident memory of the process.

    PYRO_VAE_DATA=../shared/data python benchmarks/surgery_scale.py --run runs/vae \\
        --checkpoint best --json surgery.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import pyro
import torch

import pyro_vae as pv
from pyro_vae.inference import surgery
from pyro_vae.runs.config import prepare_data


def _model(args):
    """The pair and the test images it is evaluated on."""
    if args.run is None:
        vae = pv.load("bernoulli_vae", data_shape=(784,), seed=0)
        test = pv.load_dataset("binarized-mnist").test
        return vae, torch.as_tensor(test).float().reshape(len(test), -1), "bernoulli_vae (initial)"
    vae, config = pv.load_run(args.run, checkpoint=args.checkpoint)
    dataset = prepare_data(vae, config)
    return (
        vae,
        dataset.arrays("test", vae.marginal_data_names)[0],
        f"{args.run} ({args.checkpoint})",
    )


def _surgery(vae, x, components, num_samples) -> tuple[pv.ElboSurgery, float]:
    pyro.set_rng_seed(0)  # the same draws for every M: the results differ by the shortcut
    start = time.perf_counter()
    s = pv.elbo_surgery(vae.model, vae.guide, x, num_samples=num_samples, components=components)
    return s, time.perf_counter() - start


def measure(vae, x, components: list[int], num_samples: int) -> dict:
    """The exact sum and each shortcut on the images ``x``: times, errors, standard errors."""
    exact, exact_seconds = _surgery(vae, x, None, num_samples)
    rows = []
    for m in components:
        s, seconds = _surgery(vae, x, m, num_samples)
        error = s.mutual_information - exact.mutual_information
        rows.append(
            dict(
                components=m,
                seconds=seconds,
                time_ratio=seconds / exact_seconds,
                mutual_information=s.mutual_information,
                error=error,
                stderr=s.aggregate_stderr,
                error_in_stderrs=error / s.aggregate_stderr if s.aggregate_stderr else None,
                bias_removed=-s.aggregate_bias,
            )
        )
    return dict(
        num_data=len(x),
        num_samples=num_samples,
        exact=dict(
            seconds=exact_seconds,
            average_kl=exact.average_kl,
            mutual_information=exact.mutual_information,
            marginal_kl=exact.marginal_kl,
            monte_carlo_stderr=exact.mutual_information_stderr,
        ),
        shortcut=rows,
    )


def products_against_traces(vae, x, num_samples) -> dict:
    """The exact sum through the products and through the traced densities, on ``x``."""
    products, products_seconds = _surgery(vae, x, None, num_samples)
    found = surgery._gaussian_components
    surgery._gaussian_components = lambda *args: None  # the traced densities only
    try:
        traced, traced_seconds = _surgery(vae, x, None, num_samples)
    finally:
        surgery._gaussian_components = found
    return dict(
        num_data=len(x),
        products_seconds=products_seconds,
        traced_seconds=traced_seconds,
        speedup=traced_seconds / products_seconds,
        mutual_information_difference=products.mutual_information - traced.mutual_information,
    )


def _print(found: dict) -> None:
    e = found["exact"]
    print(
        f"\n{found['num_data']} images, {found['num_samples']} draws each: exact sum "
        f"{e['seconds']:.1f} s; average KL {e['average_kl']:.3f} = MI "
        f"{e['mutual_information']:.4f} (MC stderr {e['monte_carlo_stderr']:.4f}) + marginal "
        f"KL {e['marginal_kl']:.4f}"
    )
    print("   M   seconds  × exact    MI error  its stderr  error/stderr  bias removed")
    for r in found["shortcut"]:
        ratio = r["error_in_stderrs"] if r["error_in_stderrs"] is not None else float("nan")
        print(
            f"{r['components']:>5} {r['seconds']:>8.1f} {r['time_ratio']:>8.3f} "
            f"{r['error']:>+11.1e} {r['stderr']:>11.1e} {ratio:>+13.1f} {r['bias_removed']:>+13.1e}"
        )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a run directory (default: bernoulli_vae)")
    parser.add_argument("--checkpoint", default="last", choices=["last", "best"])
    parser.add_argument("--subset", type=int, default=2000, help="test images, first pass")
    parser.add_argument("--components", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--traced-data", type=int, default=500, help="0: skip the reference")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    vae, test, what = _model(args)
    vae.eval()
    print(f"ELBO surgery of {what}, {torch.get_num_threads()} threads")
    subset = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))]
    results = {"model": what, "threads": torch.get_num_threads(), "passes": []}
    if args.traced_data:
        r = products_against_traces(vae, subset[: args.traced_data], args.num_samples)
        results["products_against_traces"] = r
        print(
            f"\nexact sum on {r['num_data']} images: products {r['products_seconds']:.2f} s, "
            f"traced densities {r['traced_seconds']:.1f} s ({r['speedup']:.0f}×); MI differs "
            f"by {r['mutual_information_difference']:+.2e}"
        )
    for n in dict.fromkeys([min(args.subset, len(test)), len(test)]):
        found = measure(vae, subset[:n], args.components, args.num_samples)
        _print(found)
        results["passes"].append(found)
    start = time.perf_counter()
    pv.latent_usage(vae.model, vae.guide, test)
    results["latent_usage_seconds"] = time.perf_counter() - start
    print(f"\nlatent usage on all {len(test)}: {results['latent_usage_seconds']:.1f} s")
    results["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory of this process: {results['peak_rss_gb']:.2f} GB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()

"""Time per training step: pyro_vae's steps against a hand-written PyTorch VAE step.

Three pyro_vae steps are timed: the one training takes for these objectives, the fused step
(:mod:`pyro_vae.objectives.fused`: the same loss computed from the modules without poutine
traces); the fused step compiled by ``torch.compile`` (``train --compile``; its compile time,
paid once on the first step, is printed apart); and Pyro's own estimator,
``elbo.differentiable_loss(vae.model, vae.guide, x)``, which training falls back to. All use
the same nets (784-400-50, tanh; diagonal Gaussian encoder with softplus scales; Bernoulli
decoder), the same batch (128 binarized MNIST images, or random binary images when the data
set is not available), the same ``torch.optim.Adam``, and the same loss: the single-sample
ELBO with the analytic KL (the reference for ``trace_mean_field``) or with the sampled
log p(z) − log q(z|x) (the reference for ``trace``). The steps take turns, round by round, so
a slow spell on a shared machine hits all alike; printed for each pyro_vae step is the median
over rounds of its time over the hand-written step's time in the same round, with the
quartiles of that ratio in brackets.

    PYRO_VAE_DATA=../shared/data python benchmarks/svi_step.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F

import pyro_vae as pv
from pyro_vae.model.families import MIN_SCALE
from pyro_vae.objectives.registry import ObjectiveChoice

SPECS = Path(__file__).resolve().parent / "specs"  # shared with log_likelihood.py


def build(seed: int) -> pv.LatentModel:
    return pv.load(
        SPECS / "vae_400.toml",
        SPECS / "encoder_400.toml",
        data_shape=(784,),
        seed=seed,
    )


def batch_of_images(size: int) -> torch.Tensor:
    try:
        return pv.load_dataset("binarized-mnist", download=False).train[:size]
    except pv.PyroVaeError:
        print("(binarized-mnist not found: random binary images)")
        return torch.bernoulli(
            torch.full((size, 784), 0.2), generator=torch.Generator().manual_seed(0)
        )


def hand_written_step(vae: pv.LatentModel, optimizer, x: torch.Tensor, analytic_kl: bool):
    """The same model written directly in PyTorch, reusing the built modules' weights."""
    raw = vae.inference["z"].net([x])
    loc, scale = raw[:, :50], F.softplus(raw[:, 50:]) + MIN_SCALE
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    logits = vae.likelihood.net([z])
    log_px_z = (logits * x).sum(-1) - F.softplus(logits).sum(-1)
    if analytic_kl:
        kl = 0.5 * (loc**2 + scale**2 - 1).sum(-1) - scale.log().sum(-1)
    else:  # log q(z|x) − log p(z); the 2π constants cancel
        kl = (-0.5 * eps**2 - scale.log()).sum(-1) + 0.5 * (z**2).sum(-1)
    loss = -(log_px_z - kl).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def pyro_vae_step(vae, optimizer, elbo, x: torch.Tensor):
    """What pyro_vae.train does for one batch (training.py's inner loop, where Pyro's
    validation is off after one checked batch); ``elbo`` is a Pyro estimator or the fused one,
    which has the same ``differentiable_loss``."""
    with pyro.validation_enabled(False):
        loss = elbo.differentiable_loss(vae.model, vae.guide, x) / len(x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


STEPS = ("fused", "compiled", "pyro", "hand_written")


def measure(objective: str, x: torch.Tensor, steps: int, rounds: int) -> dict:
    vaes = {name: build(0) for name in STEPS}
    optimizers = {name: torch.optim.Adam(v.parameters(), lr=1e-3) for name, v in vaes.items()}
    elbos = {
        "fused": ObjectiveChoice(objective).fused_step(vaes["fused"]),
        "compiled": ObjectiveChoice(objective).fused_step(vaes["compiled"]),
        "pyro": ObjectiveChoice(objective).build(vaes["pyro"]),
    }
    elbos["compiled"].compile()
    began = time.perf_counter()  # the compilation, on the first step (forward and backward)
    pyro_vae_step(vaes["compiled"], optimizers["compiled"], elbos["compiled"], x)
    compile_seconds = time.perf_counter() - began
    analytic = objective == "trace_mean_field"
    runs = {name: [] for name in STEPS}
    for r in range(rounds + 1):  # round 0 warms up
        for name in STEPS:
            vae, optimizer = vaes[name], optimizers[name]
            start = time.perf_counter()
            for _ in range(steps):
                if name == "hand_written":
                    hand_written_step(vae, optimizer, x, analytic)
                else:
                    pyro_vae_step(vae, optimizer, elbos[name], x)
            if r:
                runs[name].append((time.perf_counter() - start) / steps)
    medians = {name: statistics.median(v) for name, v in runs.items()}
    # Each round times the three steps back to back, so a ratio within a round cancels the
    # machine's slow spells; the median over rounds is the reported ratio, the quartiles its
    # spread.
    ratios = {
        k: sorted(a / b for a, b in zip(runs[k], runs["hand_written"], strict=True))
        for k in ("fused", "compiled", "pyro")
    }
    return {
        "objective": objective,
        "ms_per_step": {k: 1000 * v for k, v in medians.items()},
        "ratio": {k: statistics.median(v) for k, v in ratios.items()},
        "ratio_quartiles": {k: statistics.quantiles(v, n=4)[::2] for k, v in ratios.items()},
        "compile_seconds": compile_seconds,
        "all": runs,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--json")
    args = parser.parse_args()
    x = batch_of_images(args.batch_size)
    print(
        f"784-400-50 VAE, batch {len(x)}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    results = []
    for objective in ("trace", "trace_mean_field"):
        r = measure(objective, x, args.steps, args.rounds)
        results.append(r)
        ms, ratio, q = r["ms_per_step"], r["ratio"], r["ratio_quartiles"]
        print(
            f"{objective:>17}: hand-written {ms['hand_written']:.2f} ms per step; "
            f"fused {ms['fused']:.2f} ms, ratio {ratio['fused']:.2f}x "
            f"[{q['fused'][0]:.2f}–{q['fused'][1]:.2f}]; compiled {ms['compiled']:.2f} ms, ratio "
            f"{ratio['compiled']:.2f}x [{q['compiled'][0]:.2f}–{q['compiled'][1]:.2f}] "
            f"(compiling {r['compile_seconds']:.0f} s once; target ≤ 1.05); "
            f"Pyro's estimator {ms['pyro']:.2f} ms, ratio {ratio['pyro']:.2f}x "
            f"[{q['pyro'][0]:.2f}–{q['pyro'][1]:.2f}]"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

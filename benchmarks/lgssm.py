"""The bundled ``lgssm`` pair trained on ``--data lgssm``, against the truth it was simulated from.

The data's log-likelihood is exact (the Kalman filter at the simulating parameters), so the
trained model's ELBO and log p̂ (importance sampling and AIS) are put beside that number, and
beside the exact log-likelihood of the trained model itself (the filter at its learned
parameters): the gap between the last two is what training left, the gap between it and the
estimates is what inference left.

A linear-Gaussian state-space model is identified only up to an invertible change of
coordinates of z that keeps the state noise diagonal (permutations and scalings of the
coordinates; with a free noise covariance, any invertible map), so parameters are compared
through what does not change: the eigenvalues of A, the observation noise r and offset d, and
the whole distribution of x_1:T (a Gaussian with known mean and covariance: their distance and
the KL between the true and the learned one, per sequence).

    python benchmarks/lgssm.py [--epochs 300] [--out benchmarks/results/lgssm.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro
import torch

import pyro_vae as pv
from pyro_vae.data.lgssm import PARAMETERS, kalman_log_likelihood


def learned_parameters(vae) -> dict[str, torch.Tensor]:
    """A, b, q, C, d, r of the bundled lgssm pair (linear nets, learned per-dim scales)."""
    chain, emission = vae.generative["z"], vae.generative["x"]
    transition, emitter = chain.net.layers[0], emission.net.layers[0]
    values = (transition.weight, transition.bias, chain.family.log_scale.exp(),
              emitter.weight, emitter.bias, emission.family.log_scale.exp())  # fmt: skip
    return {k: v.detach().double() for k, v in zip(PARAMETERS, values, strict=True)}


def joint_of_x(p: dict, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of x_1:T (flattened, T·D) under the parameters ``p``."""
    p = {k: v.double() for k, v in p.items()}
    latent = p["A"].shape[0]
    mean_z, means = torch.zeros(latent, dtype=torch.float64), []
    # z_t = Σ_s A^(t−s) (b + ε_s): the covariance of (z_1 … z_T) from the maps M_ts = A^(t−s).
    maps = torch.zeros(steps * latent, steps * latent, dtype=torch.float64)
    for t in range(steps):
        mean_z = p["A"] @ mean_z + p["b"]
        means.append(p["C"] @ mean_z + p["d"])
        power = torch.eye(latent, dtype=torch.float64)
        for s in range(t, -1, -1):
            maps[t * latent : (t + 1) * latent, s * latent : (s + 1) * latent] = power
            power = power @ p["A"]
    noise = torch.diag(p["q"].pow(2).repeat(steps))
    emit = torch.block_diag(*[p["C"]] * steps)
    cov_z = maps @ noise @ maps.T
    cov = emit @ cov_z @ emit.T + torch.diag(p["r"].pow(2).repeat(steps))
    return torch.cat(means), cov


def compare_parameters(truth: dict, learned: dict, steps: int) -> dict:
    eig = lambda a: sorted(torch.linalg.eigvals(a.double()).tolist(), key=lambda c: c.imag)  # noqa: E731
    mean_t, cov_t = joint_of_x(truth, steps)
    mean_l, cov_l = joint_of_x(learned, steps)
    true_x = torch.distributions.MultivariateNormal(mean_t, cov_t)
    learned_x = torch.distributions.MultivariateNormal(mean_l, cov_l)
    return {
        "eigenvalues_A": {
            "true": [str(complex(round(c.real, 3), round(c.imag, 3))) for c in eig(truth["A"])],
            "learned": [
                str(complex(round(c.real, 3), round(c.imag, 3))) for c in eig(learned["A"])
            ],
        },  # fmt: skip
        "r": {"true": truth["r"].tolist(), "learned": [round(v, 3) for v in learned["r"].tolist()]},
        "d": {"true": truth["d"].tolist(), "learned": [round(v, 3) for v in learned["d"].tolist()]},
        "x_mean_max_error": float((mean_t - mean_l).abs().max()),
        "x_cov_relative_error": float(torch.linalg.norm(cov_t - cov_l) / torch.linalg.norm(cov_t)),
        "kl_true_to_learned_per_sequence": float(
            torch.distributions.kl_divergence(true_x, learned_x)
        ),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--ais-steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/lgssm.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    vae = pv.load("lgssm", data_shape=(20, 4), seed=0)
    began = time.perf_counter()
    trained = pv.train(vae, "lgssm", epochs=args.epochs, batch_size=100, lr=3e-3, progress=True)
    seconds = time.perf_counter() - began
    data = trained.dataset
    x, lengths = data.array("x", "test"), data.array("lengths", "test")
    truth = {k: data.truth[k] for k in PARAMETERS}
    learned = learned_parameters(vae)
    exact = kalman_log_likelihood(x, lengths, *truth.values()).total.mean()
    exact_learned = kalman_log_likelihood(x, lengths, *learned.values()).total.mean()
    pyro.set_rng_seed(0)
    vae.eval()
    with pyro.validation_enabled(False):
        gap = pv.elbo_gap(vae.model, vae.guide, x, lengths, num_samples=args.num_samples)
        ais = pv.log_likelihood(
            *(vae.model, vae.guide, x[:100], lengths[:100]),
            *(),
            method="ais", num_samples=16, num_steps=args.ais_steps, progress=True,
        )  # fmt: skip
    exact_100 = kalman_log_likelihood(x[:100], lengths[:100], *learned.values()).total.mean()
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "epochs": args.epochs,
        "train_seconds": round(seconds, 1),
        "test_sequences": len(x),
        "exact_log_px_true_parameters": float(exact),
        "exact_log_px_learned_parameters": float(exact_learned),
        "is_log_px": gap.log_likelihood.mean,
        "is_stderr": gap.log_likelihood.mean_stderr,
        "elbo": gap.elbo.mean,
        "ais_log_px_first_100": ais.mean,
        "ais_stderr": ais.mean_stderr,
        "exact_log_px_learned_first_100": float(exact_100),
        "parameters": compare_parameters(truth, learned, x.shape[1]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

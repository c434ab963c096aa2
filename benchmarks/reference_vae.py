"""pyro_vae's SVI training against a hand-written PyTorch VAE with the same nets and settings.

Both train the Bernoulli VAE of the IWAE paper (784-200-200-50, tanh; diagonal Gaussian encoder
with softplus scales) on statically binarized MNIST with Adam, the analytic-KL ELBO, the same
batch size, learning rate, epochs and seed, and report the test ELBO per datapoint (one sample of
z per test image) and the wall time, side by side, measured in the same run.

    PYRO_VAE_DATA=../shared/data python benchmarks/reference_vae.py --epochs 10
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

import pyro_vae as pv
from pyro_vae.model.families import MIN_SCALE


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


class HandWrittenVAE(nn.Module):
    def __init__(self, data_dim=784, hidden=(200, 200), latent=50):
        super().__init__()
        self.latent = latent
        self.encoder = mlp([data_dim, *hidden, 2 * latent])
        self.decoder = mlp([latent, *hidden, data_dim])

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Per-datapoint ELBO with the analytic KL(q(z|x) ‖ N(0, I)) and one z sample."""
        h = self.encoder(x)
        loc, scale = h[:, : self.latent], F.softplus(h[:, self.latent :]) + MIN_SCALE
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z)
        log_px_z = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (loc**2 + scale**2 - 1).sum(-1) - scale.log().sum(-1)
        return log_px_z - kl


def train_reference(data, epochs, batch_size, lr, seed):
    torch.manual_seed(seed)
    vae = HandWrittenVAE(data.train.shape[1])
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    batches = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, epochs + 1):
        began = time.perf_counter()
        for batch in data.train_batches(batch_size, batches):
            loss = -vae.elbo(batch).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - began
        with torch.no_grad():
            test = torch.cat([vae.elbo(b) for b in data.test_batches(1000)]).mean().item()
        history.append({"epoch": epoch, "test_elbo": test, "seconds": seconds})
        print(f"  reference epoch {epoch}: test ELBO {test:.2f} ({seconds:.1f} s)", flush=True)
    return history


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="binarized-mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    data = pv.load_dataset(args.data, seed=args.seed)
    if not data.is_binary:
        data = pv.load_dataset(args.data, seed=args.seed, binarization="static")
    print(f"hand-written PyTorch VAE on {args.data}:", flush=True)
    reference = train_reference(data, args.epochs, args.batch_size, args.lr, args.seed)

    print("pyro_vae (bernoulli_vae + mean_field, trace_mean_field):", flush=True)
    vae = pv.load("bernoulli_vae", "mean_field", data_shape=tuple(data.event_shape), seed=args.seed)
    ours = pv.train(
        vae,
        args.data,
        objective="trace_mean_field",
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        binarization=data.binarization,
        progress=False,
    ).history
    for r in ours:
        print(
            f"  pyro_vae epoch {r['epoch']}: test ELBO {r['test_elbo']:.2f} ({r['seconds']:.1f} s)",
            flush=True,
        )

    ref_elbo, our_elbo = reference[-1]["test_elbo"], ours[-1]["test_elbo"]
    ref_time = sum(r["seconds"] for r in reference)
    our_time = sum(r["seconds"] for r in ours)
    result = {
        "data": args.data,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "reference_test_elbo": ref_elbo,
        "pyro_vae_test_elbo": our_elbo,
        "difference_nats": our_elbo - ref_elbo,
        "reference_seconds": ref_time,
        "pyro_vae_seconds": our_time,
        "time_ratio": our_time / ref_time,
    }
    print(
        f"\ntest ELBO after {args.epochs} epochs: reference {ref_elbo:.2f}, pyro_vae "
        f"{our_elbo:.2f}, difference {our_elbo - ref_elbo:+.2f} nats"
    )
    print(
        f"training time: reference {ref_time:.1f} s, pyro_vae {our_time:.1f} s, "
        f"ratio {our_time / ref_time:.2f}x"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

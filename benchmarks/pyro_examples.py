"""Pyro's own example pairs, as they ship, through every estimator of pyro_vae.

    python benchmarks/pyro_examples.py PYRO/examples [--out DIR] [--num-data N]

``PYRO/examples`` is the ``examples/`` folder of a Pyro source checkout
(github.com/pyro-ppl/pyro); nothing of it is copied here: the script imports its modules —
``vae/vae.py`` (the VAE), ``vae/ss_vae_M2.py`` (the semi-supervised M2, its guide enumerated
in parallel as the example trains it), ``cvae/cvae.py`` with ``cvae/baseline.py`` (the
conditional VAE) and ``dmm.py`` (the deep Markov model) — builds each pair with the example's
own defaults, and writes only the data loading around them: MNIST test images (grey levels in
[0, 1], as the examples load them), their labels one-hot, the quadrant task of the CVAE
tutorial (one quadrant given, -1 elsewhere), and binarized MNIST rows as sequences of 28 steps
for the DMM (``input_dim=28``). Modules those files import for plots and downloads only
(visdom, torchvision) are stubbed.

Each cell is what the call returns: a number, or the first line of the error. Needs the MNIST
files (``PYRO_VAE_DATA``, or the loader's download). Writes ``pyro_examples.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.infer import config_enumerate
from torch.nn.utils.rnn import pack_padded_sequence

import pyro_vae as pv
from pyro_vae.data import Dataset

CALLS = (
    "log_likelihood",
    "log_likelihood(seed)",
    "elbo_gap",
    "gap_decomposition",
    "elbo_surgery",
    "latent_usage",
    "AIS",
    "compare_estimators",
    "pv.train",
)


class _Stub(types.ModuleType):
    """A module the example files import for plots and downloads only: any name is a class."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


def _stub_missing_modules() -> None:
    """Plot and download helpers the example files import but the pairs never use."""
    for root in ("visdom", "torchvision"):
        if importlib.util.find_spec(root) is not None:
            continue
        sys.modules[root] = parent = _Stub(root)
        for child in ("datasets", "transforms", "utils"):
            sys.modules[f"{root}.{child}"] = _Stub(f"{root}.{child}")
            setattr(parent, child, sys.modules[f"{root}.{child}"])


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_examples(examples: Path) -> dict:
    _stub_missing_modules()
    sys.path[:0] = [str(examples / "vae"), str(examples / "cvae")]
    return {
        "vae": _module(examples / "vae" / "vae.py", "pyro_example_vae"),
        "m2": _module(examples / "vae" / "ss_vae_M2.py", "pyro_example_ss_vae_m2"),
        "baseline": _module(examples / "cvae" / "baseline.py", "baseline"),
        "cvae": _module(examples / "cvae" / "cvae.py", "pyro_example_cvae"),
        "dmm": _module(examples / "dmm.py", "pyro_example_dmm"),
    }


def quadrants(images: torch.Tensor, given: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The CVAE tutorial's task: ``given`` quadrants as the input, the rest as the output, -1
    where each has no pixels (written from the tutorial's description)."""
    images = images.reshape(-1, 28, 28)
    output = images.clone()
    output[:, 14:, :14] = -1  # the bottom-left quadrant is always given
    if given >= 2:
        output[:, :, :14] = -1
    if given == 3:
        output[:, :14, :] = -1
    inputs = images.clone()
    inputs[output != -1] = -1
    return inputs, output


def binarized(images: torch.Tensor) -> torch.Tensor:
    """MNIST images as the DMM's binary sequences of 28 rows: one Bernoulli draw, seeded."""
    return torch.bernoulli(images.reshape(-1, 28, 28), generator=torch.Generator().manual_seed(0))


def sequences(poly, rows: torch.Tensor):
    """MNIST rows as sequences for the DMM: (batch, reversed and packed, mask, lengths)."""
    lengths = torch.full((len(rows),), rows.shape[1], dtype=torch.long)
    reversed_rows = poly.reverse_sequences(rows, lengths)
    packed = pack_padded_sequence(reversed_rows, lengths, batch_first=True)
    return rows, packed, poly.get_mini_batch_mask(rows, lengths), lengths


def pairs(modules: dict, mnist: Dataset, n: int) -> dict:
    """Each example's pair, the arguments of ``n`` test images, and how pv.train is given data."""
    x, labels = mnist.test[:n], mnist.test_labels[:n]
    onehot = torch.nn.functional.one_hot(labels, 10).float()
    # As its main() builds it from its command-line defaults.
    m2 = modules["m2"].SSVAE(z_dim=50, hidden_layers=[500], config_enum="parallel")
    cvae = modules["cvae"].CVAE(200, 500, 500, modules["baseline"].BaselineNet(500, 500))
    dmm = modules["dmm"].DMM(input_dim=28)
    rows = binarized(x)
    poly = modules["dmm"].poly
    return {
        "VAE (vae.py)": (modules["vae"].VAE(), None, (x,), {"args": ("x",)}),
        "M2, y unobserved (ss_vae_M2.py)": (
            m2,
            config_enumerate(m2.guide, "parallel", expand=True),
            (x,),
            {"args": ("x",)},
        ),
        "M2, y observed": (m2, None, (x, onehot), {"args": ("x", "labels_onehot")}),
        "CVAE (cvae/)": (cvae, None, quadrants(x), {"args": ("input", "output")}),
        "DMM (dmm.py)": (
            dmm,
            None,
            sequences(poly, rows),
            {"args": ("rows",), "collate": lambda r: sequences(poly, r)},
        ),
    }


def training_file(folder: Path, mnist: Dataset, n: int) -> Path:
    """An .npz of MNIST's first ``n`` train and test images with the arrays the pairs take."""
    arrays = {}
    for split, images, labels in (
        ("train", mnist.train[:n], mnist.train_labels[:n]),
        ("test", mnist.test[:n], mnist.test_labels[:n]),
    ):
        inputs, outputs = quadrants(images)
        arrays[split] = images.numpy()
        arrays[f"{split}_labels"] = labels.numpy()
        arrays[f"{split}_input"], arrays[f"{split}_output"] = inputs.numpy(), outputs.numpy()
        arrays[f"{split}_rows"] = binarized(images).numpy()
    path = folder / "examples_mnist.npz"
    np.savez(path, **arrays)
    return path


def run_calls(pair, guide, args, training: dict, data_file: Path) -> dict:
    model, guide = pair.model, guide or pair.guide
    small = {"num_samples": 100}
    calls = {
        "log_likelihood": lambda: pv.log_likelihood(model, guide, *args, **small).mean,
        "log_likelihood(seed)": lambda: (
            pv.log_likelihood(model, guide, *args, seed=0, **small).mean
        ),
        "elbo_gap": lambda: pv.elbo_gap(model, guide, *args, **small).mean,
        "gap_decomposition": lambda: (
            pv.gap_decomposition(
                model, guide, *args, num_samples=50, chains=4, num_steps=20, max_steps=100
            )
            .stats()["gap"]
            .mean
        ),
        "elbo_surgery": lambda: pv.elbo_surgery(model, guide, *args, num_samples=8).average_kl,
        "latent_usage": lambda: sum(
            pv.latent_usage(model, guide, *args, num_samples=8).active_units.values()
        ),
        "AIS": lambda: (
            pv.log_likelihood(model, guide, *args, num_samples=4, method="ais", num_steps=20).mean
        ),
        "compare_estimators": lambda: (
            pv.compare_estimators(
                model,
                guide,
                *args,
                estimators=["trace", "iwae:k=5"],
                repeats=3,
                reference_samples=50,
            )["iwae(K=5)"].value
        ),
        "pv.train": lambda: pv.train(
            (model, guide), str(data_file), epochs=1, batch_size=50, **training
        ).final["test_elbo"],
    }
    cells = {}
    for name, call in calls.items():
        pyro.clear_param_store()
        began = time.perf_counter()
        try:
            value = call()
            cells[name] = {"value": float(value), "seconds": time.perf_counter() - began}
        except Exception as e:  # the table reports what each call does, failures included
            first = (str(e).strip().splitlines() or [""])[0][:160]
            cells[name] = {"error": f"{type(e).__name__}: {first}"}
    return cells


def markdown(table: dict) -> str:
    header = ["pair", *CALLS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pair, cells in table.items():
        shown = [
            f"{c['value']:.2f}" if "value" in c else f"✗ {c['error']}".replace("|", "\\|")
            for c in (cells[name] for name in CALLS)
        ]
        lines.append("| " + " | ".join([pair, *shown]) + " |")
    working = sum("value" in c for cells in table.values() for c in cells.values())
    total = sum(len(cells) for cells in table.values())
    return "\n".join([*lines, "", f"{working} of {total} calls return a number."]) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("examples", type=Path, help="the examples/ folder of a Pyro checkout")
    parser.add_argument("--out", type=Path, default=Path("."), help="where to write (here)")
    parser.add_argument("--num-data", type=int, default=16, help="test images per call (16)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    modules = load_examples(args.examples)
    mnist = pv.load_dataset("mnist")
    with tempfile.TemporaryDirectory() as folder:
        data_file = training_file(Path(folder), mnist, 500)
        examples = pairs(modules, mnist, args.num_data)
        table = {
            name: run_calls(pair, guide, call_args, training, data_file)
            for name, (pair, guide, call_args, training) in examples.items()
        }
    text = markdown(table)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pyro_examples.md").write_text(text)
    (args.out / "pyro_examples.json").write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()

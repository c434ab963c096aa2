"""Training speed of the bundled ``ss_vae`` per epoch against Pyro's ``ss_vae_M2`` example with
the same nets (z 50, one hidden layer of 500 softplus units, α = 46) on the same rows: MNIST,
one fixed binarization, 3000 class-balanced labels, batch 200. Pyro's ``SSVAE``, its two losses
(TraceEnum_ELBO on the guide enumerated in parallel, Trace_ELBO on the classifier) and its
``run_inference_for_epoch`` are imported from a Pyro checkout's ``examples/``; only the batches
(lists of (images, one-hot labels)) are made here. Used by ``conditional.py --pyro-examples``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.optim import Adam

import pyro_vae as pv

LABELLED, BATCH = 3000, 200


def _batches(x, labels, rows):
    return [(x[r], F.one_hot(labels[r], 10).float()) for r in rows.split(BATCH)]


def pyro_epoch_seconds(examples: Path, data) -> float:
    sys.path.insert(0, str(Path(__file__).parent))
    from pyro_examples import load_examples  # beside this script

    m2 = load_examples(examples)["m2"]
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = m2.SSVAE(z_dim=50, hidden_layers=[500], config_enum="parallel",
                     aux_loss_multiplier=46)  # fmt: skip
    optimizer = Adam({"lr": 1e-3})
    guide = config_enumerate(model.guide, "parallel", expand=True)
    elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)
    classify = SVI(model.model_classify, model.guide_classify, optimizer, loss=Trace_ELBO())
    losses = [SVI(model.model, guide, optimizer, loss=elbo), classify]
    labelled = data.train_labels >= 0
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    loaders = {
        "sup": _batches(data.train, data.train_labels, order[labelled[order]]),
        "unsup": _batches(data.train, data.train_labels.clamp(min=0), order[~labelled[order]]),
    }
    interval = (len(loaders["sup"]) + len(loaders["unsup"])) // len(loaders["sup"])
    began = time.perf_counter()
    m2.run_inference_for_epoch(loaders, losses, interval)
    return time.perf_counter() - began


def ours_epoch_seconds():
    options = {"labelled": LABELLED}
    natural = pv.load_dataset("mnist", binarization="static", **options)
    vae = pv.load("ss_vae", data_shape=natural.image_shape, seed=0)
    trained = pv.train(vae, "mnist", binarization="static", data_options=options, epochs=1,
                       batch_size=BATCH)  # fmt: skip
    return trained.history[-1]["seconds"], trained.dataset


def m2_speed(examples: Path, rows: int | None = None) -> dict:
    ours, data = ours_epoch_seconds()
    theirs = pyro_epoch_seconds(examples, data)
    return {
        "rows": len(data.train),
        "labelled": LABELLED,
        "ours_seconds": ours,
        "pyro_seconds": theirs,
        "ratio": ours / theirs,
        "threads": torch.get_num_threads(),
    }

"""Each epoch's metrics to TensorBoard, as well as to ``metrics.jsonl`` (off by default).

With ``tensorboard = true`` (``--tensorboard``) a run writes its per-epoch metrics (train,
test and validation ELBO, learning rate, KL weight, seconds) as scalars under
``<run>/tensorboard/``, at the epoch as the step; ``tensorboard --logdir <run>`` shows them,
and several runs side by side with ``--logdir`` their parent. A resumed run appends to the same
folder. It needs the optional ``tensorboard`` package (``pip install pyro_vae[tracking]``);
``metrics.jsonl`` stays the record the run resumes from.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import PyroVaeError

FOLDER = "tensorboard"


def check_tensorboard() -> None:
    """Refuse ``--tensorboard`` where the package is missing, before any work."""
    if importlib.util.find_spec("tensorboard") is None:
        raise PyroVaeError(
            "--tensorboard: the tensorboard package is not installed; install it with "
            "pip install 'pyro_vae[tracking]' (or pip install tensorboard)"
        )


class Tracker:
    """Writes each epoch's record of numbers to TensorBoard (``record["epoch"]`` the step)."""

    def __init__(self, run_dir: Path):
        check_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / FOLDER))

    def log(self, record: dict) -> None:
        for key, value in record.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and key != "epoch":
                self.writer.add_scalar(key, value, global_step=record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

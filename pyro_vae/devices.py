"""Which device a command computes on: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

Data sets, checkpoints and results live on the CPU; a model is moved to its device once, and
batches as they are used. Checkpoints are saved device-free (every tensor on the CPU) and load
onto any device, so a run trained on a GPU resumes or evaluates on a laptop and back.
"""

from __future__ import annotations

import torch

from .errors import PyroVaeError

DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


def resolve_device(text: str | torch.device | None = "auto") -> torch.device:
    """The device ``text`` names, checked to exist here; ``auto`` (or None) takes the first of
    CUDA, MPS and the CPU that this machine has."""
    if isinstance(text, torch.device):
        text = str(text)
    text = "auto" if text is None else str(text).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = text.partition(":")
    if (
        kind not in DEVICE_KINDS[1:]
        or (index and not index.isdigit())
        or (index and kind != "cuda")
    ):
        raise PyroVaeError(f"--device {text!r}: expected one of auto, cpu, cuda, cuda:N, mps")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise PyroVaeError(f"--device {text!r}: this machine has no CUDA device")
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise PyroVaeError(
                f"--device {text!r}: this machine has {count} CUDA device(s), cuda:0 to "
                f"cuda:{count - 1}"
            )
    if kind == "mps" and not _mps_available():
        raise PyroVaeError(f"--device {text!r}: this machine has no MPS device")
    if kind == "cuda" and not index:  # the current device (under torchrun, the local rank's)
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(text)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for an empty one)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def rng_state(device: torch.device) -> torch.Tensor:
    """The state of the generator that sampling on ``device`` draws from."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return torch.get_rng_state()


def set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state)
    else:
        torch.set_rng_state(state)


def fork_rng(device: torch.device):
    """``torch.random.fork_rng`` covering the generator of ``device`` as well as the CPU's."""
    if device.type in ("cuda", "mps"):
        return torch.random.fork_rng(devices=[device], device_type=device.type)
    return torch.random.fork_rng(devices=[])

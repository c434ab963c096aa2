"""The bundled specs: ``models/`` and ``guides/`` at the top of the repository.

setup.cfg maps those folders to ``pyro_vae.bundled.models`` / ``.guides`` in an installed package;
in a source checkout they are found beside the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

KINDS = ("models", "guides")


def bundled_dir(kind: str) -> Path:
    """Folder of bundled ``kind`` ("models" or "guides") specs."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    # The folders hold no __init__.py, so look them up as resources of this (regular) package.
    installed = Path(str(resources.files(__name__).joinpath(kind)))
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / kind


def bundled_names(kind: str) -> list[str]:
    folder = bundled_dir(kind)
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []

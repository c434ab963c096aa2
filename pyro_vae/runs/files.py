"""Writing run files so that a crash never leaves a half-written one in place."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block ends.

    If the block raises, the temporary file is removed and ``path`` is left as it was. The
    temporary name carries the process id, so two writers never share one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        durable(tmp)
        os.replace(tmp, path)
        durable(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def durable(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk: a rename after it cannot
    outlive a crash that loses the data it points at."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a folder cannot be opened on some systems; the rename is atomic anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace the file at ``path`` by ``text`` (UTF-8) in one rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")

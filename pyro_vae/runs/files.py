"""Reading and writing run files so that a crash never leaves a half-written one in place, and
so that a file that cannot be read or written is one line naming it
(:class:`~pyro_vae.errors.PyroVaeError`), never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError, PyroVaeError

try:
    from safetensors import SafetensorError
except ImportError:  # an older safetensors: its errors are not told apart
    SafetensorError = ()


def failure_reason(error: BaseException) -> str:
    """What went wrong, in the system's words: ``No space left on device``,
    ``Permission denied``; safetensors wraps the system's message in its own."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    wrapped = re.search(r'message: "([^"]*)"', text)  # safetensors: IoError(Os { message: "…" })
    return wrapped.group(1) if wrapped else text


def refuse_under_file(path: str | Path) -> None:
    """Refuse a path that cannot exist because a file stands where one of its folders would."""
    path = Path(path)
    above = next((p for p in path.absolute().parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise PyroVaeError(f"{path}: lies under {above}, which is a file")


def ensure_dir(path: str | Path) -> Path:
    """The folder ``path``, made (with its parents) if missing.

    :raises PyroVaeError: naming ``path`` when it is a file, lies under a file, or cannot be
        made (no permission, no space).
    """
    path = Path(path)
    try:
        if path.is_dir():
            return path
        if path.exists():
            raise PyroVaeError(f"{path}: exists and is not a directory")
        refuse_under_file(path)
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PyroVaeError(f"{path}: cannot be created ({failure_reason(e)})") from None
    return path


def check_writable(folder: str | Path) -> Path:
    """``folder``, after making and removing an empty file in it: a long computation whose
    results cannot be saved is refused before it starts.

    :raises PyroVaeError: naming ``folder`` when nothing can be written into it.
    """
    folder = ensure_dir(folder)
    probe = folder / f".write-check.{os.getpid()}.tmp"
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise PyroVaeError(f"{folder}: cannot be written to ({failure_reason(e)})") from None
    return folder


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block ends.

    If the block raises, the temporary file is removed and ``path`` is left as it was. The
    temporary name carries the process id, so two writers never share one.

    :raises PyroVaeError: naming ``path`` when its folder cannot be made (:func:`ensure_dir`)
        or writing fails (no space, no permission); ``path`` is then left as it was.
    """
    path = Path(path)
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            yield tmp
            durable(tmp)
            os.replace(tmp, path)
            durable(path.parent)
        except (OSError, SafetensorError) as e:
            raise PyroVaeError(
                f"{path}: cannot be written ({failure_reason(e)}); it is left as it was"
            ) from None
    finally:
        # A folder that became unwritable keeps the temporary file: nothing more can be done.
        with contextlib.suppress(OSError):
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


def read_json(path: str | Path):
    """The JSON value stored in ``path``.

    :raises CheckpointError: naming ``path`` when it is missing, unreadable, not UTF-8 or not
        JSON.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: damaged: not a UTF-8 text file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({failure_reason(e)})") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"{path}: damaged: not valid JSON ({e})") from None


def exists(path: str | Path) -> bool:
    """Whether anything is at ``path``; a folder above it that cannot be searched is an error
    naming ``path``, not a traceback."""
    try:
        return Path(path).exists()
    except OSError as e:
        raise PyroVaeError(f"{path}: cannot be looked at ({failure_reason(e)})") from None

"""Turn a spec argument (a path, or the name of a bundled spec) into a parsed spec."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from ..bundled import bundled_dir, bundled_names
from ..errors import SpecError, did_you_mean, shown
from .parse import MAX_SPEC_CHARS, GuideSpec, ModelSpec, parse_guide, parse_model


def spec_path(spec: str | Path, kind: str) -> Path:
    """A path as given if it exists; a bare name (no ``/``, no ``.toml``) names a bundled spec."""
    if not isinstance(spec, str | PathLike):
        raise SpecError(shown(spec), "", f"expected the path or name of a {kind[:-1]} spec")
    if not str(spec).isprintable():  # a newline in it would split the one-line message
        raise SpecError(shown(str(spec)), "", "a spec's path or name must be printable text")
    path = Path(spec)
    if _is_file(path):
        return path
    is_name = isinstance(spec, str) and "/" not in spec and not spec.endswith(".toml")
    if is_name:
        bundled = bundled_dir(kind) / f"{spec}.toml"
        if _is_file(bundled):
            return bundled
        raise SpecError(
            spec,
            "",
            f"no such file, and no bundled {kind[:-1]} of that name"
            + did_you_mean(spec, bundled_names(kind)),
        )
    raise SpecError(path, "", "no such file")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name the system refuses (too long, a NUL byte)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def read_text(path: Path) -> str:
    """The text of a spec file, refused before reading when it is far too large to be one."""
    try:
        # UTF-8 takes at most 4 bytes a character: a larger file has too many characters.
        if path.stat().st_size > 4 * MAX_SPEC_CHARS:
            raise SpecError(
                path,
                "",
                f"is {path.stat().st_size:,} bytes; a spec may have at most "
                f"{MAX_SPEC_CHARS:,} characters",
            )
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(path, "", f"is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise SpecError(path, "", f"cannot be read: {e.strerror or e}") from None


def read_model(spec: str | Path | ModelSpec) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return spec
    path = spec_path(spec, "models")
    return parse_model(read_text(path), path)


def read_guide(spec: str | Path | GuideSpec) -> GuideSpec:
    if isinstance(spec, GuideSpec):
        return spec
    path = spec_path(spec, "guides")
    return parse_guide(read_text(path), path)


def default_guide(model: ModelSpec) -> str | Path | None:
    """The model's ``default_guide``: a bundled name, or a path relative to the model file."""
    name = model.default_guide
    if name is None or ("/" not in name and not name.endswith(".toml")):
        return name
    path = Path(name)
    return path if path.is_absolute() else Path(model.path).parent / path

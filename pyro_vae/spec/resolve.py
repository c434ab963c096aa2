"""Turn a spec argument (a path, or the name of a bundled spec) into a parsed spec."""

from __future__ import annotations

from pathlib import Path

from ..bundled import bundled_dir, bundled_names
from ..errors import SpecError, did_you_mean
from .parse import GuideSpec, ModelSpec, parse_guide, parse_model


def spec_path(spec: str | Path, kind: str) -> Path:
    """A path as given if it exists; a bare name (no ``/``, no ``.toml``) names a bundled spec."""
    path = Path(spec)
    if path.is_file():
        return path
    is_name = isinstance(spec, str) and "/" not in spec and not spec.endswith(".toml")
    if is_name:
        bundled = bundled_dir(kind) / f"{spec}.toml"
        if bundled.is_file():
            return bundled
        raise SpecError(
            spec,
            "",
            f"no such file, and no bundled {kind[:-1]} of that name"
            + did_you_mean(spec, bundled_names(kind)),
        )
    raise SpecError(path, "", "no such file")


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(path, "", f"cannot be read: {e}") from None


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

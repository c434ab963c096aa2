"""The layers of docs/architecture.md, checked on the imports of every module.

Bottom to top: the base (errors, registry, tables, bundled) and data; the spec language and the
model builder; inference (any Pyro pair); objectives; runs; the CLI. A module imports only from
its own layer or below, and the inference layer from nothing of ours but the base, which is what
keeps it usable on any model/guide pair.
"""

import ast
import graphlib
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "pyro_vae"
BASE = {"errors", "registry", "results", "bundled", "devices"}
#: What each part of the package may import from (besides itself and the base).
ALLOWED = {
    "data": set(),
    "spec": {"model"},  # the spec language validates against the model's registries
    "model": {"spec"},
    "inference": set(),
    "objectives": {"spec", "model", "inference"},
    "runs": {"data", "spec", "model", "inference", "objectives"},
    "cli": {"data", "spec", "model", "inference", "objectives", "runs"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The pyro_vae modules ``path`` imports, anywhere in the file (lazy imports too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pyro_vae")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("pyro_vae"):
                continue
            # "from . import plots" names a module; "from .x import y" names module x.
            modules = {f"{target}.{a.name}" for a in node.names}
            found |= {
                m for m in modules if (PACKAGE.parent / (m.replace(".", "/") + ".py")).exists()
            }
            found.add(target)
    return found - {name}


MODULES = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "top"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part(m) in ALLOWED))
def test_a_module_imports_only_from_its_layer_or_below(module):
    mine = part(module)
    allowed = {mine, *BASE, *ALLOWED[mine]}
    wrong = sorted(m for m in MODULES[module] if m != "pyro_vae" and part(m) not in allowed)
    assert not wrong, f"{module} imports {wrong}"


def test_nothing_imports_the_command_line_and_the_imports_have_no_cycle():
    for module, targets in MODULES.items():
        if module not in ("pyro_vae.__main__",):
            assert "pyro_vae.cli" not in targets, module
    graph = {m: {t for t in targets if t in MODULES} for m, targets in MODULES.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a cycle


def test_the_base_imports_nothing_above_it():
    for module, targets in MODULES.items():
        if part(module) in BASE:
            assert all(part(t) in BASE for t in targets if t != "pyro_vae"), module

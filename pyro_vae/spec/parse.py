"""Parse and validate model and guide specs.

A model spec is a DAG of ``[latent.NAME]`` nodes and one ``[observed.x]`` node; a guide spec has
one ``[latent.NAME]`` entry per model latent. Every rule violation raises
:class:`~pyro_vae.errors.SpecError` naming the file and the dotted key.
"""

from __future__ import annotations

import graphlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpecError, did_you_mean
from ..model import conv, priors  # noqa: F401  (they register the conv net and learned priors)
from ..model.families import FAMILIES, OptionError
from ..model.guide_families import GUIDE_FAMILIES
from ..model.nets import NETS
from .options import list_of, string, validate_options

DATA = "x"  # the observed site; guides may condition on it


@dataclass(frozen=True)
class NetSpec:
    kind: str
    options: dict = field(default_factory=dict)

    def describe(self) -> str:
        """``mlp[200, 200] tanh``: the kind, its layer sizes, then its other options."""
        sizes = self.options.get("hidden", self.options.get("channels"))
        rest = [
            f"{k}={v}" if k != "activation" else str(v)
            for k, v in self.options.items()
            if k not in ("hidden", "channels")
        ]
        return " ".join([self.kind + (f"{sizes}" if sizes is not None else ""), *rest])


@dataclass(frozen=True)
class NodeSpec:
    """One node: ``key`` is its table in the file (``latent.z``), used in error messages."""

    name: str
    key: str
    family: str
    given: tuple[str, ...] = ()
    net: NetSpec | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    path: str
    text: str
    description: str
    latents: dict[str, NodeSpec]  # in topological (sampling) order
    observed: NodeSpec
    default_guide: str | None = None


@dataclass(frozen=True)
class GuideSpec:
    path: str
    text: str
    description: str
    latents: dict[str, NodeSpec]  # in topological (sampling) order of the guide


_COMMON_KEYS = ("family", "given", "net")


class _Reader:
    """Carries the file path so every check can name it."""

    def __init__(self, path):
        self.path = str(path)

    def error(self, key: str, message: str) -> SpecError:
        return SpecError(self.path, key, message)

    def load(self, text: str) -> dict:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise self.error("", f"not valid TOML: {e}") from None

    def table(self, doc: dict, key: str, allowed: tuple[str, ...]) -> None:
        for k in doc:
            if k not in allowed:
                raise self.error(
                    f"{key}.{k}" if key else k, "unknown key" + did_you_mean(k, allowed)
                )

    def sections(self, doc: dict, name: str) -> dict[str, dict]:
        sec = doc.get(name, {})
        if not isinstance(sec, dict):
            raise self.error(name, f"expected a table of nodes ([{name}.NAME]), got {sec!r}")
        for node, body in sec.items():
            if not isinstance(body, dict):
                raise self.error(f"{name}.{node}", "expected a table of keys")
        return sec

    def given(self, body: dict, key: str) -> tuple[str, ...]:
        try:
            given = list_of(string)(body.get("given", []))
        except ValueError as e:
            raise self.error(f"{key}.given", str(e)) from None
        if len(set(given)) != len(given):
            raise self.error(f"{key}.given", f"names a parent twice: {given}")
        return tuple(given)

    def net(self, body: dict, key: str, given: tuple[str, ...]) -> NetSpec | None:
        raw = body.get("net")
        if raw is None:
            if given:
                raise self.error(
                    f"{key}.net",
                    "required when 'given' is set, e.g. net = { kind = \"mlp\", hidden = [128] }",
                )
            return None
        if not given:
            raise self.error(f"{key}.net", "a net needs inputs: set 'given'")
        if not isinstance(raw, dict):
            raise self.error(f"{key}.net", f'expected a table like {{ kind = "mlp" }}, got {raw!r}')
        kind = raw.get("kind")
        if kind is None:
            raise self.error(f"{key}.net.kind", "required; one of " + ", ".join(NETS.names()))
        if kind not in NETS:
            raise self.error(f"{key}.net.kind", NETS.unknown_message(str(kind)))
        rest = {k: v for k, v in raw.items() if k != "kind"}
        options = validate_options(
            rest, NETS.get(kind).options, lambda k, m: self.error(f"{key}.net.{k}", m)
        )
        return NetSpec(kind, options)

    def family_name(self, body: dict, key: str, registry) -> str:
        name = body.get("family")
        if name is None:
            raise self.error(f"{key}.family", "required; one of " + ", ".join(registry.names()))
        if name not in registry:
            raise self.error(f"{key}.family", registry.unknown_message(str(name)))
        return name

    def order(self, nodes: dict[str, NodeSpec], external: set[str], section: str) -> list[str]:
        """Topological order; parents must be nodes of ``nodes`` or in ``external``."""
        for node in nodes.values():
            for parent in node.given:
                if parent not in nodes and parent not in external:
                    raise self.error(
                        f"{node.key}.given",
                        f"'{parent}' is not a {section} node"
                        + did_you_mean(parent, set(nodes) | external),
                    )
                if parent == node.name:
                    raise self.error(f"{node.key}.given", f"'{node.name}' cannot be its own parent")
        sorter = graphlib.TopologicalSorter(
            {n: [p for p in node.given if p in nodes] for n, node in nodes.items()}
        )
        try:
            return list(sorter.static_order())
        except graphlib.CycleError as e:
            cycle = e.args[1]
            raise self.error(
                f"{nodes[cycle[0]].key}.given", "cycle: " + " -> ".join(reversed(cycle))
            ) from None


def _model_node(reader: _Reader, section: str, name: str, body: dict) -> NodeSpec:
    key = f"{section}.{name}"
    role = section
    family_name = reader.family_name(body, key, FAMILIES)
    family = FAMILIES.get(family_name)
    if role not in family.roles:
        raise reader.error(
            f"{key}.family",
            f"'{family_name}' cannot be used for an {role} node"
            if role == "observed"
            else f"'{family_name}' cannot be used for a {role} node",
        )
    own = family.options_for(role)
    reader.table(body, key, _COMMON_KEYS + tuple(own))
    given = reader.given(body, key)
    if family.parents == "forbidden" and given:
        raise reader.error(f"{key}.given", f"family '{family_name}' takes no parents")
    net = reader.net(body, key, given)
    options = validate_options(
        {k: v for k, v in body.items() if k not in _COMMON_KEYS},
        own,
        lambda k, m: reader.error(f"{key}.{k}", m),
    )
    try:
        family.check_context(options, conditional=bool(given))
    except OptionError as e:
        raise reader.error(f"{key}.{e.key}", str(e)) from None
    return NodeSpec(name, key, family_name, given, net, options)


def parse_model(text: str, path: str | Path = "<string>") -> ModelSpec:
    """Parse and validate a model spec given as TOML text."""
    reader = _Reader(path)
    doc = reader.load(text)
    reader.table(doc, "", ("description", "default_guide", "latent", "observed"))
    latents = {
        n: _model_node(reader, "latent", n, b) for n, b in reader.sections(doc, "latent").items()
    }
    observed = reader.sections(doc, "observed")
    if list(observed) != [DATA]:
        names = ", ".join(observed) or "none"
        raise reader.error("observed", f"expected exactly one observed node named 'x', got {names}")
    if DATA in latents:
        raise reader.error(f"latent.{DATA}", "'x' is the observed node; rename this latent")
    if not latents:
        raise reader.error("latent", "a latent-variable model needs at least one [latent.NAME]")
    for node in latents.values():
        if DATA in node.given:
            raise reader.error(
                f"{node.key}.given",
                "a latent cannot depend on the observed x; condition on x in the guide",
            )
    x = _model_node(reader, "observed", DATA, observed[DATA])
    if not x.given:
        raise reader.error("observed.x.given", "the observed node needs latent parents")
    order = reader.order({**latents, DATA: x}, set(), "latent")
    for key in ("description", "default_guide"):
        if key in doc and not isinstance(doc[key], str):
            raise reader.error(key, f"expected a string, got {doc[key]!r}")
    return ModelSpec(
        path=str(path),
        text=text,
        description=doc.get("description", ""),
        latents={n: latents[n] for n in order if n != DATA},
        observed=x,
        default_guide=doc.get("default_guide"),
    )


def parse_guide(text: str, path: str | Path = "<string>") -> GuideSpec:
    """Parse and validate a guide spec given as TOML text (without reference to a model)."""
    reader = _Reader(path)
    doc = reader.load(text)
    reader.table(doc, "", ("description", "latent"))
    nodes = {}
    for name, body in reader.sections(doc, "latent").items():
        key = f"latent.{name}"
        family = reader.family_name(body, key, GUIDE_FAMILIES)
        own = GUIDE_FAMILIES.get(family).options
        reader.table(body, key, _COMMON_KEYS + tuple(own))
        given = reader.given(body, key)
        if given and not GUIDE_FAMILIES.get(family).sampled:
            raise reader.error(f"{key}.given", f"'{family}' has no guide site to condition")
        options = validate_options(
            {k: v for k, v in body.items() if k not in _COMMON_KEYS},
            own,
            lambda k, m, key=key: reader.error(f"{key}.{k}", m),
        )
        net = reader.net(body, key, given)
        nodes[name] = NodeSpec(name, key, family, given, net, options)
    if not nodes:
        raise reader.error("latent", "a guide needs one [latent.NAME] per model latent")
    if DATA in nodes:
        raise reader.error(f"latent.{DATA}", "'x' is the data, not a latent")
    order = reader.order(nodes, {DATA}, "guide")
    if "description" in doc and not isinstance(doc["description"], str):
        raise reader.error("description", f"expected a string, got {doc['description']!r}")
    return GuideSpec(str(path), text, doc.get("description", ""), {n: nodes[n] for n in order})


def check_pair(model: ModelSpec, guide: GuideSpec) -> None:
    """The guide covers exactly the model's latents, each with a family that can approximate it."""
    reader = _Reader(guide.path)
    for name in model.latents:
        if name not in guide.latents:
            raise reader.error(
                "latent", f"misses latent '{name}' of model {model.path}; add [latent.{name}]"
            )
    for name, node in guide.latents.items():
        if name not in model.latents:
            raise reader.error(
                node.key,
                f"model {model.path} has no latent '{name}'" + did_you_mean(name, model.latents),
            )
        for parent in node.given:
            if (
                parent in guide.latents
                and not GUIDE_FAMILIES.get(guide.latents[parent].family).sampled
            ):
                raise reader.error(
                    f"{node.key}.given",
                    f"'{parent}' is enumerated, so the guide has no value of it to condition on",
                )
        if not GUIDE_FAMILIES.get(node.family).sampled:
            children = [c for c, m in model.latents.items() if name in m.given]
            if children:
                raise reader.error(
                    f"{node.key}.family",
                    f"'{node.family}' is supported for latents whose only child is x, but "
                    f"'{name}' feeds {children}",
                )
        target = FAMILIES.get(model.latents[name].family)
        supports = GUIDE_FAMILIES.get(node.family).supports
        if target.support not in supports:
            raise reader.error(
                f"{node.key}.family",
                f"'{node.family}' approximates {'/'.join(sorted(supports))} latents, but model "
                f"latent '{name}' is {target.support} ({model.latents[name].family})",
            )

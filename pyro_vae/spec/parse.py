"""Parse and validate model and guide specs.

A model spec is a DAG of ``[latent.NAME]`` nodes, ``[observed.NAME]`` nodes (``x`` and any
others) and ``[input.NAME]`` nodes (data given to model and guide, never modelled: a CVAE's
condition). A latent with ``observed = "partial"`` is observed on the rows where the data has a
value and a latent elsewhere (M2's label). A guide spec has one ``[latent.NAME]`` entry per model
latent; its nodes may be given the model's data nodes (observed and input). Every rule violation
raises :class:`~pyro_vae.errors.SpecError` naming the file and the dotted key.
"""

from __future__ import annotations

import graphlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..errors import SpecError, did_you_mean, shown
from ..model import conv, priors  # noqa: F401  (they register the conv net and learned priors)
from ..model.families import FAMILIES, OptionError, Role
from ..model.guide_families import GUIDE_FAMILIES
from ..model.nets import NETS
from ..model.sequence_nets import RNN_OPTIONS
from .options import list_of, one_of, positive_int, string, validate_options

DATA = "x"  # the observed site; guides may condition on it

#: The longest spec text read. The bundled specs are under 2 kB; the bound keeps a stray
#: multi-gigabyte file (or a generated one) from being parsed at all.
MAX_SPEC_CHARS = 1_000_000

#: The most dots a dotted key may have (``latent.z.net.kind`` has 3). tomllib's bookkeeping
#: of a dotted key is quadratic in its parts: a 200 kB line ``a.a.a...a = 1`` takes gigabytes.
MAX_KEY_DOTS = 20

# One part of a TOML key: bare, "basic" or 'literal'. Possessive quantifiers and the
# look-behind (a chain starts at a part's first character only) keep the search linear.
_KEY_PART = r"""(?:[A-Za-z0-9_-]++|"(?:[^"\\\n]|\\.)*+"|'[^'\n]*+')"""
_LONG_DOTTED_KEY = re.compile(
    rf"(?<![A-Za-z0-9_\-\"'])(?:{_KEY_PART}[ \t]*+\.[ \t]*+){{{MAX_KEY_DOTS + 1},}}{_KEY_PART}"
)

#: Node names become Pyro site names and the keys of the ``nn.ModuleDict`` holding the nodes,
#: which refuses dots, the empty string and its own attribute names (``keys``, ``training``).
NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_RESERVED_NAMES = frozenset(dir(nn.ModuleDict()))
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def key_part(name: str) -> str:
    """``name`` as one part of a dotted key in a message: bare if TOML would write it bare,
    else quoted and shortened, so that a newline in a key cannot split the message."""
    return name if _BARE_KEY.fullmatch(name) else shown(name)


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
        if isinstance(sizes, int):  # one width (the gated transition's): as a list of one
            sizes = [sizes]
        return " ".join([self.kind + (f"{sizes}" if sizes is not None else ""), *rest])


@dataclass(frozen=True)
class NodeSpec:
    """One node: ``key`` is its table in the file (``latent.z``), used in error messages;
    ``role`` the section that table is in, so that code asks the node, not its key's text
    (every guide node is a latent)."""

    name: str
    key: str
    family: str
    given: tuple[str, ...] = ()
    net: NetSpec | None = None
    options: dict = field(default_factory=dict)
    role: Role = Role.LATENT
    #: The data array that gives the node its values (observed and input nodes, partially
    #: observed latents); by default the node's name.
    data: str | None = None
    #: A latent observed on the rows where its data has a value (``observed = "partial"``).
    partial: bool = False
    #: A chain latent's net from its value at step t − 1 to its family's parameters at t,
    #: shared over t (``transition = {...}``); None for a latent that is not a chain.
    transition: NetSpec | None = None
    #: A chain latent's value before its first step: ``"zeros"`` or ``"learned"``.
    initial: str | None = None
    #: A guide entry's recurrent encoder of the data sequence (``rnn = {...}``).
    rnn: dict | None = None


@dataclass(frozen=True)
class ModelSpec:
    path: str
    text: str
    description: str
    latents: dict[str, NodeSpec]  # in topological (sampling) order
    observed: NodeSpec  # x, the data the model is of
    default_guide: str | None = None
    #: Observed nodes beside x, in the file's order.
    also_observed: dict[str, NodeSpec] = field(default_factory=dict)
    #: Input nodes: data the model conditions on and does not model.
    inputs: dict[str, NodeSpec] = field(default_factory=dict)
    #: The objective a run trains with unless it names one (``trace_enum:classify=46``).
    default_objective: str | None = None

    @property
    def observed_nodes(self) -> dict[str, NodeSpec]:
        """x and the other observed nodes."""
        return {DATA: self.observed, **self.also_observed}

    @property
    def partial(self) -> dict[str, NodeSpec]:
        """The partially observed latents."""
        return {n: node for n, node in self.latents.items() if node.partial}

    @property
    def chains(self) -> dict[str, NodeSpec]:
        """The chain latents: one value per time step, p(z_t | z_{t−1}) by their transition."""
        return {n: node for n, node in self.latents.items() if node.transition is not None}

    @property
    def sequential(self) -> bool:
        """Whether the model is over sequences: x (N, T, D), one emission per time step."""
        return bool(self.chains)

    @property
    def data_nodes(self) -> dict[str, NodeSpec]:
        """The nodes the data gives values to, in the order the model and guide take them as
        arguments: x, the other observed nodes, the inputs, the partially observed latents."""
        return {**self.observed_nodes, **self.inputs, **self.partial}


@dataclass(frozen=True)
class GuideSpec:
    path: str
    text: str
    description: str
    latents: dict[str, NodeSpec]  # in topological (sampling) order of the guide


_COMMON_KEYS = ("family", "given", "net")
_DATA_KEY = "data"  # the data array a node's values come from
_PARTIAL = "observed"  # observed = "partial" on a latent
_INPUT_KEYS = ("dim", _DATA_KEY)
_CHAIN_KEYS = ("transition", "initial")  # a latent over time steps
_RNN_KEY = "rnn"  # a guide entry that reads the data sequence through a recurrent net


class _Reader:
    """Carries the file path so every check can name it."""

    def __init__(self, path):
        self.path = str(path)

    def error(self, key: str, message: str) -> SpecError:
        return SpecError(self.path, key, message)

    def load(self, text: str) -> dict:
        """The TOML document of ``text``; whatever tomllib cannot read is a :class:`SpecError`."""
        if not isinstance(text, str):
            raise self.error("", f"expected the text of a spec, got {type(text).__name__}")
        if len(text) > MAX_SPEC_CHARS:
            raise self.error(
                "", f"is {len(text):,} characters long; a spec may have at most {MAX_SPEC_CHARS:,}"
            )
        long_key = _LONG_DOTTED_KEY.search(text)
        if long_key:
            line = text.count("\n", 0, long_key.start()) + 1
            raise self.error(
                "", f"line {line}: a dotted key of more than {MAX_KEY_DOTS + 1} parts; nest tables"
            )
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise self.error("", f"not valid TOML: {e}") from None
        except RecursionError:  # tomllib recurses once per level of nested arrays or tables
            raise self.error("", "not valid TOML: values nested too deeply") from None
        except ValueError as e:  # an integer of more than 4,300 digits; the advice is Python's
            raise self.error("", f"not valid TOML: {str(e).split(';')[0]}") from None

    def table(self, doc: dict, key: str, allowed: tuple[str, ...]) -> None:
        for k in doc:
            if k not in allowed:
                part = key_part(k)
                raise self.error(
                    f"{key}.{part}" if key else part, "unknown key" + did_you_mean(k, allowed)
                )

    def sections(self, doc: dict, name: str) -> dict[str, dict]:
        sec = doc.get(name, {})
        if not isinstance(sec, dict):
            raise self.error(name, f"expected a table of nodes ([{name}.NAME]), got {shown(sec)}")
        for node, body in sec.items():
            if not NODE_NAME.fullmatch(node):
                raise self.error(
                    f"{name}.{key_part(node)}",
                    "a node name must be a letter followed by at most 63 letters, digits or _",
                )
            if node in _RESERVED_NAMES:
                raise self.error(
                    f"{name}.{node}",
                    f"'{node}' is reserved: the torch ModuleDict holding the nodes has an "
                    f"attribute of that name",
                )
            if not isinstance(body, dict):
                raise self.error(f"{name}.{node}", "expected a table of keys")
        return sec

    def given(self, body: dict, key: str) -> tuple[str, ...]:
        try:
            given = list_of(string)(body.get("given", []))
        except ValueError as e:
            raise self.error(f"{key}.given", str(e)) from None
        if len(set(given)) != len(given):
            raise self.error(f"{key}.given", f"names a parent twice: {shown(given)}")
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
        return self.net_table(raw, f"{key}.net")

    def net_table(self, raw, where: str) -> NetSpec:
        """A net's table ``{ kind = ..., options }`` at the dotted key ``where``."""
        if not isinstance(raw, dict):
            raise self.error(where, f'expected a table like {{ kind = "mlp" }}, got {shown(raw)}')
        kind = self.registered_name(raw, "kind", where, NETS)
        rest = {k: v for k, v in raw.items() if k != "kind"}
        options = validate_options(
            rest, NETS.get(kind).options, lambda k, m: self.error(f"{where}.{key_part(k)}", m)
        )
        return NetSpec(kind, options)

    def family_name(self, body: dict, key: str, registry) -> str:
        return self.registered_name(body, "family", key, registry)

    def registered_name(self, body: dict, name_key: str, key: str, registry) -> str:
        """``body[name_key]``, which must name an entry of ``registry`` (a family, a net)."""
        name = body.get(name_key)
        where = f"{key}.{name_key}"
        if name is None:
            raise self.error(where, "required; one of " + ", ".join(registry.names()))
        if not isinstance(name, str):
            raise self.error(
                where, f"expected a string, one of {', '.join(registry.names())}; got {shown(name)}"
            )
        if name not in registry:
            # The name as shown (escaped, shortened) without its quotes, which the message adds.
            raise self.error(where, registry.unknown_message(shown(name)[1:-1]))
        return name

    def order(self, nodes: dict[str, NodeSpec], external: set[str], section: str) -> list[str]:
        """Topological order; parents must be nodes of ``nodes`` or in ``external``."""
        for node in nodes.values():
            for parent in node.given:
                if parent not in nodes and parent not in external:
                    raise self.error(
                        f"{node.key}.given",
                        f"{shown(parent)} is not a {section} node"
                        + did_you_mean(parent, set(nodes) | external),
                    )
                if parent == node.name:
                    raise self.error(
                        f"{node.key}.given",
                        f"'{node.name}' cannot be its own parent; for a chain over time steps "
                        f'set transition = {{ kind = "gated" }} (or "linear") on it instead',
                    )
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


def _model_node(reader: _Reader, role: Role, name: str, body: dict) -> NodeSpec:
    key = f"{role.value}.{name}"
    family_name = reader.family_name(body, key, FAMILIES)
    family = FAMILIES.get(family_name)
    if role not in family.roles:
        raise reader.error(
            f"{key}.family",
            f"'{family_name}' cannot be used for an {role.value} node"
            if role is Role.OBSERVED
            else f"'{family_name}' cannot be used for a {role.value} node",
        )
    own = family.options_for(role)
    data_keys = (_DATA_KEY,) if role is Role.OBSERVED else (_PARTIAL, _DATA_KEY, *_CHAIN_KEYS)
    reader.table(body, key, _COMMON_KEYS + tuple(own) + data_keys)
    given = reader.given(body, key)
    if family.parents == "forbidden" and given:
        raise reader.error(f"{key}.given", f"family '{family_name}' takes no parents")
    net = reader.net(body, key, given)
    transition, initial = _chain(reader, body, key, given, family_name)
    options = validate_options(
        {k: v for k, v in body.items() if k not in _COMMON_KEYS + data_keys},
        own,
        lambda k, m: reader.error(f"{key}.{key_part(k)}", m),
    )
    try:
        family.check_context(options, conditional=bool(given) or transition is not None)
        family.check_constraints(options)
    except OptionError as e:
        raise reader.error(f"{key}.{e.key}", str(e)) from None
    if name == DATA and _DATA_KEY in body:
        raise reader.error(f"{key}.{_DATA_KEY}", "x is the data set's rows; it takes no data key")
    partial = role is Role.LATENT and _partial(reader, body, key, family)
    data = _data_name(reader, body, key) if role is Role.OBSERVED or partial else None
    return NodeSpec(
        name, key, family_name, given, net, options, role, data, partial, transition, initial
    )


def _chain(reader: _Reader, body: dict, key: str, given, family_name: str):
    """A chain latent's ``transition`` net and ``initial`` state (both None for other nodes)."""
    if "transition" not in body:
        if "initial" in body:
            raise reader.error(
                f"{key}.initial", "only a chain latent (one with a transition) has an initial state"
            )
        return None, None
    family = FAMILIES.get(family_name)
    if given:
        raise reader.error(
            f"{key}.given",
            "a chain latent's parent is its own previous step, which its transition reads; "
            "it takes no 'given'",
        )
    if family.parents == "forbidden" or family.support != "real":
        raise reader.error(
            f"{key}.family",
            f"'{family_name}' cannot be a chain: its transition gives the parameters of a "
            f"continuous family, e.g. 'normal' (discrete chains are not supported)",
        )
    transition = reader.net_table(body["transition"], f"{key}.transition")
    try:
        initial = one_of(("zeros", "learned"))(body.get("initial", "zeros"))
    except ValueError as e:
        raise reader.error(f"{key}.initial", f"{e} (the state before the first step)") from None
    return transition, initial


def _check_sequence(reader: _Reader, latents, observed, inputs) -> None:
    """A sequence model: one chain latent, and x emitted from it at every step."""
    chains = [n for n, node in latents.items() if node.transition is not None]
    if not chains:
        return
    if len(latents) > 1:
        others = [n for n in latents if n != chains[0]]
        raise reader.error(
            f"latent.{others[0]}",
            f"a sequence model has one latent, its chain '{chains[0]}'; latents beside the "
            f"chain (static or a second chain) are not supported",
        )
    for name in [*(n for n in observed if n != DATA), *inputs]:
        section = "input" if name in inputs else "observed"
        raise reader.error(
            f"{section}.{name}",
            "a sequence model observes x alone: other observed nodes and inputs are not supported",
        )
    x = observed[DATA]
    if x.given != (chains[0],):
        raise reader.error(
            f"{x.key}.given",
            f'in a sequence model x_t is emitted from the chain alone: given = ["{chains[0]}"]',
        )


def _partial(reader: _Reader, body: dict, key: str, family) -> bool:
    """Whether a latent is observed where its data has a value (``observed = "partial"``)."""
    if _PARTIAL not in body:
        if _DATA_KEY in body:
            raise reader.error(
                f"{key}.{_DATA_KEY}", 'a latent takes data only with observed = "partial"'
            )
        return False
    try:
        one_of(("partial",))(body[_PARTIAL])
    except ValueError as e:
        raise reader.error(f"{key}.{_PARTIAL}", f"{e} (a latent observed on some rows)") from None
    if family.support != "categorical":
        raise reader.error(
            f"{key}.{_PARTIAL}",
            "only a categorical latent can be partially observed (its unobserved rows are summed "
            "out or sampled by the guide)",
        )
    return True


def _data_name(reader: _Reader, body: dict, key: str) -> str:
    name = body.get(_DATA_KEY, key.rsplit(".", 1)[1])
    try:
        return string(name)
    except ValueError as e:
        raise reader.error(f"{key}.{_DATA_KEY}", str(e)) from None


def _input_node(reader: _Reader, name: str, body: dict) -> NodeSpec:
    """``[input.NAME]``: ``dim`` (else the data's), ``data`` (else NAME)."""
    key = f"input.{name}"
    reader.table(body, key, _INPUT_KEYS)
    options = {}
    if "dim" in body:
        try:
            options["dim"] = positive_int(body["dim"])
        except ValueError as e:
            raise reader.error(f"{key}.dim", str(e)) from None
    return NodeSpec(
        name, key, "input", options=options, role=Role.INPUT, data=_data_name(reader, body, key)
    )


def _model_sections(reader: _Reader, doc: dict):
    """The latent, observed and input nodes, each name in one section only."""
    latents = {
        n: _model_node(reader, Role.LATENT, n, b) for n, b in reader.sections(doc, "latent").items()
    }
    observed_tables = reader.sections(doc, "observed")
    if DATA not in observed_tables:
        names = ", ".join(observed_tables) or "none"  # valid node names: sections checked them
        raise reader.error("observed", f"expected an observed node named 'x', got {names}")
    observed = {n: _model_node(reader, Role.OBSERVED, n, b) for n, b in observed_tables.items()}
    inputs = {n: _input_node(reader, n, b) for n, b in reader.sections(doc, "input").items()}
    for section, nodes in (("observed", observed), ("input", inputs)):
        for name in nodes:
            if name in latents:
                what = "the observed node" if section == "observed" else "an input node"
                raise reader.error(f"latent.{name}", f"'{name}' is {what}; rename this latent")
    for name in set(inputs) & set(observed):
        raise reader.error(f"input.{name}", f"'{name}' is an observed node; rename this input")
    if not latents:
        raise reader.error("latent", "a latent-variable model needs at least one [latent.NAME]")
    return latents, observed, inputs


def _refuse_observed_parents(reader: _Reader, nodes, observed, what: str, advice: str) -> None:
    """No node of ``nodes`` may be given an observed node: the model does not read its data."""
    for node in nodes.values():
        for parent in (p for p in node.given if p in observed):
            raise reader.error(
                f"{node.key}.given",
                f"{what} cannot depend on the observed {parent}; {advice}[input.{parent}]",
            )


def _check_observed_parents(reader: _Reader, latents, observed) -> None:
    _refuse_observed_parents(reader, observed, observed, "an observed node", "declare it an ")
    for node in observed.values():
        if not any(p in latents for p in node.given):
            raise reader.error(f"{node.key}.given", "an observed node needs latent parents")


def parse_model(text: str, path: str | Path = "<string>") -> ModelSpec:
    """Parse and validate a model spec given as TOML text."""
    reader = _Reader(path)
    doc = reader.load(text)
    reader.table(
        doc,
        "",
        ("description", "default_guide", "default_objective", "latent", "observed", "input"),
    )
    latents, observed, inputs = _model_sections(reader, doc)
    _check_sequence(reader, latents, observed, inputs)
    advice = "condition on it in the guide, or declare it an "
    _refuse_observed_parents(reader, latents, observed, "a latent", advice)
    section = "latent or input" if inputs else "latent"
    order = reader.order({**latents, **observed}, set(inputs), section)
    _check_observed_parents(reader, latents, observed)
    for key in ("description", "default_guide", "default_objective"):
        if key in doc and not isinstance(doc[key], str):
            raise reader.error(key, f"expected a string, got {shown(doc[key])}")
    return ModelSpec(
        path=str(path),
        text=text,
        description=doc.get("description", ""),
        latents={n: latents[n] for n in order if n in latents},
        observed=observed[DATA],
        default_guide=doc.get("default_guide"),
        default_objective=doc.get("default_objective"),
        also_observed={n: node for n, node in observed.items() if n != DATA},
        inputs=inputs,
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
        reader.table(body, key, (*_COMMON_KEYS, *own, _RNN_KEY))
        given = reader.given(body, key)
        if given and not GUIDE_FAMILIES.get(family).sampled:
            raise reader.error(f"{key}.given", f"'{family}' has no guide site to condition")
        options = validate_options(
            {k: v for k, v in body.items() if k not in (*_COMMON_KEYS, _RNN_KEY)},
            own,
            lambda k, m, key=key: reader.error(f"{key}.{key_part(k)}", m),
        )
        net = reader.net(body, key, given)
        rnn = _rnn(reader, body, key, given)
        nodes[name] = NodeSpec(name, key, family, given, net, options, Role.LATENT, rnn=rnn)
    if not nodes:
        raise reader.error("latent", "a guide needs one [latent.NAME] per model latent")
    if DATA in nodes:
        raise reader.error(f"latent.{DATA}", "'x' is the data, not a latent")
    # Parents that are not guide latents are the model's data nodes (x, other observed
    # nodes, inputs); which ones the model has is checked against it (check_pair).
    data = {p for node in nodes.values() for p in node.given if p not in nodes} | {DATA}
    order = reader.order(nodes, data, "guide")
    if "description" in doc and not isinstance(doc["description"], str):
        raise reader.error("description", f"expected a string, got {shown(doc['description'])}")
    return GuideSpec(str(path), text, doc.get("description", ""), {n: nodes[n] for n in order})


def _rnn(reader: _Reader, body: dict, key: str, given: tuple[str, ...]) -> dict | None:
    """A guide entry's ``rnn = { cell, hidden, direction, layers }``, which reads x."""
    raw = body.get(_RNN_KEY)
    if raw is None:
        return None
    where = f"{key}.{_RNN_KEY}"
    if not isinstance(raw, dict):
        raise reader.error(where, f'expected a table like {{ cell = "gru" }}, got {shown(raw)}')
    if given != (DATA,):
        raise reader.error(f"{key}.given", 'an rnn reads the data sequence: given = ["x"]')
    return validate_options(
        raw, RNN_OPTIONS, lambda k, m: reader.error(f"{where}.{key_part(k)}", m)
    )


def _check_sequence_guide(reader: _Reader, model: ModelSpec, guide: GuideSpec) -> None:
    """Chain latents have guide entries that read x (through an rnn, or x_t itself) and their
    previous step; no other entry has an rnn."""
    for name, node in guide.latents.items():
        chain = name in model.chains
        if node.rnn is not None and not chain:
            raise reader.error(
                f"{node.key}.{_RNN_KEY}",
                f"'{name}' is not a chain latent of {model.path}; an rnn reads a sequence",
            )
        if chain and (node.given != (DATA,) or not GUIDE_FAMILIES.get(node.family).sampled):
            raise reader.error(
                f"{node.key}.given",
                f"'{name}' is a chain: its guide q(z_t | z_(t-1), x) needs given = [\"x\"] and "
                f'a net that combines them, e.g. net = {{ kind = "combiner" }} with an rnn',
            )


def check_pair(model: ModelSpec, guide: GuideSpec) -> None:
    """The guide covers exactly the model's latents, each with a family that can approximate it."""
    reader = _Reader(guide.path)
    _check_guide_data_parents(reader, model, guide)
    _check_sequence_guide(reader, model, guide)
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
                    f"'{parent}' is enumerated by the model, so the guide has no value of it to "
                    f'condition on; to sum it out in the guide, give it family = "categorical" '
                    f'with enumerate = "parallel"',
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


def _check_guide_data_parents(reader: _Reader, model: ModelSpec, guide: GuideSpec) -> None:
    """A guide node's parents that are not guide latents must be data nodes of the model."""
    data = set(model.observed_nodes) | set(model.inputs)
    for node in guide.latents.values():
        for parent in node.given:
            if parent not in guide.latents and parent not in data:
                raise reader.error(
                    f"{node.key}.given",
                    f"{shown(parent)} is neither a guide latent nor a data node of model "
                    f"{model.path}" + did_you_mean(parent, set(guide.latents) | data),
                )

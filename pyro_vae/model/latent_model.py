"""Build a :class:`LatentModel` — plain Pyro ``model(x)`` / ``guide(x)`` callables — from specs.

Conventions (shared with :mod:`pyro_vae.inference.importance`): the batch lives under
``pyro.plate("data", N)`` at dim -1, latent sites are named after their spec nodes, the observed
site is ``x``, and each site's event holds one datapoint's value (``.to_event(1)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pyro
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer import infer_discrete
from torch import nn

from ..errors import SpecError
from ..results.choices import Proposal
from ..spec.parse import DATA, GuideSpec, ModelSpec, NodeSpec, check_pair
from .families import FAMILIES, Family, OptionError
from .guide_families import ENUMERATE, GUIDE_FAMILIES
from .nets import NETS, NetInput, NetOutput
from .relaxing import categories_as_vectors
from .sizes import check_sizes

MAX_PLATE_NESTING = 1  # only the "data" plate; vectorized particles go to dim -2
REDUCED_PRECISION = (torch.bfloat16, torch.float16)


class Node(nn.Module):
    """A conditional distribution: the node's net maps its parents' values to the raw
    parameters of its family, which returns a ``pyro.distributions`` object."""

    def __init__(
        self,
        spec: NodeSpec,
        family: Family,
        inputs: list[NetInput],
        path: str,
        image_shape: tuple[int, int, int] | None = None,
        net_key: str = "net",
    ):
        super().__init__()
        self.name, self.given, self.family = spec.name, spec.given, family
        self.net = None
        if spec.net is not None:
            try:
                output = NetOutput(family.head_size, image_shape)
                self.net = NETS.get(spec.net.kind).build(inputs, output, **spec.net.options)
            except ValueError as e:  # a net that cannot take these inputs, e.g. table of a normal
                raise SpecError(path, f"{spec.key}.{net_key}", str(e)) from None

    def forward(self, values: dict[str, torch.Tensor]):
        return self.family(self.raw(values))

    def raw(self, values: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The net's output for the parents' ``values`` (None for a node without a net)."""
        raw = None if self.net is None else self.net([values[p] for p in self.given])
        if raw is not None and raw.dtype in REDUCED_PRECISION:
            # Under autocast the nets compute in bf16/fp16; the family's densities are sums
            # over many terms and are computed in float32.
            raw = raw.float()
        return raw


def _guide_order(guide: GuideSpec, model_order: list[str]) -> list[str]:
    """A sampling order for the guide that follows the model's wherever the guide allows.

    Pyro's mean-field check compares the two orders; independent guide latents need not
    trigger its warning.
    """
    order: list[str] = []
    while len(order) < len(model_order):
        name = next(
            n
            for n in model_order
            if n not in order
            and all(p in order or p not in guide.latents for p in guide.latents[n].given)
        )
        order.append(name)
    return order


def _shapes(data_shape: Sequence[int]) -> tuple[tuple[int], tuple[int, int, int] | None]:
    """``(D,)`` and the image shape ``(C, H, W)`` (None for vectors) of a datapoint shape."""
    shape = tuple(data_shape)
    if not 1 <= len(shape) <= 3 or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape
    ):
        raise ValueError(
            f"data_shape must be (D,) for vectors or (C, H, W) / (H, W) for images, got {shape}"
        )
    image = None if len(shape) == 1 else (1, *shape) if len(shape) == 2 else shape
    return (math.prod(shape),), image


def _input(name: str, family: Family) -> NetInput:
    return NetInput(name, family.value_size, categorical=family.support == "categorical")


#: The label of a row whose partially observed node has no value.
MISSING = -1


def _data_shapes(spec: ModelSpec, data_shape) -> dict[str, tuple[int, ...]]:
    """The shape of x and the size of every other observed node and input, by node name, from
    ``data_shape`` (x's shape, or a dict of shapes by node name) and the inputs' ``dim``."""
    shapes = dict(data_shape) if isinstance(data_shape, Mapping) else {DATA: tuple(data_shape)}
    if DATA not in shapes:
        raise ValueError(f"data_shape: give the shape of 'x' too, got {sorted(shapes)}")
    for name, node in {**spec.also_observed, **spec.inputs}.items():
        dim = node.options.get("dim")
        if name not in shapes:
            if dim is None:
                raise SpecError(
                    spec.path,
                    node.key,
                    f"the size of '{name}' is unknown: set {node.key}.dim or give its data",
                )
            shapes[name] = (dim,)
        size = math.prod(shapes[name])
        if dim is not None and size != dim:
            raise SpecError(
                spec.path, f"{node.key}.dim", f"is {dim}, but the data's '{name}' has {size} values"
            )
    return shapes


def _labels(name: str, value) -> torch.Tensor | None:
    """The values of a partially observed node in one call: None where no row has one, the
    tensor where every row has one. A call mixing the two is refused: Pyro's site is either
    observed or sampled, so such rows go in separate calls (the trainer batches them apart)."""
    if value is None:
        return None
    missing = value < 0
    if bool(missing.all()):
        return None
    if bool(missing.any()):
        raise ValueError(
            f"'{name}': this call mixes rows with a value and rows without one ({MISSING}); "
            f"give them in separate calls"
        )
    return value


class LatentModel(nn.Module):
    """A latent-variable model p(z) p(x|z) and its guide q(z|x), built from specs.

    :param model_spec: parsed model spec.
    :param guide_spec: parsed guide spec covering the model's latents.
    :param data_shape: shape of one datapoint: ``(D,)`` for vectors, ``(C, H, W)`` or
        ``(H, W)`` for images. The model and guide always take flat rows ``(N, D)``; the image
        shape is kept as :attr:`image_shape` for the nets that see images (``conv``).
    """

    def __init__(
        self,
        model_spec: ModelSpec,
        guide_spec: GuideSpec,
        data_shape: Sequence[int] | Mapping[str, Sequence[int]],
    ):
        super().__init__()
        check_pair(model_spec, guide_spec)
        if model_spec.sequential:
            raise SpecError(
                model_spec.path,
                f"latent.{next(iter(model_spec.chains))}.transition",
                "a sequence model: build it with pyro_vae.load (a SequenceModel)",
            )
        shapes = _data_shapes(model_spec, data_shape)
        self.data_shape, self.image_shape = _shapes(shapes[DATA])
        #: The size of each other observed node and input, by node name.
        self.data_sizes = {n: math.prod(v) for n, v in shapes.items() if n != DATA}
        # Before any module exists: a pair far too large is refused by key, not by the allocator.
        check_sizes(model_spec, guide_spec, self.data_shape[0], self.image_shape, self.data_sizes)
        self.model_spec, self.guide_spec = model_spec, guide_spec
        inputs = {n: NetInput(n, self.data_sizes[n]) for n in model_spec.inputs}
        self._build_generative(inputs)
        inputs[DATA] = NetInput(DATA, self.data_shape[0], image_shape=self.image_shape)
        inputs.update({n: NetInput(n, self.data_sizes[n]) for n in model_spec.also_observed})
        self._build_inference(inputs)
        self._attach_encoders()

    def _build_generative(self, inputs: dict[str, NetInput]) -> None:
        """The model's nodes in sampling order, the observed nodes last (x the very last). Their
        names are the Pyro module names, so checkpoints load by name."""
        spec = self.model_spec
        self.generative = nn.ModuleDict()
        for name, node in spec.latents.items():
            family = self._family(node, node.options[FAMILIES.get(node.family).size_key])
            self.generative[name] = Node(node, family, [inputs[p] for p in node.given], spec.path)
            inputs[name] = _input(name, family)
        for name, node in spec.also_observed.items():
            family = self._family(node, self.data_sizes[name])
            self.generative[name] = Node(node, family, [inputs[p] for p in node.given], spec.path)
        x = spec.observed
        self.generative[DATA] = Node(
            x,
            self._family(x, self.data_shape[0]),
            [inputs[p] for p in x.given],
            spec.path,
            image_shape=self.image_shape,
        )

    def _build_inference(self, inputs: dict[str, NetInput]) -> None:
        """The guide's nodes in its sampling order; enumerated-by-the-model latents have none."""
        guide_spec = self.guide_spec
        self.inference = nn.ModuleDict()
        families = {n: GUIDE_FAMILIES.get(s.family) for n, s in guide_spec.latents.items()}
        self.enumerated = frozenset(n for n, f in families.items() if not f.sampled)
        #: Guide sites enumerated in parallel by the guide (summed out under q).
        self.guide_enumerated = frozenset(
            n for n, s in guide_spec.latents.items() if s.options.get(ENUMERATE) == "parallel"
        )
        for name in _guide_order(guide_spec, list(self.model_spec.latents)):
            spec = guide_spec.latents[name]
            if name in self.enumerated:
                continue
            options = {k: v for k, v in spec.options.items() if k != ENUMERATE}
            try:
                family = families[name].build(
                    self.generative[name].family, conditional=bool(spec.given), **options
                )
            except OptionError as e:  # an option that does not fit this latent, e.g. its dim
                raise SpecError(guide_spec.path, f"{spec.key}.{e.key}", str(e)) from None
            self.inference[name] = Node(
                spec, family, [inputs[p] for p in spec.given], guide_spec.path
            )

    def _attach_encoders(self) -> None:
        """Give families that evaluate their latent's guide (the VampPrior) that guide node."""
        for name, spec in self.model_spec.latents.items():
            family = self.generative[name].family
            if not family.uses_encoder:
                continue
            entry = self.guide_spec.latents[name]
            if entry.given != (DATA,) or name not in self.inference:
                raise SpecError(
                    self.guide_spec.path,
                    f"{entry.key}.given",
                    f"the '{spec.family}' prior of '{name}' ({self.model_spec.path}) evaluates "
                    f'this guide entry at its pseudo-inputs, so it must be given = ["x"] '
                    f"exactly",
                )
            family.use_encoder(self.inference[name], DATA, self.data_shape[0])

    @staticmethod
    def _family(spec: NodeSpec, size: int) -> Family:
        cls = FAMILIES.get(spec.family)
        options = {k: v for k, v in spec.options.items() if k != cls.size_key}
        return cls(size, conditional=bool(spec.given), **options)

    @property
    def latent_names(self) -> list[str]:
        return list(self.model_spec.latents)

    @property
    def prior(self) -> list[Node]:
        """The latent nodes of the model, in sampling order."""
        return [self.generative[n] for n in self.model_spec.latents]

    @property
    def likelihood(self) -> Node:
        return self.generative[DATA]

    @property
    def argument_names(self) -> tuple[str, ...]:
        """The data nodes the model and guide take, in order: ``model(x, *others)`` — x, the
        other observed nodes, the inputs, then the partially observed latents (each may be
        left out or None: no row has a value)."""
        return tuple(self.model_spec.data_nodes)

    @property
    def data_names(self) -> tuple[str, ...]:
        """The data set's arrays the model and guide are called with, in the order of
        :attr:`argument_names` (each node's ``data`` key, else its name)."""
        return tuple(node.data or name for name, node in self.model_spec.data_nodes.items())

    @property
    def marginal_data_names(self) -> tuple[str, ...]:
        """:attr:`data_names` without the partially observed latents (they come last): a call
        with these arrays sums those latents out — log p(x), not log p(x, y)."""
        return self.data_names[: len(self.data_names) - len(self.model_spec.partial)]

    @property
    def has_fast_paths(self) -> bool:
        """Whether the trace-free paths (:meth:`log_densities`, :meth:`importance_log_weights`)
        cover the pair: one argument, every latent sampled by the guide."""
        return not (self.enumerated or self.guide_enumerated or len(self.argument_names) > 1)

    def _values(self, x: torch.Tensor, data: tuple) -> dict[str, torch.Tensor]:
        """The data nodes' values of one call by node name (a partially observed node's only
        where every row has one)."""
        names = self.argument_names
        required = len(names) - len(self.model_spec.partial)
        if not required - 1 <= len(data) <= len(names) - 1:
            raise TypeError(
                f"the model takes {', '.join(names)} ({required} required), got {1 + len(data)}"
            )
        values = {DATA: x, **dict(zip(names[1:], data, strict=False))}
        for name in self.model_spec.partial:
            values[name] = _labels(name, values.get(name))
        if categories_as_vectors():  # a relaxed run: categorical data as one-hot vectors too
            for name, value in values.items():
                family = self.generative[name].family if name in self.generative else None
                if value is not None and family is not None and family.support == "categorical":
                    size = family.value_size
                    values[name] = F.one_hot(value.long(), size).to(torch.get_default_dtype())
        return values

    def model(self, x: torch.Tensor, *data) -> None:
        """p(z | inputs) p(x, … | z, inputs) with x (and the other observed nodes) observed;
        ``x`` has shape ``(N, D)``, the other arguments are :attr:`argument_names`."""
        pyro.module("model", self.generative)
        values = self._values(x, data)
        with pyro.plate("data", x.shape[0]):
            for node in self.prior:
                infer = {"enumerate": "parallel"} if node.name in self.enumerated else {}
                obs = values.get(node.name)  # a partially observed latent, where observed
                values[node.name] = pyro.sample(node.name, node(values), obs=obs, infer=infer)
            for name in self.model_spec.observed_nodes:
                pyro.sample(name, self.generative[name](values), obs=values[name])

    def guide(self, x: torch.Tensor, *data) -> None:
        """q(z | x, inputs), sampling the latents in the guide spec's order; a partially
        observed latent has a guide site only where it is not observed."""
        pyro.module("guide", self.inference)
        values = self._values(x, data)
        with pyro.plate("data", x.shape[0]):
            for name, node in self.inference.items():
                if values.get(name) is not None:
                    continue
                infer = {"enumerate": "parallel"} if name in self.guide_enumerated else {}
                values[name] = pyro.sample(name, node(values), infer=infer)

    @property
    def classifiers(self) -> dict[str, Node]:
        """The guide nodes of partially observed latents that are given data nodes only: each
        is a classifier q(y | x, …) (M2's)."""
        data = set(self.model_spec.data_nodes) - set(self.model_spec.partial)
        return {
            name: self.inference[name]
            for name in self.model_spec.partial
            if name in self.inference and set(self.inference[name].given) <= data
        }

    def classification_log_prob(self, x: torch.Tensor, *data) -> torch.Tensor:
        """Σ log q(y | x, …) over the rows of this call where each classifier's node is
        observed (0 where none is): the classification term of
        :mod:`pyro_vae.objectives.classify`."""
        values = self._values(x, data)
        total = x.new_zeros(())
        for name, node in self.classifiers.items():
            if values.get(name) is not None:
                total = total + node(values).log_prob(values[name]).sum()
        return total

    @torch.no_grad()
    def classify(self, x: torch.Tensor, *data) -> dict[str, torch.Tensor]:
        """The class probabilities q(y | x, …) of each classifier, ``(N, categories)``."""
        values = self._values(x, data)
        return {name: node(values).probs for name, node in self.classifiers.items()}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        mean: bool = True,
        return_latents: bool = False,
        given: dict[str, torch.Tensor] | None = None,
    ):
        """Ancestral sampling: z ~ p(z | inputs), then x ~ p(x | z, inputs) (or its mean, for
        image grids). ``given``: values held fixed by node name, one row per sample or one row
        for all — the inputs (a CVAE's condition; required where the model has inputs) and any
        latents (M2's label: digits of a chosen class)."""
        values = self._given(n, given or {})
        for node in self.prior:
            if node.name not in values:
                values[node.name] = node(values).expand(torch.Size([n])).sample()
        px = self.likelihood(values).expand(torch.Size([n]))
        x = self.likelihood.family.mean(px) if mean else px.sample()
        latents = {name: values[name] for name in self.latent_names}
        return (x, latents) if return_latents else x

    def _given(self, n: int, given: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``given`` checked (names of inputs and latents, every input present) and expanded
        to ``n`` rows."""
        allowed = set(self.model_spec.inputs) | set(self.latent_names)
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise ValueError(f"given: {unknown} are not inputs or latents of the model")
        missing = sorted(set(self.model_spec.inputs) - set(given))
        if missing:
            raise ValueError(f"given: the model conditions on the inputs {missing}; give them")
        values = {}
        for name, value in given.items():
            value = torch.as_tensor(value)
            categorical = name in self.generative and self.generative[name].family.support == (
                "categorical"
            )
            event = () if categorical else value.shape[-1:]
            values[name] = value.expand(torch.Size([n, *event]))
        return values

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *data, mean: bool = True) -> torch.Tensor:
        """Encode with the guide (z ~ q(z | x, …)), decode with the mean of p(x | z, …);
        ``data``: the model's other arguments (:attr:`argument_names`)."""
        if self.enumerated:
            # Sample the summed-out latents from their exact posterior given x and the rest.
            guide_trace = poutine.trace(self.guide).get_trace(x, *data)
            model = infer_discrete(
                poutine.replay(self.model, trace=guide_trace),
                first_available_dim=-1 - MAX_PLATE_NESTING,
            )
            trace = poutine.trace(model).get_trace(x, *data)
            values = {n: trace.nodes[n]["value"] for n in self.latent_names}
            values.update({n: trace.nodes[n]["value"] for n in self.model_spec.inputs})
        else:
            values = self._values(x, data)
            for name, node in self.inference.items():  # guide-enumerated ones: one draw
                if values.get(name) is None:
                    values[name] = node(values).sample()
        px = self.likelihood(values)
        return self.likelihood.family.mean(px) if mean else px.sample()

    def log_densities(self, x: torch.Tensor, values: dict[str, torch.Tensor], with_guide=True):
        """``(log p(x, z), log p(z), log q(z | x))`` at latent ``values`` of shape
        ``(K, N, *event)``, each ``(K, N)``, computed from the modules without Pyro's traces:
        the fast path :func:`pyro_vae.inference.latents.log_densities` takes for spec-built
        pairs (tests check it equal to the traced one). ``with_guide=False``: None for log q."""
        inputs = {DATA: x, **values}
        prior = _total(node(inputs).log_prob(values[node.name]) for node in self.prior)
        joint = prior + self.likelihood(inputs).log_prob(x)
        if not with_guide:
            return joint, prior, None
        guide = _total(node(inputs).log_prob(values[n]) for n, node in self.inference.items())
        return joint, prior, guide

    #: Rows (samples × datapoints) scored per pass by :meth:`importance_log_weights`: small
    #: enough that a pass's activations stay in the CPU's cache, large enough for full-speed
    #: matrix products.
    SCORE_ROWS = 1024

    def draw_latents(self, x: torch.Tensor, num_samples: int, proposal: str = "guide"):
        """``num_samples`` draws of every latent per datapoint of ``x`` from the guide (or,
        ``proposal="prior"``, the prior), shaped ``(K, N, *event)``: the same draws, from the
        same random stream, as the traced guide gives under a ``"particles"`` plate of size K
        (each node's distribution expanded to batch ``(K, N)``, then ``rsample``)."""
        batch = torch.Size([num_samples, x.shape[0]])
        values: dict[str, torch.Tensor] = {DATA: x}
        from_guide = Proposal.of(proposal).uses_guide
        nodes = self.inference.items() if from_guide else self.generative.items()
        for name, node in nodes:
            if name == DATA:
                continue
            d = node(values)
            if d.batch_shape != batch:
                d = d.expand(batch)
            values[name] = d.rsample() if d.has_rsample else d.sample()
        del values[DATA]
        return values

    def importance_log_weights(
        self,
        x: torch.Tensor,
        num_samples: int,
        proposal="guide",
        *,
        score=None,
        rows: int | None = None,
    ) -> torch.Tensor:
        """``(K, N)`` importance log weights ``log p(x, z) − log r(z)``, z ~ r = q(z | x) (or
        the prior), computed from the modules in passes of ``rows`` samples (default: as
        many as make :attr:`SCORE_ROWS` rows): the fast path of :func:`pyro_vae.log_likelihood`
        for spec-built pairs, which checks it against the traced weights before using it.

        ``score``: what weighs one pass, called as :meth:`pass_log_weights` is (the default);
        given one (a compiled copy, :mod:`pyro_vae.inference.compiled`), every pass has
        ``rows`` samples, the last one padded with repeats of its own draws, so that a
        function compiled for static shapes is compiled once."""
        values = self.draw_latents(x, num_samples, proposal)
        from_guide = Proposal.of(proposal).uses_guide
        step = rows or self.pass_samples(x.shape[0])
        weigh = score or self.pass_log_weights
        parts = []
        for start in range(0, num_samples, step):
            block = {n: v[start : start + step] for n, v in values.items()}
            drawn = min(step, num_samples - start)
            if score is not None and drawn < step:
                block = {n: _padded(v, step) for n, v in block.items()}
            parts.append(weigh(x, block, from_guide)[:drawn])
        return torch.cat(parts)

    def pass_samples(self, num_data: int, num_samples: int | None = None) -> int:
        """Samples per pass of :meth:`importance_log_weights` for ``num_data`` datapoints:
        as many as make :attr:`SCORE_ROWS` rows, or, given the estimate's ``num_samples``,
        the same number of passes with their samples spread evenly (no pass mostly padding)."""
        most = max(1, self.SCORE_ROWS // max(num_data, 1))
        if num_samples is None:
            return most
        return -(-num_samples // -(-num_samples // most))

    def pass_log_weights(
        self, x: torch.Tensor, values: dict[str, torch.Tensor], from_guide: bool
    ) -> torch.Tensor:
        """One pass of :meth:`importance_log_weights`: ``log p(x, z) − log q(z | x)`` (or
        ``− log p(z)``, ``from_guide=False``) at ``values`` of shape ``(k, N, *event)``."""
        joint, prior, guide = self.log_densities(x, values, with_guide=from_guide)
        return joint - (guide if from_guide else prior)

    # --- the latent space ---------------------------------------------------------------

    #: Draws averaged for the mean of a guide family without a closed-form mean (a flow).
    MEAN_DRAWS = 256

    @torch.no_grad()
    def encode(self, x: torch.Tensor, *, mean: bool = True) -> dict[str, torch.Tensor]:
        """Each latent of ``x`` (N, D), in the guide's order: the mean of q(z | x, parents)
        with the parents at their own encoded means, or (``mean=False``) one draw."""
        if self.enumerated or self.guide_enumerated or len(self.argument_names) > 1:
            raise ValueError(
                "encode needs every latent sampled by the guide from x alone; enumerated: "
                f"{sorted(self.enumerated | self.guide_enumerated)}, arguments: "
                f"{list(self.argument_names)}"
            )
        values = {DATA: x}
        for name, node in self.inference.items():
            q = node(values)
            if q.batch_shape != x.shape[:1]:  # a guide node without parents
                q = q.expand(x.shape[:1])
            values[name] = _mean(q, self.MEAN_DRAWS) if mean else q.sample()
        return {name: values[name] for name in self.latent_names}

    @torch.no_grad()
    def decode(self, latents: dict[str, torch.Tensor] | torch.Tensor, *, mean: bool = True):
        """The mean of p(x | z) (or a draw); latents not given take the mean of their prior
        given their parents, so a hierarchical model can be decoded from its top latent.
        A tensor is the value of the only latent of a one-latent model."""
        if torch.is_tensor(latents):
            if len(self.latent_names) != 1:
                raise ValueError(f"give a dict of latents {self.latent_names}")
            latents = {self.latent_names[0]: latents}
        unknown = set(latents) - set(self.latent_names)
        if unknown:
            raise ValueError(f"not latents of the model: {sorted(unknown)}")
        values: dict[str, torch.Tensor] = {}
        rows = next(iter(latents.values())).shape[:-1]
        for node in self.prior:
            if node.name in latents:
                values[node.name] = latents[node.name]
            else:
                values[node.name] = _mean(node(values).expand(rows), self.MEAN_DRAWS)
        px = self.likelihood(values)
        return self.likelihood.family.mean(px) if mean else px.sample()

    @torch.no_grad()
    def interpolate(self, x_from: torch.Tensor, x_to: torch.Tensor, steps: int = 8):
        """Decoded means along straight lines between the encodings of ``x_from`` and ``x_to``
        (both (N, D)): shape (N, steps, D), the two ends included."""
        if steps < 2:
            raise ValueError(f"steps must be >= 2, got {steps}")
        a, b = self.encode(x_from), self.encode(x_to)
        t = torch.linspace(0, 1, steps, device=x_from.device)[None, :, None]
        path = {n: a[n][:, None] * (1 - t) + b[n][:, None] * t for n in self.latent_names}
        return self.decode(path)

    @torch.no_grad()
    def attribute_vectors(self, x: torch.Tensor, labels: torch.Tensor) -> dict:
        """For each class c of ``labels``: the mean encoding of its datapoints minus the mean
        encoding of all, per latent — added to an encoding, it moves it towards class c."""
        codes = self.encode(x)
        overall = {n: v.mean(0) for n, v in codes.items()}
        return {
            int(c): {n: v[labels == c].mean(0) - overall[n] for n, v in codes.items()}
            for c in labels.unique()
        }

    def extra_repr(self) -> str:
        specs = f"model={self.model_spec.path}, guide={self.guide_spec.path}"
        image = f", image_shape={self.image_shape}" if self.image_shape else ""
        return f"{specs}, data_shape={self.data_shape}{image}"


def _mean(d, draws: int) -> torch.Tensor:
    """The mean of ``d``: closed form where the family has one, else the average of draws."""
    try:
        return d.mean
    except NotImplementedError:
        return d.sample((draws,)).mean(0)


def _total(terms) -> torch.Tensor:
    """The sum of ``terms`` as a loop (torch.compile traces a loop where ``sum`` of a
    generator breaks its graph)."""
    total = 0
    for term in terms:
        total = total + term
    return total


def _padded(value: torch.Tensor, rows: int) -> torch.Tensor:
    """``value`` grown to ``rows`` along its first dimension by repeating its own rows (real
    draws, so the padding's weights are finite; they are dropped)."""
    repeats = -(-rows // value.shape[0])
    return value.repeat(repeats, *([1] * (value.dim() - 1)))[:rows]

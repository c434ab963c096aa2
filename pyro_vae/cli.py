"""The ``pyro-vae`` command line: ``check``, ``train``, ``evaluate``, ``compare``, ``sample``.

User mistakes (a malformed spec, a missing data file, a damaged checkpoint) print one line
``error: <file>: <key>: <what>`` and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import sys
from pathlib import Path

from .data import DATASETS
from .data.arrays import FILE_FORMATS
from .data.dataset import BINARIZATIONS
from .data.registry import DATA_ROOT_ENV
from .data.validation import check_validation
from .devices import resolve_device
from .errors import PyroVaeError, did_you_mean
from .objectives.comparison import DEFAULT_ESTIMATORS
from .objectives.free_bits import FREE_BITS_GROUPS
from .objectives.registry import MAX_PARTICLES, OBJECTIVES, ObjectiveChoice
from .runs.compare import compare_run, compare_training
from .runs.config import LIMITS, TrainConfig
from .runs.schedules import schedule_names
from .runs.selection import CHECKPOINTS


def keyword_defaults(fn) -> dict:
    """The defaults of ``fn``'s keyword parameters: where an option's default is the API's,
    the help reads it from there instead of writing the number a second time."""
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one line (no usage block) through ``main``."""

    def error(self, message):
        raise PyroVaeError(f"{self.prog}: {message}")


def whole(low: int, high: int):
    """argparse type: a whole number in ``[low, high]``, refused before any work starts."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {low:,} to {high:,}, got {text}"
            )
        return value

    return parse


def finite(low: float, above: bool):
    """argparse type: a finite number ``> low`` (``above``) or ``>= low``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not ((value > low) if above else (value >= low)) or value == float("inf"):
            bound = f"> {low:g}" if above else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value + 0.0  # -0.0 as 0

    return parse


positive = finite(0, above=True)  # learning rates, Adam's eps, factors
non_negative = finite(0, above=False)  # the KL weight β


# Upper bounds: far above any sensible run, low enough that a typo is refused before it
# allocates (10⁹ samples) or runs for years.
COUNT = whole(1, 10**7)


def setting(name: str):
    """argparse type for a whole-number setting of ``TrainConfig``, with its bounds."""
    return whole(int(LIMITS[name].low), int(LIMITS[name].high))


SEED = setting("seed")


def components(text: str) -> int | None:
    """argparse type for ``--surgery-components``: "all" (None: the exact sum) or a count."""
    return None if text.strip().lower() == "all" else whole(2, 10**7)(text)


def validation_split(text: str):
    """argparse type of ``--validation``: ``own``, ``auto``, a number of rows or a fraction,
    checked by :func:`~pyro_vae.data.validation.check_validation`."""
    try:
        value = text if text in ("own", "auto") else float(text)
    except ValueError:
        value = text
    if isinstance(value, float) and value >= 1 and value.is_integer():
        value = int(value)
    try:
        check_validation(value)
    except PyroVaeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _cmd_check(args) -> int:
    from .model.families import FAMILIES, Role
    from .model.loading import build_pair
    from .spec.resolve import default_guide, read_guide, read_model

    model = read_model(args.model)
    print(f"model {model.path}" + (f": {model.description}" if model.description else ""))
    for node in model.inputs.values():
        print(f"  {node.name:<6} input     dim={node.options.get('dim', 'data')}")
    for node in [*model.latents.values(), *model.observed_nodes.values()]:
        size_key = FAMILIES.get(node.family).size_key
        size = node.options.get(size_key, "data") if node.role is Role.LATENT else "data"
        extra = {k: v for k, v in node.options.items() if k != size_key and v is not None}
        detail = ", ".join([f"{size_key}={size}"] + [f"{k}={v}" for k, v in extra.items()])
        parents = f"  <- {', '.join(node.given)} via {node.net.describe()}" if node.given else ""
        if node.transition is not None:
            parents = (
                f"  <- {node.name}[t-1] via {node.transition.describe()}, {node.initial} at t=0"
            )
        role = node.role.value
        data = f"  observed where '{node.data}' has a value" if node.partial else ""
        print(f"  {node.name:<6} {role:<9} {node.family}({detail}){parents}{data}")
    guide_arg = args.guide or default_guide(model)
    others = {**model.also_observed, **model.inputs}
    shape = CHECK_SHAPE[1:] if model.sequential else CHECK_SHAPE  # (steps, size) of sequences
    if others:  # a stand-in size for each data node the spec does not size
        shape = {"x": CHECK_SHAPE, **{n: (v.options.get("dim", 8),) for n, v in others.items()}}
    if args.data is not None:  # the data set's own shapes
        from .data import load_dataset
        from .runs.config import data_shapes

        shape = data_shapes(model, load_dataset(args.data, **_data_options(args)))
    if not guide_arg:
        build_pair(model, _placeholder_guide(model), shape)  # builds the model's nets
    if guide_arg:
        guide = read_guide(guide_arg)
        vae = build_pair(model, guide, shape)  # builds every net: catches what parsing cannot
        print(f"guide {guide.path}" + (f": {guide.description}" if guide.description else ""))
        for node in guide.latents.values():
            parents = (
                f"  <- {', '.join(node.given)} via {node.net.describe()}" if node.given else ""
            )
            if node.rnn is not None:
                rnn = ", ".join(f"{k}={v}" for k, v in node.rnn.items())
                parents = f"  <- {node.name}[t-1], rnn({rnn}) over x via {node.net.describe()}"
            options = ", ".join(f"{k}={v}" for k, v in node.options.items() if v is not None)
            print(f"  {node.name:<6} {node.family}{f'({options})' if options else ''}{parents}")
        usable = [n for n in OBJECTIVES.names() if _fewest_particles(n).usable_with(vae)]
        print(f"objectives: {', '.join(usable)}")
    print("ok")
    return 0


def _fewest_particles(name: str) -> ObjectiveChoice:
    """The objective ``name`` with the fewest particles it takes (VIMCO's are 2)."""
    return ObjectiveChoice(name, OBJECTIVES.get(name).min_particles)


#: The datapoint shape ``check`` builds nets for without ``--data``: a small grey image, so
#: that image nets (conv) can be built too.
CHECK_SHAPE = (1, 8, 8)


def _placeholder_guide(model):
    """A guide with one unconditioned site per latent, only to build the model's nets."""
    from .model.families import FAMILIES
    from .spec.parse import GuideSpec, NetSpec, NodeSpec

    family = {"real": "diagonal_normal", "categorical": "categorical"}
    latents = {
        name: NodeSpec(name, f"latent.{name}", family[FAMILIES.get(node.family).support])
        for name, node in model.latents.items()
    }
    for name in model.chains:  # a chain's guide reads z_(t-1) and x_t
        latents[name] = NodeSpec(
            name, f"latent.{name}", "diagonal_normal", ("x",), NetSpec("combiner")
        )
    return GuideSpec("<placeholder guide>", "", "", latents)


def _cmd_train(args) -> int:
    from .model.loading import load
    from .runs.training import resume, train

    if args.resume:
        fixed = [
            f"--{k.replace('_', '-')}"
            for k in RUN_SETTINGS + ("model", "guide", "out", "data", "data_option")
            if k not in ("epochs", "lr") and getattr(args, k) is not None
        ] + (["--download"] if args.download else [])
        if fixed:
            raise PyroVaeError(
                f"--resume continues {args.resume} with its own settings; only --epochs and "
                f"--lr can change, not {', '.join(fixed)}"
            )
        result = resume(
            args.resume,
            epochs=args.epochs,
            lr=args.lr,
            progress=args.progress,
            device=resolve_device(args.device),
        )
    else:
        if args.model is None or args.out is None:
            raise PyroVaeError("train needs --model and --out (or --resume RUN)")
        from .data import load_dataset
        from .runs.config import data_shapes
        from .spec.resolve import read_model

        device = resolve_device(args.device)
        args.data = args.data or "digits"
        dataset = load_dataset(args.data, **_data_options(args))
        vae = load(
            args.model,
            args.guide,
            data_shape=data_shapes(read_model(args.model), dataset),
            seed=args.seed if args.seed is not None else 0,
        )
        settings = {k: getattr(args, k) for k in RUN_SETTINGS if getattr(args, k) is not None}
        result = train(
            vae,
            args.data,
            out=args.out,
            progress=args.progress,
            data_options=_data_options(args),
            device=device,
            **settings,
        )
    final = result.final
    valid = f", validation ELBO {final['valid_elbo']:.2f}" if "valid_elbo" in final else ""
    print(
        f"epoch {final['epoch']}: train ELBO {final['train_elbo']:.2f}, "
        f"test ELBO {final['test_elbo']:.2f}{valid} nats per datapoint"
    )
    if result.best_epoch is not None:
        stopped = result.stopped_early
        print(
            f"best validation ELBO at epoch {result.best_epoch} (best.safetensors)"
            + (f"; stopped early after epoch {stopped}" if stopped is not None else "")
        )
    print(f"run directory: {result.run_dir} (report.md, plots/)")
    return 0


RUN_SETTINGS = (
    "objective",
    "epochs",
    "batch_size",
    "lr",
    "eps",
    "lr_decay",
    "lr_schedule",
    "validation",
    "early_stop",
    "free_bits",
    "free_bits_per",
    "tensorboard",
    "kl_weight",
    "kl_warmup",
    "num_particles",
    "seed",
    "binarization",
    "fused",
    "compile",
)


def _data_options(args) -> dict:
    """``--data-option n_train=500`` pairs (values read as JSON when they parse) and --download."""
    options = {}
    for pair in args.data_option or []:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise PyroVaeError(f"--data-option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(text)
        except ValueError:
            options[key] = text
    if args.download:
        options["download"] = True
    return options


def _cmd_sample(args) -> int:
    import torch

    from .runs.plots import image_grid
    from .runs.run_dir import load_run, run_metadata

    device = resolve_device(args.device)
    if args.interpolate or args.attributes:
        from .runs.latent_space import attribute_grid, interpolation_grid

        plots = Path(args.run) / "plots"
        if args.interpolate:
            path = plots / "interpolations.png"
            print(interpolation_grid(args.run, path, seed=args.seed, device=device))
        if args.attributes:
            print(attribute_grid(args.run, plots / "attributes.png", seed=args.seed, device=device))
        return 0
    out = Path(args.output or Path(args.run) / "plots" / "samples.png")
    if out.suffix.lower() != ".png" or out.is_dir():
        raise PyroVaeError(f"--output {args.output}: expected the path of a .png file")
    vae, config = load_run(args.run, device=device, checkpoint=args.checkpoint)
    torch.manual_seed(args.seed)
    if vae.model_spec.inputs:  # a conditional model: completions of test inputs
        from .runs.conditional import completion_grid
        from .runs.config import prepare_data

        print(completion_grid(vae, prepare_data(vae, config), out, rows=max(1, args.n // 8)))
        return 0
    image_shape = run_metadata(args.run)["image_shape"]
    if vae.model_spec.sequential and vae.likelihood.family.support == "binary":
        image_shape = (1, *vae.data_shape)  # binary sequences as images of T rows of D values
    if not image_shape:
        raise PyroVaeError(f"data set '{config.data}' is not made of images; nothing to draw")
    given = _given_values(vae, args.given or [])
    title = f"{args.n} samples" + "".join(f", {k} = {int(v)}" for k, v in given.items())
    image_grid(vae.sample(args.n, given=given).cpu(), tuple(image_shape), out, title)
    print(out)
    return 0


def _given_values(vae, pairs: list[str]) -> dict:
    """``--given y=3``: a categorical latent held at a value."""
    import torch

    given = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        node = vae.generative[name] if name in vae.latent_names else None
        if node is None or node.family.support != "categorical":
            raise PyroVaeError(
                f"--given {pair!r}: expected NAME=VALUE with NAME a categorical latent of the "
                f"model" + did_you_mean(name, [n for n in vae.latent_names])
            )
        if not text.isdecimal() or int(text) >= node.family.size:
            raise PyroVaeError(
                f"--given {pair!r}: {name} takes a value from 0 to {node.family.size - 1}"
            )
        given[name] = torch.tensor(int(text))
    return given


def _cmd_evaluate(args) -> int:
    from .runs.evaluate import evaluate_run

    device = resolve_device(args.device)
    e = evaluate_run(
        args.run,
        num_samples=args.num_samples,
        elbo_samples=args.elbo_samples,
        max_data=args.max_data,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=args.progress,
        proposal=args.proposal,
        ais=args.ais,
        ais_samples=args.ais_samples,
        ais_steps=args.ais_steps,
        decompose=args.decompose,
        surgery=args.surgery,
        surgery_components=args.surgery_components,
        precision=args.precision,
        compile={"auto": None, "on": True, "off": False}[args.compile],
        device=device,
        checkpoint=args.checkpoint,
    )
    if e is None:  # a process of torchrun other than rank 0: rank 0 reports
        return 0
    print(e)
    print(f"report: {Path(args.run) / 'report.md'}")
    return 0


def _cmd_compare(args) -> int:
    for text in args.estimators or []:  # refuse a misspelt estimator before any work
        ObjectiveChoice.parse(text)
    result = _compare_training(args) if args.train else _compare_estimators(args)
    print(result)
    print(f"report: {Path(result.out) / 'comparison.md'}")
    return 0


def _compare_training(args):
    if args.model is None or args.out is None or args.run is not None:
        raise PyroVaeError("compare --train needs --model and --out (and no run directory)")
    settings = {
        k: getattr(args, k)
        for k in ("epochs", "batch_size", "lr", "seed", "binarization")
        if getattr(args, k) is not None
    }
    return compare_training(
        args.model,
        out=args.out,
        guide=args.guide,
        data=args.data or "digits",
        objectives=args.estimators,
        num_samples=args.num_samples,
        max_data=args.max_data,
        progress=args.progress,
        data_options=_data_options(args),
        device=resolve_device(args.device),
        **settings,
    )


def _compare_estimators(args):
    if (args.run is None) == (args.model is None):
        raise PyroVaeError("compare needs a run directory or --model (not both)")
    return compare_run(
        args.run or args.model,
        guide=args.guide,
        data=args.data,
        out=args.out,
        estimators=args.estimators or DEFAULT_ESTIMATORS,
        repeats=args.repeats,
        num_data=args.num_data,
        reference_samples=args.reference_samples,
        seed=args.seed or 0,
        progress=args.progress,
        data_options=_data_options(args),
        device=resolve_device(args.device),
    )


# -- the parser --------------------------------------------------------------------------------
# An option that several commands take is declared once, in a parent parser (``add_help=False``,
# given as ``parents=[...]``); each command's own options are a parent of its own, listed first,
# so that its help shows them first. Every option's help states its default
# (tests/test_cli_help.py keeps it so). Groups of the same title merge in a command's help.

DESCRIPTION = (
    "Latent-variable models (VAEs and their relatives) declared in TOML specs and run with "
    "Pyro: check a spec, train it, evaluate log p(x) and the ELBO gap, compare ELBO "
    "estimators, draw samples."
)
EPILOG = (
    "Run 'pyro-vae COMMAND --help' for the options of a command. A mistake in the input "
    "(a spec, a data file, an option) prints one line 'error: ...' and exits with status 2."
)
TRAINING = "training"  # the title of the group of training settings in the help
COMPARE_TRAINING = "training, with --train"


def _parent(title: str | None = None):
    """A parser to give as a parent, and where its options go: the group ``title``, or the
    command's plain options."""
    parent = argparse.ArgumentParser(add_help=False)
    return parent, (parent.add_argument_group(title) if title else parent)


def _default(name: str) -> str:
    """The default of the ``TrainConfig`` setting ``name``, as the help states it."""
    return format(getattr(TrainConfig, name), "g")


def _spec_parent(needed: str) -> argparse.ArgumentParser:
    """--model and --guide, of train and compare."""
    parent, group = _parent()
    group.add_argument(
        "--model", metavar="SPEC", help=f"model spec file or bundled name (no default; {needed})"
    )
    group.add_argument(
        "--guide",
        metavar="SPEC",
        help="guide spec file or bundled name (default: the model's default_guide)",
    )
    return parent


def _data_parent(purpose: str, default: str) -> argparse.ArgumentParser:
    """--data, --data-option and --download, of check, train and compare."""
    parent, group = _parent("data")
    formats = "/".join(FILE_FORMATS.names())
    group.add_argument(
        "--data",
        help=f"{purpose}: {', '.join(DATASETS.names())}, or a {formats} file ({default})",
    )
    group.add_argument(
        "--data-option",
        action="append",
        metavar="KEY=VALUE",
        help="a data set option, e.g. n_train=500, the value read as JSON where it parses; "
        "repeatable (default: none)",
    )
    group.add_argument(
        "--download",
        action="store_true",
        help=f"also download missing data files into ${DATA_ROOT_ENV} (default off: files are "
        f"downloaded only into the default cache, when {DATA_ROOT_ENV} is unset)",
    )
    return parent


def _training_parent(title: str) -> argparse.ArgumentParser:
    """The training settings that train and compare --train share (bounds from ``LIMITS``)."""
    parent, group = _parent(title)
    kept = "or a resumed run's own"
    group.add_argument(
        "--epochs",
        type=setting("epochs"),
        help=f"total number of training epochs (default {_default('epochs')}, {kept})",
    )
    group.add_argument(
        "--batch-size",
        type=setting("batch_size"),
        metavar="N",
        help=f"datapoints per training step (default {_default('batch_size')})",
    )
    group.add_argument(
        "--lr", type=positive, help=f"Adam's learning rate (default {_default('lr')}, {kept})"
    )
    group.add_argument(
        "--binarization",
        choices=list(BINARIZATIONS),
        help="make grey data binary once (static) or afresh each epoch (dynamic) (default: "
        "dynamic for a binary likelihood on grey data, else the data as they are)",
    )
    return parent


def _seed_parent(
    what: str, default: int | None = None, title: str | None = None
) -> argparse.ArgumentParser:
    """--seed, of every command but check: ``default`` 0, or None where the command reads
    None as 0."""
    parent, group = _parent(title)
    group.add_argument("--seed", type=SEED, default=default, help=f"seed of {what} (default 0)")
    return parent


def _running_parent(progress: bool = True) -> argparse.ArgumentParser:
    """--device, and --progress where the command shows a progress bar."""
    parent, group = _parent()
    group.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, else MPS, else the CPU), cpu, cuda, cuda:N or mps (default auto)",
    )
    if progress:
        group.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="show a progress bar (default: on a terminal only)",
        )
    return parent


def _command(sub, name: str, summary: str, parents, handler) -> None:
    """Add the command ``name``, its ``summary`` shown in the list of commands and atop its help."""
    p = sub.add_parser(name, parents=parents, help=summary, description=summary)
    p.set_defaults(handler=handler)


def _check_command(sub) -> None:
    own, _ = _parent()
    own.add_argument("model", help="model spec file, or the name of a bundled model")
    own.add_argument(
        "guide",
        nargs="?",
        help="guide spec file or bundled name (default: the model's default_guide; without "
        "one, only the model is checked)",
    )
    data = _data_parent(
        "build the nets for the datapoints of this data set", "default: an 8x8 grey image"
    )
    summary = "validate a model (and guide) spec and print the DAG"
    _command(sub, "check", summary, [own, data], _cmd_check)


def _train_command(sub) -> None:
    own, _ = _parent()
    own.add_argument(
        "--out", metavar="DIR", help="run directory to create (no default; needed without --resume)"
    )
    own.add_argument(
        "--resume",
        metavar="RUN",
        help="continue this run directory with its own settings; only --epochs and --lr may "
        "change (default: a new run)",
    )
    settings, training = _parent(TRAINING)
    training.add_argument("--eps", type=positive, help=f"Adam's eps (default {_default('eps')})")
    training.add_argument(
        "--lr-decay",
        type=positive,
        help=f"per-epoch learning-rate factor (default {_default('lr_decay')}: constant)",
    )
    training.add_argument(
        "--lr-schedule",
        metavar="NAME[:option=value,...]",
        help=f"learning-rate schedule on top of --lr-decay: {schedule_names()}; e.g. "
        f"multistep:milestones=200+350,gamma=0.631 (default none: constant)",
    )
    _selection_options(settings.add_argument_group("validation, free bits and tracking"))
    _objective_options(settings.add_argument_group("objective"))
    parents = [
        _spec_parent("needed without --resume"),
        own,
        _running_parent(),
        _data_parent("data set", "default digits"),
        _training_parent(TRAINING),
        _seed_parent("the initial weights and of training", title=TRAINING),
        settings,
    ]
    _command(sub, "train", "train a model/guide pair with SVI", parents, _cmd_train)


def _selection_options(group) -> None:
    group.add_argument(
        "--validation",
        type=validation_split,
        nargs="?",
        const="auto",
        metavar="own|ROWS|FRACTION",
        help="keep a validation split: the data set's own (binarized-mnist's 10,000), or ROWS "
        "(a FRACTION) of the train rows held out with the seed; alone: its own, else a tenth. "
        "Records the validation ELBO per epoch and keeps best.safetensors (default none)",
    )
    group.add_argument(
        "--early-stop",
        type=whole(1, 10**6),
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a better validation ELBO (needs --validation) "
        "(default: never)",
    )
    group.add_argument(
        "--free-bits",
        type=non_negative,
        metavar="LAMBDA",
        help="free bits (Kingma et al. 2016): each latent group's batch-mean KL counts at least "
        "LAMBDA nats in the training objective (default 0: the ELBO)",
    )
    group.add_argument(
        "--free-bits-per",
        choices=list(FREE_BITS_GROUPS),
        help="a free-bits group: each latent site, or each dim of one (default site)",
    )
    group.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also write each epoch's metrics to RUN/tensorboard (needs pip install "
        "'pyro_vae[tracking]') (default off)",
    )


def _objective_options(group) -> None:
    """train's choice of the objective, its particles, the KL weight and the fused step."""
    group.add_argument(
        "--objective",
        help=f"one of {', '.join(OBJECTIVES.names())}, optionally with settings, e.g. "
        "iwae:k=50 or renyi:k=5,alpha=0.5 (default: trace_mean_field where valid, else trace; "
        "trace_enum for enumerated latents)",
    )
    group.add_argument(
        "--num-particles",
        type=whole(1, MAX_PARTICLES),
        metavar="K",
        help="samples of the latents per datapoint and step, K of the bound for iwae and "
        "iwae_dreg (default 1, or the objective's k=K)",
    )
    group.add_argument(
        "--kl-weight",
        type=non_negative,
        metavar="BETA",
        help="weight β of the KL term of the training ELBO, the β-VAE (default "
        f"{_default('kl_weight')}: the ELBO)",
    )
    group.add_argument(
        "--kl-warmup",
        type=setting("kl_warmup"),
        metavar="EPOCHS",
        help=f"ramp β linearly from 0 over this many epochs (default {_default('kl_warmup')}: "
        "no warm-up)",
    )
    group.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fused single-particle step for trace/trace_mean_field, checked against Pyro's "
        "(default on; --no-fused always steps with Pyro's estimator)",
    )
    group.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the fused step compiled by torch.compile, forward and backward, checked against "
        "Pyro's like the fused step (default off: compiling takes tens of seconds)",
    )


def _evaluate_command(sub) -> None:
    own, _ = _parent()
    own.add_argument("run", help="run directory (made by train)")
    own.add_argument(
        "--num-samples",
        type=COUNT,
        default=1000,
        metavar="K",
        help="K per datapoint (default 1000)",
    )
    own.add_argument(
        "--elbo-samples",
        type=COUNT,
        default=100,
        metavar="N",
        help="samples for the ELBO (default 100)",
    )
    own.add_argument(
        "--max-data",
        type=COUNT,
        metavar="N",
        help="evaluate a seeded random subset of N test datapoints (default: all)",
    )
    own.add_argument(
        "--batch-size",
        type=COUNT,
        default=100,
        metavar="N",
        help="datapoints per pass (default 100)",
    )
    own.add_argument(
        "--proposal",
        choices=["guide", "prior"],
        default="guide",
        help="importance sampling from the guide, or from the prior: naive Monte Carlo "
        "(default guide)",
    )
    own.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="importance sampling and ELBO in float32, or with bfloat16 matrix products "
        "(default fp32)",
    )
    own.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        default="auto",
        type=str.lower,
        help="importance weights by passes compiled with torch.compile: auto turns it on "
        "where the evaluation is large enough to pay for compiling (default auto)",
    )
    _checkpoint_option(own)
    _evaluate_extras(own)
    parents = [own, _seed_parent("the subset and the samples", default=0), _running_parent()]
    summary = "log p(x) by importance sampling, ELBO and their gap"
    _command(sub, "evaluate", summary, parents, _cmd_evaluate)


def _evaluate_extras(own) -> None:
    """evaluate's optional analyses: AIS, the gap decomposition, ELBO surgery."""
    own.add_argument(
        "--ais", action="store_true", help="also estimate log p(x) by AIS (default off)"
    )
    own.add_argument(
        "--ais-samples",
        type=COUNT,
        default=16,
        metavar="N",
        help="AIS chains per datapoint (default 16)",
    )
    own.add_argument(
        "--ais-steps",
        type=COUNT,
        default=500,
        metavar="N",
        help="AIS intermediate densities (default 500)",
    )
    own.add_argument(
        "--decompose",
        action="store_true",
        help="split the gap into approximation and amortization gaps, refining q per "
        "datapoint (default off)",
    )
    own.add_argument(
        "--surgery",
        action="store_true",
        help="ELBO surgery (mutual information, marginal KL), KL per dimension, active units "
        "(default off)",
    )
    own.add_argument(
        "--surgery-components",
        type=components,
        default=None,
        metavar="M|all",
        help="ELBO surgery's aggregate posterior from all N components exactly, in O(N²) "
        "(default all), or from M random ones besides each draw's own and its nearest, in "
        "O(N·M)",
    )


def _compare_command(sub) -> None:
    own, _ = _parent()
    own.add_argument("run", nargs="?", help="run directory (or give --model)")
    own.add_argument(
        "--estimators",
        nargs="+",
        metavar="NAME[:k=K,...]",
        help="estimators, e.g. trace trace_mean_field iwae:k=50 renyi:k=5,alpha=0.5; with "
        f"--train, the training objectives (default {' '.join(DEFAULT_ESTIMATORS)}; with "
        "--train, the model's default objective, iwae:k=5 and iwae:k=50)",
    )
    defaults = keyword_defaults(compare_run)
    own.add_argument(
        "--repeats",
        type=COUNT,
        metavar="R",
        default=defaults["repeats"],
        help=f"repetitions per estimator (default {defaults['repeats']})",
    )
    own.add_argument(
        "--num-data",
        type=COUNT,
        metavar="N",
        default=defaults["num_data"],
        help="how many test datapoints (a seeded random subset) the estimators see (default "
        f"{defaults['num_data']})",
    )
    own.add_argument(
        "--reference-samples",
        type=COUNT,
        metavar="K",
        default=defaults["reference_samples"],
        help=f"K for the reference log p̂(x) (default {defaults['reference_samples']})",
    )
    own.add_argument(
        "--out",
        metavar="DIR",
        help="output directory (default for a run: RUN/compare; needed for a spec or --train)",
    )
    parents = [
        own,
        _spec_parent("needed without a run directory"),
        _seed_parent("the datapoints and estimators, and of the runs with --train"),
        _running_parent(),
        _data_parent("data set", "default: the run's, else digits"),
        _compare_training_parent(),
        _training_parent(COMPARE_TRAINING),
    ]
    summary = (
        "compare ELBO estimators on a run or spec (value, bias, gradient SNR, time), or "
        "with --train, train with each objective and compare the results"
    )
    _command(sub, "compare", summary, parents, _cmd_compare)


def _compare_training_parent() -> argparse.ArgumentParser:
    """compare --train, and how it evaluates each run."""
    parent, group = _parent(COMPARE_TRAINING)
    group.add_argument(
        "--train",
        action="store_true",
        help="train once per objective, then compare the runs (default off)",
    )
    samples = keyword_defaults(compare_training)["num_samples"]
    group.add_argument(
        "--num-samples",
        type=COUNT,
        metavar="K",
        default=samples,
        help=f"K for each run's log p̂(x) (default {samples})",
    )
    group.add_argument(
        "--max-data",
        type=COUNT,
        metavar="N",
        help="evaluate a seeded random subset of N test datapoints (default: all)",
    )
    return parent


def _checkpoint_option(group) -> None:
    group.add_argument(
        "--checkpoint",
        choices=list(CHECKPOINTS),
        default="last",
        help="the weights of the last epoch, or of the best by the validation ELBO "
        "(best.safetensors of a run trained with --validation) (default last)",
    )


def _sample_command(sub) -> None:
    own, _ = _parent()
    own.add_argument("run", help="run directory (made by train)")
    own.add_argument("--n", type=whole(1, 10**4), default=64, help="how many samples (default 64)")
    own.add_argument(
        "--output", metavar="PNG", help="the .png file to write (default: RUN/plots/samples.png)"
    )
    own.add_argument(
        "--interpolate",
        action="store_true",
        help="decode along lines between encodings of test images, into "
        "RUN/plots/interpolations.png (default off)",
    )
    own.add_argument(
        "--attributes",
        action="store_true",
        help="add each class's attribute vector to encodings of test images, using the data "
        "set's labels, into RUN/plots/attributes.png (default off)",
    )
    own.add_argument(
        "--given",
        action="append",
        metavar="NAME=VALUE",
        help="hold a categorical latent at a value, e.g. --given y=3: digits of class 3; "
        "repeatable (default none: every latent drawn from its prior). A model with inputs "
        "draws completions of test inputs instead",
    )
    _checkpoint_option(own)
    parents = [own, _seed_parent("the samples", default=0), _running_parent(progress=False)]
    summary = "draw samples of a trained run as an image grid"
    _command(sub, "sample", summary, parents, _cmd_sample)


def build_parser() -> argparse.ArgumentParser:
    """The ``pyro-vae`` parser: a sub-parser per command, which sets ``args.handler``."""
    parser = _Parser(prog="pyro-vae", description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, title="commands")
    for add in (
        _check_command,
        _train_command,
        _evaluate_command,
        _compare_command,
        _sample_command,
    ):
        add(sub)
    return parser


#: The commands that torchrun can run in several processes (the others run in one).
PARALLEL_COMMANDS = ("train", "evaluate")


def _run(args) -> int:
    """The command, in the processes torchrun started if it did: rank 0 prints and writes."""
    from .runs.distributed import session

    if os.environ.get("WORLD_SIZE", "1") != "1" and args.command not in PARALLEL_COMMANDS:
        raise PyroVaeError(
            f"torchrun runs {' and '.join(PARALLEL_COMMANDS)} in several processes; run "
            f"'{args.command}' in one"
        )
    kind = resolve_device(args.device).type if hasattr(args, "device") else "cpu"
    with session(kind) as w:
        if w.is_main:
            return args.handler(args)
        if hasattr(args, "progress"):
            args.progress = False
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            return args.handler(args)


def entry() -> None:
    """The ``pyro-vae`` command (and ``python -m pyro_vae``): :func:`main`, then exit with its
    code. A process of torchrun leaves at once (``os._exit``) after its command returned, which
    is after every process passed the command's last barrier and left the process group: the
    interpreter's teardown of torch's threads then aborted one worker in a few dozen here
    (SIGABRT, "terminate called without an active exception") with all its work written."""
    code = main()
    if os.environ.get("WORLD_SIZE", "1") != "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(build_parser().parse_args(argv))
    except PyroVaeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`pyro-vae check m | head`): stop quietly
        sys.stderr.close()
        return 0
    except OSError as e:  # the last net under the commands' own checks: a disk, a permission
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            "error: out of memory; lower --batch-size, the number of samples or the model's sizes",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())

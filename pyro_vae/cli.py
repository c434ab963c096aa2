"""The ``pyro-vae`` command line: ``check``, ``train``, ``evaluate``, ``compare``, ``sample``.

User mistakes (a malformed spec, a missing data file, a damaged checkpoint) print one line
``error: <file>: <key>: <what>`` and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from .devices import resolve_device
from .errors import PyroVaeError
from .objectives.registry import MAX_PARTICLES, OBJECTIVES, ObjectiveChoice
from .runs.config import LIMITS


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


def _cmd_check(args) -> int:
    from .model.families import FAMILIES, Role
    from .model.latent_model import LatentModel
    from .spec.resolve import default_guide, read_guide, read_model

    model = read_model(args.model)
    print(f"model {model.path}" + (f": {model.description}" if model.description else ""))
    for node in [*model.latents.values(), model.observed]:
        size_key = FAMILIES.get(node.family).size_key
        size = node.options.get(size_key, "data") if node.role is Role.LATENT else "data"
        extra = {k: v for k, v in node.options.items() if k != size_key and v is not None}
        detail = ", ".join([f"{size_key}={size}"] + [f"{k}={v}" for k, v in extra.items()])
        parents = f"  <- {', '.join(node.given)} via {node.net.describe()}" if node.given else ""
        role = node.role.value
        print(f"  {node.name:<6} {role:<9} {node.family}({detail}){parents}")
    guide_arg = args.guide or default_guide(model)
    shape = CHECK_SHAPE
    if args.data is not None:  # the data set's own shape
        from .data import load_dataset

        natural = load_dataset(args.data, **_data_options(args))
        shape = natural.image_shape or tuple(natural.event_shape)
    if not guide_arg:
        LatentModel(model, _placeholder_guide(model), shape)  # builds the model's nets
    if guide_arg:
        guide = read_guide(guide_arg)
        vae = LatentModel(model, guide, shape)  # builds every net: catches what parsing cannot
        print(f"guide {guide.path}" + (f": {guide.description}" if guide.description else ""))
        for node in guide.latents.values():
            parents = (
                f"  <- {', '.join(node.given)} via {node.net.describe()}" if node.given else ""
            )
            options = ", ".join(f"{k}={v}" for k, v in node.options.items() if v is not None)
            print(f"  {node.name:<6} {node.family}{f'({options})' if options else ''}{parents}")
        usable = [n for n in OBJECTIVES.names() if ObjectiveChoice(n).usable_with(vae)]
        print(f"objectives: {', '.join(usable)}")
    print("ok")
    return 0


#: The datapoint shape ``check`` builds nets for without ``--data``: a small grey image, so
#: that image nets (conv) can be built too.
CHECK_SHAPE = (1, 8, 8)


def _placeholder_guide(model):
    """A guide with one unconditioned site per latent, only to build the model's nets."""
    from .model.families import FAMILIES
    from .spec.parse import GuideSpec, NodeSpec

    family = {"real": "diagonal_normal", "categorical": "categorical"}
    latents = {
        name: NodeSpec(name, f"latent.{name}", family[FAMILIES.get(node.family).support])
        for name, node in model.latents.items()
    }
    return GuideSpec("<placeholder guide>", "", "", latents)


def _cmd_train(args) -> int:
    from .model.latent_model import load
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

        device = resolve_device(args.device)
        args.data = args.data or "digits"
        dataset = load_dataset(args.data, **_data_options(args))
        vae = load(
            args.model,
            args.guide,
            data_shape=dataset.image_shape or tuple(dataset.event_shape),
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
    print(
        f"epoch {final['epoch']}: train ELBO {final['train_elbo']:.2f}, "
        f"test ELBO {final['test_elbo']:.2f} nats per datapoint"
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
    "kl_weight",
    "kl_warmup",
    "num_particles",
    "seed",
    "binarization",
    "fused",
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
    vae, config = load_run(args.run, device=device)
    image_shape = run_metadata(args.run)["image_shape"]
    if not image_shape:
        raise PyroVaeError(f"data set '{config.data}' is not made of images; nothing to draw")
    torch.manual_seed(args.seed)
    image_grid(vae.sample(args.n).cpu(), tuple(image_shape), out, f"{args.n} samples")
    print(out)
    return 0


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
        precision=args.precision,
        device=device,
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
    from .runs.compare import compare_training

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
        num_samples=args.num_samples or 1000,
        max_data=args.max_data,
        progress=args.progress,
        data_options=_data_options(args),
        device=resolve_device(args.device),
        **settings,
    )


def _compare_estimators(args):
    from .objectives.comparison import DEFAULT_ESTIMATORS
    from .runs.compare import compare_run

    if (args.run is None) == (args.model is None):
        raise PyroVaeError("compare needs a run directory or --model (not both)")
    return compare_run(
        args.run or args.model,
        guide=args.guide,
        data=args.data,
        out=args.out,
        estimators=args.estimators or DEFAULT_ESTIMATORS,
        repeats=args.repeats or 100,
        num_data=args.num_data or 100,
        reference_samples=args.reference_samples or 5000,
        seed=args.seed or 0,
        progress=args.progress,
        data_options=_data_options(args),
        device=resolve_device(args.device),
    )


def _add_device(p) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, else MPS, else the CPU), cpu, cuda, cuda:N or mps (default auto)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyro-vae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate a model (and guide) spec and print the DAG")
    p.add_argument("model", help="model spec file, or the name of a bundled model")
    p.add_argument(
        "guide",
        nargs="?",
        help="guide spec file or bundled name (default: the model's default_guide)",
    )
    p.add_argument(
        "--data",
        help="build the nets for this data set's datapoints (default: an 8x8 grey image)",
    )
    p.add_argument("--data-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--download", action="store_true", help="download missing data files")
    p.set_defaults(handler=_cmd_check)

    p = sub.add_parser("train", help="train a model/guide pair with SVI")
    p.add_argument("--model", help="model spec file or bundled name")
    p.add_argument("--guide", help="guide spec file or bundled name (default: the model's)")
    p.add_argument("--data", help="data set name (default: digits)")
    p.add_argument(
        "--objective",
        help=f"one of {', '.join(OBJECTIVES.names())}, optionally with settings, e.g. "
        "iwae:k=50 or renyi:k=5,alpha=0.5 (default: trace_mean_field where valid, else trace; "
        "trace_enum for enumerated latents)",
    )
    p.add_argument("--epochs", type=setting("epochs"))
    p.add_argument("--batch-size", type=setting("batch_size"))
    p.add_argument("--lr", type=positive)
    p.add_argument("--eps", type=positive, help="Adam's eps")
    p.add_argument("--lr-decay", type=positive, help="per-epoch learning-rate factor (default 1)")
    p.add_argument(
        "--kl-weight",
        type=non_negative,
        metavar="BETA",
        help="weight β of the KL term of the training ELBO (the β-VAE; default 1, the ELBO)",
    )
    p.add_argument(
        "--kl-warmup",
        type=setting("kl_warmup"),
        metavar="EPOCHS",
        help="ramp β linearly from 0 over this many epochs (default 0: no warm-up)",
    )
    p.add_argument("--num-particles", type=whole(1, MAX_PARTICLES))
    p.add_argument("--seed", type=SEED)
    p.add_argument("--binarization", choices=["none", "static", "dynamic"])
    p.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fused single-particle step for trace/trace_mean_field, checked against Pyro's "
        "(default on; --no-fused always steps with Pyro's estimator)",
    )
    p.add_argument("--download", action="store_true", help="download missing data files")
    p.add_argument(
        "--data-option",
        action="append",
        metavar="KEY=VALUE",
        help="data set option, e.g. n_train=500 (repeatable)",
    )
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--resume", metavar="RUN", help="continue this run directory")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a terminal)",
    )
    _add_device(p)
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("evaluate", help="log p(x) by importance sampling, ELBO and their gap")
    p.add_argument("run", help="run directory")
    p.add_argument("--num-samples", type=COUNT, default=1000, help="K per datapoint (1000)")
    p.add_argument("--elbo-samples", type=COUNT, default=100, help="samples for the ELBO (100)")
    p.add_argument(
        "--max-data", type=COUNT, help="evaluate a seeded random subset of N test datapoints (all)"
    )
    p.add_argument("--batch-size", type=COUNT, default=100, help="datapoints per pass (100)")
    p.add_argument(
        "--proposal",
        choices=["guide", "prior"],
        default="guide",
        help="importance sampling from the guide, or from the prior (naive Monte Carlo)",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="importance sampling and ELBO in float32, or with bfloat16 matrix products",
    )
    p.add_argument("--ais", action="store_true", help="also estimate log p(x) by AIS")
    p.add_argument("--ais-samples", type=COUNT, default=16, help="AIS chains per datapoint (16)")
    p.add_argument("--ais-steps", type=COUNT, default=500, help="AIS intermediate densities (500)")
    p.add_argument(
        "--decompose",
        action="store_true",
        help="split the gap into approximation and amortization gaps (refines q per datapoint)",
    )
    p.add_argument(
        "--surgery",
        action="store_true",
        help="ELBO surgery (mutual information, marginal KL), KL per dimension, active units",
    )
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    _add_device(p)
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser(
        "compare",
        help="compare ELBO estimators on a run or spec (value, bias, gradient SNR, time), or "
        "with --train, train with each objective and compare the results",
    )
    p.add_argument("run", nargs="?", help="run directory (or give --model)")
    p.add_argument("--model", help="model spec file or bundled name")
    p.add_argument("--guide", help="guide spec file or bundled name (default: the model's)")
    p.add_argument("--data", help="data set name (default: the run's, else digits)")
    p.add_argument(
        "--estimators",
        nargs="+",
        metavar="NAME[:k=K,...]",
        help="estimators, e.g. trace trace_mean_field iwae:k=50 renyi:k=5,alpha=0.5 "
        "(with --train: the training objectives)",
    )
    p.add_argument("--repeats", type=COUNT, help="repetitions per estimator (100)")
    p.add_argument(
        "--num-data",
        type=COUNT,
        help="how many test datapoints (a seeded random subset) the estimators see (100)",
    )
    p.add_argument("--reference-samples", type=COUNT, help="K for the reference log p̂(x) (5000)")
    p.add_argument("--train", action="store_true", help="train once per objective, then compare")
    p.add_argument("--epochs", type=setting("epochs"))
    p.add_argument("--batch-size", type=setting("batch_size"))
    p.add_argument("--lr", type=positive)
    p.add_argument("--binarization", choices=["none", "static", "dynamic"])
    p.add_argument("--num-samples", type=COUNT, help="--train: K for each run's log p̂(x) (1000)")
    p.add_argument(
        "--max-data",
        type=COUNT,
        help="--train: evaluate a seeded random subset of N test datapoints",
    )
    p.add_argument("--download", action="store_true", help="download missing data files")
    p.add_argument("--data-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--out", help="output directory (default for a run: RUN/compare)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    _add_device(p)
    p.set_defaults(handler=_cmd_compare)

    p = sub.add_parser("sample", help="draw samples of a trained run as an image grid")
    p.add_argument("run", help="run directory")
    p.add_argument("--n", type=whole(1, 10**4), default=64, help="how many samples (64)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--output", help="PNG path (default: RUN/plots/samples.png)")
    p.add_argument(
        "--interpolate",
        action="store_true",
        help="decode along lines between encodings of test images (RUN/plots/interpolations.png)",
    )
    p.add_argument(
        "--attributes",
        action="store_true",
        help="add each class's attribute vector to encodings of test images, using the data "
        "set's labels (RUN/plots/attributes.png)",
    )
    _add_device(p)
    p.set_defaults(handler=_cmd_sample)
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

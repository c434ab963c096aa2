"""A hostile user's catalogue of bad inputs, each run through the command line.

Every case must be *handled cleanly*: exit status 2 (or 0 where the input is in fact
acceptable, e.g. a spec mutation that is still valid), at most one line on stderr, no traceback,
and — for cases on a run directory — the run's files unchanged. The catalogue spans the
options of every command, mutated specs, data files, every file of a run directory, and output
paths. ``pytest tests/test_cli_hostile_inputs.py -q`` prints the count; the closing notes of the
hardening work quote it.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae.cli import main
from tests.helpers import REPO

ROOT = REPO
TRAIN = ["train", "--model", "bernoulli_vae", "--guide", "mean_field", "--data", "digits"]
RUN = "{run}"  # replaced by a fresh copy of a finished run
TMP = "{tmp}"  # replaced by the case's own temporary folder


BAD_NUMBERS = ["-1", "0", "1.5", "nan", "inf", "-inf", "1e400", "abc", "", str(2**64), "0x10"]


#: Each command, set to do little when an option turns out acceptable.
QUICK = {
    "train": [*TRAIN, "--epochs", "1", "--out", f"{TMP}/new"],
    "evaluate": ["evaluate", RUN, "--num-samples", "4", "--elbo-samples", "2", "--max-data", "10"],
    "compare": [
        *("compare", RUN, "--estimators", "trace", "--repeats", "2", "--num-data", "5"),
        *("--reference-samples", "10"),
    ],
    "sample": ["sample", RUN, "--n", "4"],
}


def option_cases():
    """Each numeric option of each command with each bad number."""
    numeric = {
        "train": [
            "--epochs",
            "--batch-size",
            "--lr",
            "--eps",
            "--lr-decay",
            "--kl-weight",
            "--kl-warmup",
            "--num-particles",
            "--seed",
        ],
        "evaluate": [
            "--num-samples",
            "--elbo-samples",
            "--max-data",
            "--batch-size",
            "--ais-samples",
            "--ais-steps",
            "--seed",
        ],
        "compare": ["--repeats", "--num-data", "--reference-samples", "--seed"],
        "sample": ["--n", "--seed"],
    }
    for command, flags in numeric.items():
        for flag in flags:
            for value in BAD_NUMBERS:
                argv = [*QUICK[command], flag, value]
                # Some values are fine for some options (0 for --kl-warmup or --seed, 1.5 for
                # --lr): those may run; every other must be refused.
                yield f"{command} {flag} {value!r}", ("argv", argv), None
    for text in [
        "iwae:k=0",
        "iwae:k=-3",
        "iwae:k=1.5",
        "iwae:k=99999999999",
        "iwae:k=abc",
        "iwae:k=5,k=6",
        "iwae:",
        "iwae:k",
        ":k=5",
        "renyi:alpha=nan",
        "renyi:alpha=inf",
        "renyi:alpha=1",
        "renyi:k=5,beta=2",
        "trace_meanfield",
        "trace:k=0",
        "iwae:k=5,,",
        "\x00",
        "iwae:k=" + "9" * 500,
    ]:
        yield f"train --objective {text!r}", ("argv", [*QUICK["train"], "--objective", text]), 2
        yield f"compare --estimators {text!r}", ("argv", [*QUICK["compare"], text]), 2
    for argv in [
        [*TRAIN, "--out", f"{TMP}/new", "--data-option", "n_train"],
        [*TRAIN, "--out", f"{TMP}/new", "--data-option", "colour=3"],
        [*TRAIN, "--out", f"{TMP}/new", "--data", "digitz"],
        [*TRAIN, "--out", f"{TMP}/new", "--data", f"{TMP}/missing.npz"],
        [*TRAIN, "--out", f"{TMP}/new", "--device", "tpu"],
        [*TRAIN, "--out", f"{TMP}/new", "--device", "cuda:7"],
        [*TRAIN, "--out", f"{TMP}/new", "--binarization", "maybe"],
        ["train", "--model", "no_such_model", "--out", f"{TMP}/new"],
        ["train", "--model", f"{TMP}/missing.toml", "--out", f"{TMP}/new"],
        ["train", "--model", "bernoulli_vae"],
        ["train", "--resume", f"{TMP}/missing"],
        ["train", "--resume", RUN, "--batch-size", "10"],
        ["train", "--resume", RUN, "--epochs", "1"],
        ["evaluate", f"{TMP}/missing"],
        ["evaluate", RUN, "--proposal", "posterior"],
        ["evaluate", RUN, "--precision", "fp8"],
        ["evaluate", RUN, "--surgery", "--surgery-components", "1"],
        ["evaluate", RUN, "--surgery", "--surgery-components", "some"],
        ["sample", RUN, "--output", "samples.txt"],
        ["sample", RUN, "--output", f"{TMP}"],
        ["compare"],
        ["compare", RUN, "--model", "bernoulli_vae"],
        ["compare", "--train", "--model", "bernoulli_vae"],
        ["check", "no_such_model"],
        ["check", "bernoulli_vae", "no_such_guide"],
        ["frobnicate"],
        [],
    ]:
        yield f"{' '.join(argv)[:60]}", ("argv", argv), 2


#: Values that replace one value of a bundled spec.
BAD_VALUES = [
    "-1",
    "0",
    "1e20",
    "1e-300",
    "10000000000000000000000000000000",
    '"5"',
    "true",
    "nan",
    "inf",
    "[]",
    "{}",
    '"no_such_thing"',
    "[" * 2000 + "]" * 2000,
]


INLINE_VALUE = re.compile(r'(\w+)\s*=\s*(\[[^\]]*\]|"[^"]*"|[^,}\s]+)')


def spec_cases():
    """The bundled VAE spec with each of its values replaced by each bad value, and a few files
    that are no spec at all."""
    text = (ROOT / "models" / "bernoulli_vae.toml").read_text()
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        targets = [value]
        if "{" in value:  # an inline table: each of its values
            targets = [m.group(2) for m in INLINE_VALUE.finditer(value)]
        for target in targets:
            for bad in BAD_VALUES:
                mutated = list(lines)
                mutated[number] = line.replace(target.strip(), bad, 1)
                spec = "\n".join(mutated) + "\n"
                name = f"spec {key.strip()}: {target.strip()[:20]} -> {bad[:12]}"
                yield name, ("spec", spec), None
    for name, content in [
        ("empty file", b""),
        ("binary file", bytes(range(256)) * 4),
        ("not UTF-8", "dim = 5 # é".encode("latin-1")),
        ("nested brackets", b"x = " + b"[" * 100000),
        ("no latent", b'[observed.x]\nfamily = "bernoulli"\n'),
        ("latent without family", b"[latent.z]\ndim = 5\n"),
        (
            "observed given unknown",
            b'[latent.z]\nfamily="standard_normal"\ndim=2\n'
            b'[observed.x]\nfamily="bernoulli"\ngiven=["w"]\n',
        ),
        (
            "cycle",
            b'[latent.a]\nfamily="normal"\ngiven=["b"]\ndim=2\n'
            b'[latent.b]\nfamily="normal"\ngiven=["a"]\ndim=2\n[observed.x]\nfamily="bernoulli"\n'
            b'given=["a"]\n',
        ),
        ("huge hidden", text.replace("[200, 200]", "[100000, 100000]").encode()),
        ("huge dim", text.replace("dim = 50", "dim = 10000000").encode()),
    ]:
        yield f"spec {name}", ("spec", content), 2


def data_cases():
    """Files given as --data that are no usable data set."""
    rng = np.random.default_rng(0)
    good = rng.random((50, 64)).astype(np.float32)
    with_nan = good.copy()
    with_nan[3, 7] = np.nan
    for name, arrays, expected in [
        ("NaN values", {"x": with_nan}, 2),
        ("inf values", {"x": np.where(good > 0.99, np.inf, good)}, 2),
        ("empty array", {"x": np.zeros((0, 64), np.float32)}, 2),
        ("strings", {"x": np.array(["a", "b"])}, 2),
        ("objects", {"x": np.array([{"a": 1}], dtype=object)}, 2),
        ("one datapoint", {"x": good[:1]}, None),
        ("another width", {"x": rng.random((50, 10)).astype(np.float32)}, None),
        ("complex", {"x": good.astype(np.complex64)}, 2),
        ("no x key", {"y": good}, None),
        ("two arrays, no x", {"a": good, "b": good}, None),
    ]:
        yield f"data {name}", ("npz", arrays), expected
    for name, content in [
        ("truncated npz", None),
        ("random bytes .npz", bytes(random.Random(0).randrange(256) for _ in range(2000))),
        ("text as .npy", b"hello"),
        ("empty .npz", b""),
    ]:
        yield f"data {name}", ("raw", content), 2


def run_file_cases():
    """Damage to each file of a finished run, then each command that reads it."""
    damages = {
        "checkpoint truncated to 0": lambda r: (r / "checkpoint.safetensors").write_bytes(b""),
        "checkpoint truncated to 100": lambda r: _truncate(r / "checkpoint.safetensors", 100),
        "checkpoint truncated to half": lambda r: _truncate(r / "checkpoint.safetensors", 0.5),
        "checkpoint 200 flipped bits": _flip_bits,
        "checkpoint header garbage": lambda r: _overwrite(r / "checkpoint.safetensors", 8, b"{]x"),
        "checkpoint is a pickle": lambda r: torch.save({"x": 1}, r / "checkpoint.safetensors"),
        "checkpoint is a folder": _checkpoint_folder,
        "checkpoint missing": lambda r: (r / "checkpoint.safetensors").unlink(),
        "checkpoint NaN weight": _nan_weight,
        "config.json missing": lambda r: (r / "config.json").unlink(),
        "config.json empty": lambda r: (r / "config.json").write_text(""),
        "config.json a list": lambda r: (r / "config.json").write_text("[1]"),
        "config.json no data_shape": lambda r: _config(r, lambda m: m.pop("data_shape")),
        "config.json no config": lambda r: _config(r, lambda m: m.pop("config")),
        "config.json epochs text": lambda r: _config(r, lambda m: m["config"].update(epochs="x")),
        "config.json lr Infinity": lambda r: _config(r, lambda m: m["config"].update(lr=1e999)),
        "config.json unknown key": lambda r: _config(r, lambda m: m["config"].update(x=1)),
        "config.json objective": lambda r: _config(r, lambda m: m["config"].update(objective=3)),
        "config.json image_shape": lambda r: _config(r, lambda m: m.update(image_shape=[0, 8])),
        "model.toml missing": lambda r: (r / "model.toml").unlink(),
        "model.toml binary": lambda r: (r / "model.toml").write_bytes(bytes(range(256))),
        "guide.toml missing": lambda r: (r / "guide.toml").unlink(),
        "guide.toml other latent": lambda r: (r / "guide.toml").write_text(
            (r / "guide.toml").read_text().replace("latent.z", "latent.w")
        ),
        "metrics.jsonl torn": lambda r: _append(r / "metrics.jsonl", '{"epoch": 3, "tr'),
        "metrics.jsonl binary": lambda r: (r / "metrics.jsonl").write_bytes(b"\xff" * 100),
        "report.json invalid": lambda r: (r / "report.json").write_text("{"),
        "report.json a list": lambda r: (r / "report.json").write_text("[]"),
        "plots is a file": _plots_file,
    }
    commands = {
        "evaluate": ["evaluate", RUN, "--num-samples", "4", "--max-data", "10"],
        "sample": ["sample", RUN, "--n", "4"],
        "resume": ["train", "--resume", RUN, "--epochs", "3"],
    }
    for damage_name, damage in damages.items():
        for command_name, argv in commands.items():
            yield f"{damage_name}, then {command_name}", ("run", damage, argv), None


def output_cases():
    yield "train --out a file", ("file", [*TRAIN, "--epochs", "1", "--out", "{file}"]), 2
    yield "train --out under a file", ("file", [*TRAIN, "--out", "{file}/run"]), 2
    yield "compare --out a file", ("file", [*QUICK["compare"], "--out", "{file}"]), 2
    yield "compare --out under a file", ("file", [*QUICK["compare"], "--out", "{file}/c"]), 2
    yield "sample --output under a file", ("file", ["sample", RUN, "--output", "{file}/s.png"]), 2
    yield "evaluate a file", ("file", ["evaluate", "{file}"]), 2


def _truncate(path: Path, keep) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])


def _overwrite(path: Path, at: int, data: bytes) -> None:
    content = bytearray(path.read_bytes())
    content[at : at + len(data)] = data
    path.write_bytes(bytes(content))


def _flip_bits(run: Path) -> None:
    path = run / "checkpoint.safetensors"
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    rng = random.Random(0)
    for _ in range(200):
        at = rng.randrange(start, len(data))
        data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def _checkpoint_folder(run: Path) -> None:
    (run / "checkpoint.safetensors").unlink()
    (run / "checkpoint.safetensors").mkdir()


def _nan_weight(run: Path) -> None:
    from pyro_vae.runs.checkpoint import Checkpoint, save_checkpoint
    from pyro_vae.runs.run_dir import RunDir

    vae, _ = RunDir(run).build()
    Checkpoint(run / "checkpoint.safetensors").load_into(vae)
    with torch.no_grad():
        next(vae.parameters()).view(-1)[0] = float("nan")
    save_checkpoint(run / "checkpoint.safetensors", vae, info={"epoch": 2})


def _config(run: Path, edit) -> None:
    meta = json.loads((run / "config.json").read_text())
    edit(meta)
    (run / "config.json").write_text(json.dumps(meta))


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def _plots_file(run: Path) -> None:
    subprocess.run(["rm", "-r", str(run / "plots")], check=True)
    (run / "plots").write_text("not a folder")


CASES = [
    *option_cases(),
    *spec_cases(),
    *data_cases(),
    *run_file_cases(),
    *output_cases(),
]


def _prepare(kind, tmp: Path, run: Path):
    """The argv of a case after writing the files it needs; the folder that must not change."""
    if kind[0] == "spec":
        path = tmp / "spec.toml"
        content = kind[1]
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["check", str(path), "mean_field"], None
    if kind[0] in ("npz", "raw"):
        path = tmp / "data.npz"
        if kind[0] == "npz":
            np.savez(path, **kind[1])
        elif kind[1] is None:  # a real file cut short
            np.savez(path, x=np.random.default_rng(0).random((50, 64)))
            _truncate(path, 0.5)
        else:
            path.write_bytes(kind[1])
        return [*TRAIN[:-2], "--data", str(path), "--epochs", "1", "--out", str(tmp / "new")], None
    if kind[0] == "run":
        kind[1](run)
        return kind[2], run
    if kind[0] == "file":
        file = tmp / "notes.txt"
        file.write_text("keep me")
        return [a.replace("{file}", str(file)) for a in kind[1]], tmp
    return kind[1], run


@pytest.mark.parametrize("name, kind, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_handled_cleanly(
    name, kind, expected, finished_run, tmp_path, capsys, snapshot
):
    run = tmp_path / "R"
    subprocess.run(["cp", "-r", str(finished_run), str(run)], check=True)
    argv, guarded = _prepare(kind, tmp_path, run)
    argv = [a.replace(RUN, str(run)).replace(TMP, str(tmp_path)) for a in argv]
    before = snapshot(guarded) if guarded else None
    code = main(argv)  # an exception escaping main is a traceback: the test fails
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    if expected is not None:
        assert code == expected, err
    assert code in (0, 2, 3), (code, err)  # 3: training diverged (e.g. --lr 1.5), said in a line
    if code != 0:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        if guarded is not None:
            assert snapshot(guarded) == before, "a refused command changed the run's files"

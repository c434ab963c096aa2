"""``pyro-vae train`` on the command line: a run trained and not overwritten, data options,
objective settings, and bad options refused in one line before any directory is made."""

import json

import pytest

from pyro_vae.cli import main
from tests.helpers import train_cli


def test_cli_train_and_refuse_to_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        "--model",
        "bernoulli_vae",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--out",
        str(run),
        "--no-progress",
    ]
    assert main(args) == 0
    assert "test ELBO" in capsys.readouterr().out
    before = (run / "checkpoint.safetensors").read_bytes()
    assert main(args) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (run / "checkpoint.safetensors").read_bytes() == before
    assert main(["sample", str(run), "--n", "16"]) == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--data", "digitz"], "did you mean 'digits'"),
        (["--objective", "trace_meanfield"], "did you mean 'trace_mean_field'"),
        (["--data", "mixture-1d"], "binar"),
        (["--objective", "renyi:beta=2"], "no option 'beta' (options: alpha)"),
        (["--objective", "renyi:alpha=1"], "alpha = 1 is the ELBO"),
        (["--objective", "iwae:k=0"], "k must be >= 1"),
        (["--objective", "iwae:k"], "expected name:k=K,option=value"),
    ],
)
def test_cli_train_bad_input_exits_2(tmp_path, capsys, args, words):
    base = {"--model": "bernoulli_vae", "--out": str(tmp_path / "r"), "--epochs": "1"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["train", *[item for pair in base.items() for item in pair]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_data_options(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "linear_gaussian",
        "--data",
        "linear-gaussian",
        "--epochs",
        "1",
        "--data-option",
        "n_train=300",
        "--out",
        str(run),
        "--no-progress",
    ]
    assert main(argv) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["num_train"] == 300 and report["config"]["data_options"] == {"n_train": 300}
    assert main([*argv[:-3], "--data-option", "n_train", "--out", str(tmp_path / "b")]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_cli_objective_settings_reach_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--model", "bernoulli_vae", "--data", "digits", "--epochs", "1"]
    argv += ["--objective", "renyi:k=3,alpha=0.25", "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["objective"], config["num_particles"]) == ("renyi", 3)
    assert config["objective_options"] == {"alpha": 0.25}
    report = (run / "report.md").read_text()
    assert "`renyi` (3 particle(s), alpha = 0.25)" in report
    # --no-fused: the ELBO objectives step with Pyro's estimator.
    argv = ["train", "--model", "bernoulli_vae", "--data", "digits", "--epochs", "1", "--no-fused"]
    assert main([*argv, "--out", str(tmp_path / "pyro"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "pyro" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["step"] == "pyro"


@pytest.mark.parametrize(
    "options, words",
    [
        (["--seed", "-1"], "argument --seed: must be a whole number from 0 to 4,294,967,295"),
        (["--seed", str(2**32)], "argument --seed"),
        (["--lr", "inf"], "argument --lr"),
        (["--lr-decay", "inf"], "argument --lr-decay"),
        (["--kl-weight", "nan"], "argument --kl-weight"),
        (["--eps", "0"], "argument --eps"),
        (["--epochs", "1.5"], "argument --epochs: expected a whole number"),
        (["--batch-size", "0"], "argument --batch-size"),
        (["--num-particles", "99999999999"], "argument --num-particles"),
        (["--objective", "renyi:alpha=nan"], "alpha"),
        (["--objective", "iwae:k=99999999999"], "k"),
    ],
)
def test_bad_options_are_refused_before_any_directory(tmp_path, refused, options, words):
    out = tmp_path / "new"
    refused(train_cli(out, *options), *words)
    assert not out.exists()

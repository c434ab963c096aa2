"""``pyro-vae compare``: estimators compared on a trained run or a bundled spec, objectives trained
the same way (``--train``), and bad input refused."""

import json

import pytest

import pyro_vae as pv
from pyro_vae.cli import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    pv.train(vae, "digits", out=out, epochs=2, batch_size=100, progress=False)
    return out


def test_cli_compare_on_a_run_writes_table_and_plots(tiny_run, capsys):
    argv = ["compare", str(tiny_run), "--estimators", "trace", "iwae:k=3", "iwae_dreg:k=3"]
    argv += ["--repeats", "5", "--num-data", "10", "--reference-samples", "50", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "iwae_dreg(K=3)" in printed and "reference:" in printed
    out = tiny_run / "compare"
    summary = json.loads((out / "comparison.json").read_text())
    assert [r["estimator"] for r in summary["estimators"]] == [
        "trace",
        "iwae(K=3)",
        "iwae_dreg(K=3)",
    ]
    assert summary["num_data"] == 10 and summary["repeats"] == 5
    assert (out / "plots" / "snr_vs_k.png").stat().st_size > 0
    assert "| iwae(K=3) |" in (out / "comparison.md").read_text()


def test_compare_run_returns_what_it_writes(tiny_run, tmp_path):
    out = tmp_path / "cmp"
    result = pv.compare_run(
        tiny_run,
        out=out,
        estimators=("trace", "iwae:k=3"),
        repeats=3,
        num_data=6,
        reference_samples=20,
        progress=False,
    )
    written = json.loads((out / "comparison.json").read_text())
    assert result.to_dict() == written
    assert [r.label for r in result.comparison.results] == ["trace", "iwae(K=3)"]
    # It returned this dict (and "out") before it was typed: the keys still read, with a warning.
    assert list(result.keys()) == [*written, "out"]
    with pytest.warns(DeprecationWarning, match="RunComparison is a typed result"):
        assert result["out"] == str(out) and result["repeats"] == 3


def test_cli_compare_train_trains_each_objective_the_same_way(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--train", "--model", "bernoulli_vae", "--data", "digits", "--out", str(out)]
    argv += ["--estimators", "trace_mean_field", "iwae:k=3", "--epochs", "2", "--no-progress"]
    argv += ["--num-samples", "20", "--max-data", "30"]
    assert main(argv) == 0
    summary = json.loads((out / "comparison.json").read_text())
    assert set(summary["runs"]) == {"trace_mean_field", "iwae(K=3)"}
    for run in summary["runs"].values():
        config = json.loads((tmp_path / run["run"] / "config.json").read_text())["config"]
        assert config["seed"] == 0 and config["epochs"] == 2
        assert run["evaluation"]["num_data"] == 30 and run["evaluation"]["num_samples"] == 20
    assert (out / "plots" / "learning_curves.png").exists()
    # Running it again resumes the finished runs instead of training them anew.
    capsys.readouterr()
    assert main(argv) == 0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["compare", "--estimators", "trace"], "a run directory or --model"),
        (["compare", "--model", "bernoulli_vae"], "give --out"),
        (["compare", "--train", "--model", "bernoulli_vae"], "needs --model and --out"),
        (["compare", "nowhere", "--estimators", "iwea"], "did you mean 'iwae'"),
    ],
)
def test_cli_compare_bad_input_exits_2(argv, words, capsys):
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_cli_compare_on_a_bundled_spec_by_name(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--model", "bernoulli_vae", "--out", str(out), "--estimators", "trace"]
    assert main([*argv, "--repeats", "2", "--num-data", "5", "--reference-samples", "10"]) == 0
    assert json.loads((out / "comparison.json").read_text())["estimators"][0]["estimator"]
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert main([*argv[:3], "--out", str(notes), "--estimators", "trace"]) == 2
    assert "notes.txt: exists and is not a directory" in capsys.readouterr().err
    assert notes.read_text() == "keep me"

"""pyro-vae evaluate on a trained run: the report and its plots, the same numbers whatever the
batch, bad arguments, the gap explained (AIS, its decomposition, ELBO surgery), and the naive
estimator."""

import json
import math
import warnings

import numpy as np
import pytest

import pyro_vae as pv
from pyro_vae.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    pv.train(vae, "digits", epochs=5, out=run, progress=False)
    return run


def test_evaluate_writes_report_and_plots(trained_run, capsys):
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--num-samples",
                "200",
                "--max-data",
                "40",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "log p(x)" in capsys.readouterr().out
    report = json.loads((trained_run / "report.json").read_text())
    e = report["evaluation"]
    assert e["num_data"] == 40 and e["num_samples"] == 200
    # The numbers are those of the trained weights on the run's own (statically binarized)
    # test set: the same seed reproduces them with log_likelihood called directly.
    vae, config = pv.load_run(trained_run)
    dataset = pv.load_dataset("digits", binarization=config.binarization, seed=config.seed)
    arrays = np.load(trained_run / "evaluation.npz")
    # --max-data scores a seeded random subset, recorded row by row, not the first rows.
    rows = dataset.test_indices(40, seed=0)
    assert np.array_equal(arrays["test_index"], rows.numpy()) and rows.max() >= 40
    x = dataset.test[rows]
    direct = pv.log_likelihood(
        vae.model,
        vae.guide,
        x,
        num_samples=200,
        record_at=[1, 10, 100],
        seed=0,
        datapoint_ids=rows,
    )
    assert np.allclose(arrays["log_px"], direct.log_px.numpy(), rtol=0, atol=1e-9)
    # log p̂ lies above the ELBO by far more than its Monte Carlo error (the gap is a KL) ...
    curve = {c["num_samples"]: c for c in e["log_px_by_num_samples"]}
    assert list(curve) == [1, 10, 100, 200]
    assert e["gap"]["mean"] > 4 * e["gap"]["mc_stderr"] > 0
    # ... and with K = 1 it is one sample of the ELBO: the per-datapoint differences from the
    # ELBO estimate average to zero within four standard errors.
    difference = direct.by_num_samples[1][0].numpy() - arrays["elbo"]
    assert abs(difference.mean()) < 4 * difference.std(ddof=1) / np.sqrt(len(difference))
    for name in ("log_px_vs_k", "gap_hist", "khat_hist"):
        assert (trained_run / "plots" / f"{name}.png").stat().st_size > 0
    markdown = (trained_run / "report.md").read_text()
    assert "## Evaluation on the test set (a random subset of 40 of its " in markdown
    assert "## Evaluation" in markdown and "![elbo](plots/elbo.png)" in markdown


def test_evaluate_gives_each_datapoint_the_same_numbers_whatever_the_batch(trained_run):
    keys = ("log_px", "stderr", "ess", "khat", "elbo", "elbo_stderr", "test_index")
    runs = {}
    for batch_size in (7, 100):
        pv.evaluate_run(trained_run, num_samples=100, max_data=30, batch_size=batch_size)
        arrays = np.load(trained_run / "evaluation.npz")
        runs[batch_size] = {k: arrays[k] for k in keys}
    for key in keys:
        assert np.array_equal(runs[7][key], runs[100][key], equal_nan=True), key
    # A larger subset holds the smaller one's rows: they get the same numbers there too.
    pv.evaluate_run(trained_run, num_samples=100, max_data=60, batch_size=100)
    wider = np.load(trained_run / "evaluation.npz")
    where = np.searchsorted(wider["test_index"], runs[7]["test_index"])
    shared = wider["test_index"][where] == runs[7]["test_index"]
    assert shared.sum() >= 10
    assert np.array_equal(wider["log_px"][where][shared], runs[7]["log_px"][shared])


def test_evaluate_bad_arguments_exit_2(trained_run, tmp_path, capsys):
    assert main(["evaluate", str(trained_run), "--num-samples", "0"]) == 2
    assert "argument --num-samples: must be a whole number from 1" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_evaluate_edge_cases(trained_run, tmp_path, capsys):
    assert (
        main(
            ["evaluate", str(trained_run), "--num-samples", "1", "--max-data", "5", "--no-progress"]
        )
        == 0
    )
    e = json.loads((trained_run / "report.json").read_text())["evaluation"]
    assert e["log_px_by_num_samples"] == [
        {"num_samples": 1, "log_px": pytest.approx(e["log_px"]["mean"]), "mc_stderr": None}
    ]
    for flag in ("--batch-size", "--max-data", "--elbo-samples"):
        assert main(["evaluate", str(trained_run), flag, "0"]) == 2
        assert (
            f"{flag}: must be a whole number from 1 to 10,000,000, got 0" in capsys.readouterr().err
        )
    # A run stopped before its report still evaluates, and its report shows the evaluation.
    (trained_run / "report.json").unlink()
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--num-samples",
                "20",
                "--max-data",
                "5",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "## Evaluation" in (trained_run / "report.md").read_text()


# -- the gap explained, and the naive estimator ----------------------------------------------------


def test_evaluate_estimates_the_aggregate_posterior_from_some_components(digits_run):
    argv = ["evaluate", str(digits_run), "--num-samples", "10", "--max-data", "150"]
    assert main([*argv, "--surgery", "--surgery-components", "12", "--no-progress"]) == 0
    s = json.loads((digits_run / "report.json").read_text())["evaluation"]["surgery"]
    assert s["components"] == 12 and s["aggregate_stderr"] > 0 and s["num_data"] == 150
    assert "12 of 150 random components besides" in (digits_run / "report.md").read_text()


def test_evaluate_explains_the_gap_in_its_report(digits_run, capsys):
    argv = [
        "evaluate",
        str(digits_run),
        "--num-samples",
        "100",
        "--max-data",
        "30",
        "--ais",
        "--ais-steps",
        "30",
        "--ais-samples",
        "4",
        "--decompose",
        "--surgery",
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "AIS:" in printed and "approximation" in printed and "mutual information" in printed
    e = json.loads((digits_run / "report.json").read_text())["evaluation"]
    d = e["decomposition"]
    assert d["log_px_from"] == "ais"
    total = e["ais"]["log_px"]["mean"] - e["elbo"]["mean"]
    assert d["approximation_gap"]["mean"] + d["amortization_gap"]["mean"] == pytest.approx(total)
    assert e["surgery"]["mutual_information"] <= math.log(30)
    assert e["surgery"]["components"] == 30 and e["surgery"]["aggregate_stderr"] == 0
    report = (digits_run / "report.md").read_text()
    assert report.index("## In short") < report.index("| setting | value |")
    assert "approximation gap" in report.split("## In short")[1].split("| setting")[0]
    for name in ("is_vs_ais", "gap_decomposition", "surgery", "kl_per_dim"):
        assert (digits_run / e["plots"][name]).stat().st_size > 0
    arrays = np.load(digits_run / "evaluation.npz")
    assert {"ais_log_px", "elbo_refined", "approximation_gap", "amortization_gap"} <= set(arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz
    idata = arviz.from_netcdf(str(digits_run / "evaluation.nc"))
    assert idata.log_likelihood["x"].shape == (1, 1, 30)
    assert np.array_equal(idata.log_likelihood["datapoint"].values, arrays["test_index"])
    assert np.allclose(idata.log_likelihood["x"].values[0, 0], arrays["log_px"])
    assert np.allclose(idata.sample_stats["ais_log_px"].values[0, 0], arrays["ais_log_px"])


def test_evaluate_with_the_prior_as_proposal_is_the_naive_estimator(digits_run):
    naive = pv.evaluate_run(digits_run, num_samples=200, max_data=30, proposal="prior", seed=3)
    assert naive.report.proposal == "prior" and naive.setup.proposal == "prior"
    vae, config = pv.load_run(digits_run)
    dataset = pv.load_dataset("digits", binarization=config.binarization, seed=config.seed)
    rows = dataset.test_indices(30, seed=3)
    direct = pv.log_likelihood(
        vae.model,
        vae.guide,
        dataset.test[rows],
        num_samples=200,
        proposal="prior",
        record_at=[1, 10, 100],
        seed=3,
        datapoint_ids=rows,
    )
    arrays = np.load(digits_run / "evaluation.npz")
    assert np.allclose(arrays["log_px"], direct.log_px.numpy(), rtol=0, atol=1e-9)
    assert "samples from the prior (naive Monte Carlo)" in (digits_run / "report.md").read_text()


def test_evaluate_compile_on_reports_the_compile_time(trained_run, monkeypatch, capsys):
    import pyro_vae.inference.log_likelihood as log_likelihood_module

    compiled = []

    def counting_pass(owner):  # the eager pass standing in for the compiled one, counted
        def score(x, values, from_guide):
            compiled.append(x.shape)
            return owner.pass_log_weights(x, values, from_guide)

        return score

    monkeypatch.setattr(log_likelihood_module, "compiled_pass", counting_pass)
    args = ["evaluate", str(trained_run), "--num-samples", "60", "--max-data", "10"]
    assert main([*args, "--compile", "on", "--no-progress"]) == 0
    report = json.loads((trained_run / "report.json").read_text())["evaluation"]
    assert compiled and report["compile_seconds"] >= 0
    assert "s compiling)" in (trained_run / "report.md").read_text()
    assert main([*args, "--compile", "off", "--no-progress"]) == 0
    report = json.loads((trained_run / "report.json").read_text())["evaluation"]
    assert "compile_seconds" not in report
    capsys.readouterr()
    assert main([*args, "--compile", "sometimes"]) == 2
    assert "argument --compile: invalid choice" in capsys.readouterr().err

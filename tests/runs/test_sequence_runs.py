"""Sequence models through the command line: train, evaluate (with the per-step section and
its plot), sample, and the bad inputs a sequence run can meet."""

import json

import numpy as np
import pytest

from pyro_vae.cli import main


def _small_rows(tmp_path, steps=6, dim=5):
    """A sequence file of binary rows, with lengths."""
    rng = np.random.default_rng(0)
    path = tmp_path / "rows.npz"
    np.savez(
        path,
        train=(rng.random((60, steps, dim)) < 0.3).astype("float32"),
        test=(rng.random((20, steps, dim)) < 0.3).astype("float32"),
        train_lengths=rng.integers(2, steps + 1, 60),
        test_lengths=rng.integers(2, steps + 1, 20),
    )
    return path


@pytest.fixture(scope="module")
def lgssm_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "lgssm"
    options = ["--data-option", "steps=6", "--data-option", "n_train=200", "--data-option",
               "n_test=30", "--data-option", "min_steps=3"]  # fmt: skip
    code = main(["train", "--model", "lgssm", "--data", "lgssm", *options, "--epochs", "2",
                 "--out", str(run)])  # fmt: skip
    assert code == 0
    return run


def test_a_sequence_run_trains_with_the_fused_step_and_draws_its_sequences(lgssm_run):
    metrics = [json.loads(line) for line in (lgssm_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == ["fused", "fused"]
    assert (lgssm_run / "plots" / "sequences.png").stat().st_size > 0
    config = json.loads((lgssm_run / "config.json").read_text())
    assert config["config"]["args"] == ["x", "lengths"]
    assert config["data_shape"] == [6, 4]


def test_evaluate_adds_the_per_step_section(lgssm_run, capsys):
    code = main(["evaluate", str(lgssm_run), "--num-samples", "50", "--ais", "--ais-steps", "5",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "6 time steps; KL per sequence" in out
    report = json.loads((lgssm_run / "report.json").read_text())["evaluation"]
    steps = report["steps"]
    assert steps["steps"] == [1, 2, 3, 4, 5, 6]
    assert steps["datapoints"][0] == 30 and steps["datapoints"][-1] < 30  # lengths 3 to 6
    # The per-step increments add up to a log p̂ of the same datapoints (other samples).
    assert abs(steps["totals"]["log_px"] - report["log_px"]["mean"]) < 1.0
    assert abs(steps["totals"]["elbo"] - report["elbo"]["mean"]) < 1.0
    markdown = (lgssm_run / "report.md").read_text()
    assert "### Per time step" in markdown and "plots/per_step.png" in markdown
    assert (lgssm_run / "plots" / "per_step.png").stat().st_size > 0


def test_a_binary_sequence_run_samples_images_of_its_rows(tmp_path, capsys):
    run = tmp_path / "dmm"
    data = _small_rows(tmp_path)
    spec = tmp_path / "small_dmm.toml"
    spec.write_text(
        'default_guide = "dmm"\n[latent.z]\nfamily = "normal"\ndim = 3\n'
        'transition = { kind = "gated", hidden = 8 }\ninitial = "learned"\n'
        '[observed.x]\nfamily = "bernoulli"\ngiven = ["z"]\nnet = { kind = "mlp", hidden = [8] }\n'
    )
    code = main(["train", "--model", str(spec), "--guide", "dmm", "--data", str(data),
                 "--epochs", "1", "--out", str(run)])  # fmt: skip
    assert code == 0
    assert {"samples.png", "reconstructions.png"} <= {p.name for p in (run / "plots").iterdir()}
    out = tmp_path / "drawn.png"
    assert main(["sample", str(run), "--n", "8", "--output", str(out)]) == 0
    assert out.stat().st_size > 0
    code = main(["sample", str(run), "--interpolate"])
    assert code == 2
    assert "not made of images" in capsys.readouterr().err


def test_a_sequence_model_refuses_flat_data(tmp_path, capsys):
    code = main(["train", "--model", "lgssm", "--data", "digits", "--epochs", "1",
                 "--out", str(tmp_path / "r")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latent.z.transition" in err[0] and "(N, T, D)" in err[0]

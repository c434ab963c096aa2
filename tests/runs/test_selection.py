"""The validation split in training: the validation ELBO per epoch, the best checkpoint kept
beside the last, early stopping, and all of it resumed exactly."""

import json

import pytest
import torch

import pyro_vae as pv
from pyro_vae.runs.checkpoint import Checkpoint
from pyro_vae.runs.selection import BEST, best_epoch, stopped_early
from tests.helpers import SMALL, small_vae, train_cli

#: Digits at a learning rate where the validation ELBO first falls at epoch 4 (seed 0).
NOISY = {**SMALL, "epochs": 8, "lr": 1e-2, "validation": "auto"}


def history(*values):
    return [{"epoch": e, "valid_elbo": v} for e, v in enumerate(values, 1)]


def test_the_best_epoch_and_where_patience_runs_out():
    h = history(-10, -8, -9, -8, -8.5)
    assert best_epoch(h) == 2  # the earliest of equals
    assert stopped_early(h[:3], 1) == 3 and stopped_early(h[:3], 2) is None
    assert stopped_early(h, 3) == 5 and stopped_early(h, None) is None
    assert best_epoch([{"epoch": 1, "train_elbo": -3.0}]) is None


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Eight epochs with a validation split and no early stopping."""
    out = tmp_path_factory.mktemp("selection") / "reference"
    return pv.train(small_vae(), "digits", out=out, **NOISY)


def test_each_epoch_records_the_validation_elbo_and_the_best_weights_are_kept(reference):
    run, h = reference.run_dir, reference.history
    assert all("valid_elbo" in r for r in h)
    best = reference.best_epoch
    assert best == max(h, key=lambda r: r["valid_elbo"])["epoch"] and best != h[-1]["epoch"]
    kept = Checkpoint(run / BEST)
    assert kept.epoch == best and kept.optimizer is None  # weights only
    assert kept.info["valid_elbo"] == h[best - 1]["valid_elbo"]
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["validation"] == len(pv.load_dataset("digits").train) // 10
    report = json.loads((run / "report.json").read_text())
    assert report["best_epoch"] == best and "stopped_early" not in report
    assert "best validation ELBO" in (run / "report.md").read_text()


def test_the_validation_rows_are_not_trained_on(reference):
    digits = pv.load_dataset("digits")
    assert len(reference.dataset.train) + len(reference.dataset.valid) == len(digits.train)


def test_early_stopping_ends_where_patience_runs_out_with_the_same_epochs(tmp_path, reference):
    expected = next(e for e in range(1, 9) if stopped_early(reference.history[:e], 1) is not None)
    assert expected < 8
    stopped = pv.train(small_vae(), "digits", out=tmp_path / "run", early_stop=1, **NOISY)
    assert stopped.stopped_early == expected == len(stopped.history)
    same_but_time = zip(reference.history, stopped.history, strict=False)
    assert stopped.history == [{**r, "seconds": s["seconds"]} for r, s in same_but_time]
    assert json.loads((tmp_path / "run" / "report.json").read_text())["stopped_early"] == expected
    # Resuming a stopped run trains nothing more: its history says it has stopped.
    again = pv.resume(tmp_path / "run", epochs=8, progress=False)
    assert len(again.history) == expected


def test_a_run_with_validation_resumes_exactly(tmp_path, reference):
    pv.train(small_vae(), "digits", out=tmp_path / "b", **{**NOISY, "epochs": 3})
    resumed = pv.resume(tmp_path / "b", epochs=8, progress=False)
    for p, q in zip(reference.vae.state_dict().values(), resumed.vae.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(p, q)
    assert [r["valid_elbo"] for r in resumed.history] == [
        r["valid_elbo"] for r in reference.history
    ]
    assert Checkpoint(tmp_path / "b" / BEST).epoch == reference.best_epoch
    # The report names the specs the run was made from, not the run's own copies.
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["model"].endswith("bernoulli_vae.toml")
    assert "bernoulli_vae / mean_field" in (tmp_path / "b" / "report.md").read_text()


def test_best_weights_lost_after_their_checkpoint_are_restored_on_resume(tmp_path):
    settings = {**NOISY, "epochs": 3}  # the validation ELBO still rises at epoch 3
    trained = pv.train(small_vae(), "digits", out=tmp_path / "run", **settings)
    assert trained.best_epoch == 3
    weights = Checkpoint(tmp_path / "run" / BEST).model
    (tmp_path / "run" / BEST).unlink()  # as if killed between the two writes
    pv.resume(tmp_path / "run", progress=False)
    restored = Checkpoint(tmp_path / "run" / BEST)
    assert restored.epoch == 3
    assert all(torch.equal(weights[k], restored.model[k]) for k in weights)


def test_evaluate_scores_the_best_checkpoint_and_says_so(reference, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(reference.run_dir, run)
    e = pv.evaluate_run(run, num_samples=10, elbo_samples=2, max_data=20, checkpoint="best")
    assert e.report.checkpoint == "best"
    assert e.report.checkpoint_epoch == reference.best_epoch
    assert f"the best checkpoint, epoch {reference.best_epoch}" in str(e)
    report = json.loads((run / "report.json").read_text())
    assert report["evaluation"]["checkpoint"] == "best"


def test_settings_that_need_a_validation_split_are_refused_without_one(tmp_path, refused):
    run = tmp_path / "run"
    refused(train_cli(run, "--early-stop", "3"), "early_stop", "--validation")
    refused(train_cli(run, "--validation", "own"), "no validation split of its own")
    refused(train_cli(run, "--validation", "1.5"), "--validation", "fraction")
    assert not run.exists() or not any(run.iterdir())


def test_evaluating_the_best_checkpoint_of_a_run_without_one_is_refused(run, refused, snapshot):
    before = snapshot(run)
    refused(["evaluate", str(run), "--checkpoint", "best"], "best.safetensors", "--validation")
    assert snapshot(run) == before


def test_sample_draws_from_the_best_checkpoint(reference, tmp_path, capsys):
    from pyro_vae.cli import main

    out = tmp_path / "best.png"
    code = main(["sample", str(reference.run_dir), "--checkpoint", "best", "--output", str(out)])
    assert code == 0 and out.stat().st_size > 0

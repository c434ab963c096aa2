"""Per-epoch metrics to TensorBoard: written where asked, refused cleanly where the package is
missing, never a condition of a run."""

import importlib.util

import pytest

import pyro_vae as pv
from pyro_vae.runs import tracking
from tests.helpers import SMALL, small_vae, train_cli


def test_a_run_writes_each_epochs_metrics_for_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = {**SMALL, "epochs": 3, "validation": "auto", "tensorboard": True}
    result = pv.train(small_vae(), "digits", out=tmp_path / "run", **settings)
    events = EventAccumulator(str(tmp_path / "run" / tracking.FOLDER))
    events.Reload()
    assert {"train_elbo", "test_elbo", "valid_elbo", "seconds"} <= set(events.Tags()["scalars"])
    logged = [(e.step, e.value) for e in events.Scalars("valid_elbo")]
    expected = [(r["epoch"], r["valid_elbo"]) for r in result.history]
    assert [s for s, _ in logged] == [s for s, _ in expected]
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)


def test_without_the_package_it_is_refused_before_any_work(tmp_path, monkeypatch, refused):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    run = tmp_path / "run"
    refused(train_cli(run, "--tensorboard"), "--tensorboard", "pyro_vae[tracking]")
    assert not run.exists() or not any(run.iterdir())


def test_it_needs_a_run_directory():
    with pytest.raises(pv.PyroVaeError, match="run directory"):
        pv.train(small_vae(), "digits", tensorboard=True, **SMALL)

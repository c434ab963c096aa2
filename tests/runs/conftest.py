"""Fixtures of the run tests: a digits run that several files evaluate and draw from."""

import pytest

import pyro_vae as pv


@pytest.fixture(scope="package")
def digits_run(tmp_path_factory):
    """A digits run trained for 3 epochs, once for the tests that evaluate it and draw from it;
    each reads back only what it wrote itself."""
    run = tmp_path_factory.mktemp("runs") / "run"
    pv.train(
        pv.load("bernoulli_vae", data_shape=(64,), seed=0),
        "digits",
        epochs=3,
        out=run,
        progress=False,
    )
    return run

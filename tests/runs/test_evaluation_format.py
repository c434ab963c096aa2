"""evaluation.npz, evaluation.nc and report.json keep their contents: a run evaluated now gives
the arrays and the report section that the format before the typed Evaluation gave (stored in
tests/golden/evaluation_v1), key for key, in the same order, with the same dtypes and values."""

import json

import numpy as np
import pytest

import pyro_vae as pv
from tests.helpers import TESTS

GOLDEN = TESTS / "golden" / "evaluation_v1"
#: Wall-clock and memory readings: they differ from run to run.
MEASURED = {"seconds", "peak_rss_mb"}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    run = tmp_path_factory.mktemp("format") / "run"
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    pv.train(vae, "digits", epochs=2, out=run, progress=False)
    evaluation = pv.evaluate_run(
        run,
        num_samples=50,
        elbo_samples=10,
        max_data=8,
        batch_size=5,
        ais=True,
        ais_samples=4,
        ais_steps=5,
        decompose=True,
        surgery=True,
        progress=False,
    )
    return run, evaluation


def test_evaluation_npz_keeps_its_arrays(evaluated):
    run, evaluation = evaluated
    old, new = np.load(GOLDEN / "evaluation.npz"), np.load(run / "evaluation.npz")
    assert list(new) == list(old)
    for key in old:
        assert new[key].dtype == old[key].dtype and new[key].shape == old[key].shape, key
        if old[key].dtype.kind == "f":
            # The same computation; a tolerance only for another CPU's rounding.
            assert np.allclose(new[key], old[key], rtol=1e-6, atol=1e-9, equal_nan=True), key
        else:
            assert np.array_equal(new[key], old[key]), key
    # The arrays are the typed evaluation's own.
    assert np.array_equal(new["log_px"], evaluation.log_likelihood.log_px.numpy())


def _same(old, new, path=""):
    """Every key of ``old`` is in ``new`` in the same order, with the same value."""
    if isinstance(old, dict):
        assert [k for k in new if k in old] == list(old), path
        for key, value in old.items():
            if key not in MEASURED:
                _same(value, new[key], f"{path}{key}.")
    elif isinstance(old, list):
        assert len(new) == len(old), path
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _same(a, b, f"{path}{i}.")
    elif isinstance(old, float):
        assert new == pytest.approx(old, rel=1e-6, abs=1e-9), path
    else:
        assert new == old, path


def test_the_report_section_keeps_its_keys_and_values(evaluated):
    run, evaluation = evaluated
    old = json.loads((GOLDEN / "evaluation.json").read_text())
    new = json.loads((run / "report.json").read_text())["evaluation"]
    _same(old, new)
    # What it adds: the estimand, and which checkpoint's weights were scored.
    assert set(new) - set(old) == {"estimand", "checkpoint"} and new["checkpoint"] == "last"
    assert new["estimand"]["log_p"] == "log p(x)" and new["estimand"]["observed"] == ["x"]
    assert evaluation.to_dict() == new


def test_evaluation_nc_holds_the_same_arrays(evaluated):
    run, _ = evaluated
    arviz = pytest.importorskip("arviz")
    data = arviz.from_netcdf(str(run / "evaluation.nc"))
    old = np.load(GOLDEN / "evaluation.npz")
    assert np.allclose(data.log_likelihood["x"].values[0, 0], old["log_px"], rtol=1e-6)
    assert np.array_equal(data.log_likelihood["datapoint"].values, old["test_index"])
    assert set(data.sample_stats.data_vars) == set(old) - {"log_px", "test_index"}


def test_code_written_against_the_returned_dict_still_reads_it(evaluated):
    # evaluate_run returned report.json's section as a dict; subscripting the typed result
    # reads the same keys, with a DeprecationWarning pointing to the fields.
    run, evaluation = evaluated
    new = json.loads((run / "report.json").read_text())["evaluation"]
    assert list(evaluation.keys()) == list(new) and "gap" in evaluation
    with pytest.warns(DeprecationWarning, match=r"Evaluation is a typed result.*'gap'"):
        gap = evaluation["gap"]
    assert gap["mean"] == pytest.approx(evaluation.report.gap.mean)
    with pytest.raises(KeyError), pytest.warns(DeprecationWarning):
        evaluation["no such key"]

"""pyro-vae evaluate against estimates that are not numbers and run files that cannot be used.

Non-finite estimates and lost float32 precision are counted, reported and kept out of the
means; a damaged ``report.json``, a ``plots`` that is a file, an unwritable folder or a full
disk is one line ``error: ...`` naming the path, with exit status 2, and the run's files as
they were.
"""

import errno
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import pyro_vae as pv
import pyro_vae.runs.evaluate as evaluate_module
from pyro_vae.cli import main
from pyro_vae.errors import CheckpointError
from pyro_vae.runs.config import prepare_data

#: Small enough for a second or two per evaluation on a 2-core CPU.
MAX_DATA = 40
EVALUATE = ["--num-samples", "30", "--elbo-samples", "5", "--max-data", str(MAX_DATA)]
#: The test pixel whose value switches the broken encoder on (on in ~7% of digits' test rows).
PIXEL = 6


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("evaluate_hardening") / "run"
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    pv.train(vae, "digits", epochs=1, out=run, progress=False)
    return run


@pytest.fixture
def run(trained_run, tmp_path):
    """A fresh copy of a trained 1-epoch digits run (in this module, in place of conftest's copy of
    the 2-epoch run)."""
    copy = tmp_path / "R"
    shutil.copytree(trained_run, copy)
    return copy


def evaluate(run: Path, *extra: str) -> int:
    return main(["evaluate", str(run), *EVALUATE, "--no-progress", *extra])


def break_encoder(monkeypatch, loc: float, everywhere: bool = False) -> None:
    """Evaluate the run with an encoder whose mean is ``loc`` on the datapoints where pixel
    ``PIXEL`` is on (on every datapoint with ``everywhere``), as weights that blew up would
    have it: there z ~ ``loc``, and log p(z) = −z²/2 overflows float32 (``loc`` = 3e38: log p̂
    NaN, ELBO −∞) or is a finite −2.5e27 (``loc`` = 1e13) that float32 rounds in steps of
    ~3e20 nats."""
    load_run = evaluate_module.load_run

    def broken(*args, **kwargs):
        vae, config = load_run(*args, **kwargs)
        first, second, last = (vae.inference["z"].net.layers[i] for i in (0, 2, 4))
        with torch.no_grad():
            # Hidden unit 0 of both tanh layers becomes the indicator of the pixel, exactly
            # 0 or ~1 on binary data; the mean of every latent dimension follows it.
            first.weight[0], first.bias[0] = 0.0, 0.0
            first.weight[0, PIXEL] = 20.0
            second.weight[0], second.bias[0] = 0.0, 0.0
            second.weight[0, 0] = 20.0
            latent = last.out_features // 2
            if everywhere:
                last.bias[:latent] = loc
            else:
                last.weight[:latent, 0] = loc
        return vae, config

    monkeypatch.setattr(evaluate_module, "load_run", broken)


def rows_with_pixel_on(run: Path) -> np.ndarray:
    """Which of the evaluated datapoints (in order) have pixel ``PIXEL`` on."""
    vae, config = pv.load_run(run)
    dataset = prepare_data(vae, config)
    rows = dataset.test_indices(MAX_DATA, seed=0)
    return (dataset.test[rows][:, PIXEL] > 0.5).numpy()


def evaluation(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())["evaluation"]


# -- defect 1: non-finite estimates ----------------------------------------------------------------


def test_nan_log_px_is_counted_reported_and_left_out_of_the_means(run, monkeypatch, capsys):
    bad = rows_with_pixel_on(run)
    n = int(bad.sum())
    assert 0 < n < MAX_DATA
    break_encoder(monkeypatch, 3e38)
    assert evaluate(run) == 0
    out = capsys.readouterr().out
    assert not re.search(r"\bnan\b", out, re.IGNORECASE)
    e = evaluation(run)
    arrays = np.load(run / "evaluation.npz")
    assert np.array_equal(~np.isfinite(arrays["log_px"]), bad)  # kept as computed, per row
    assert e["non_finite"] == {"log_px": n, "elbo": n, "gap": n, "ess": n, "khat": n}
    assert e["num_used"] == MAX_DATA - n
    good = ~bad
    assert e["log_px"]["mean"] == pytest.approx(arrays["log_px"][good].mean())
    assert e["gap"]["mean"] == pytest.approx(arrays["gap"][good].mean())
    assert e["ess_median"] == pytest.approx(np.median(arrays["ess"][good]))
    line = (
        f"{n} of {MAX_DATA} datapoints gave a non-finite log p̂(x), ELBO, gap, ESS and k̂; "
        "excluded from the means."
    )
    assert e["notes"] == [line]
    curve = e["log_px_by_num_samples"]
    assert [c["num_samples"] for c in curve] == [1, 10, 30]
    assert all(math.isfinite(c["log_px"]) for c in curve)
    assert curve[-1]["log_px"] == pytest.approx(e["log_px"]["mean"])
    for name in ("log_px_vs_k", "gap_hist", "khat_hist"):
        assert (run / "plots" / f"{name}.png").stat().st_size > 0
    markdown = (run / "report.md").read_text()
    assert "### Non-finite estimates and precision loss" in markdown
    assert f"- {line}" in markdown
    assert f"(means over {MAX_DATA - n} of {MAX_DATA} datapoints" in markdown
    assert not re.search(r"\bnan\b", markdown, re.IGNORECASE)


def test_a_run_with_no_finite_estimate_skips_its_plots_with_a_note(run, monkeypatch, capsys):
    break_encoder(monkeypatch, 3e38, everywhere=True)
    assert evaluate(run) == 0
    out = capsys.readouterr().out
    assert re.search(r"log p̂\(x\), importance sampling +– +– +–$", out, re.MULTILINE)
    e = evaluation(run)
    assert e["num_used"] == 0 and e["log_px"]["mean"] is None and e["ess_median"] is None
    assert e["non_finite"]["log_px"] == MAX_DATA
    assert all(c["log_px"] is None for c in e["log_px_by_num_samples"])
    assert e["plots"] == {}
    assert set(e["plots_skipped"]) == {"log_px_vs_k", "gap_hist", "khat_hist"}
    assert not (run / "plots" / "log_px_vs_k.png").exists()
    markdown = (run / "report.md").read_text()
    assert "Plot `log_px_vs_k` skipped: nothing finite to draw." in markdown
    assert f"{MAX_DATA} of {MAX_DATA} datapoints gave a non-finite log p̂(x)" in markdown


# -- defect 2: log weights too large for float32 ---------------------------------------------------


def test_lost_precision_is_flagged_and_its_gaps_not_shown(run, monkeypatch, capsys):
    bad = rows_with_pixel_on(run)
    n = int(bad.sum())
    break_encoder(monkeypatch, 1e13)
    assert evaluate(run) == 0
    capsys.readouterr()
    arrays = np.load(run / "evaluation.npz")
    # What float32 makes of it: finite estimates, a log p̂ equal to the ELBO, ESS = K.
    assert np.isfinite(arrays["log_px"]).all()
    assert np.abs(arrays["log_px"][bad]).min() > 1e27
    assert np.array_equal(arrays["precision_lost"], bad)
    e = evaluation(run)
    lost = e["precision_lost"]
    assert lost["num_data"] == n and lost["dtype"] == "float32"
    assert lost["max_abs_log_weight"] == pytest.approx(2.5e27, rel=1e-3)
    assert lost["spacing"] == float(np.spacing(np.float32(lost["max_abs_log_weight"])))
    assert e["notes"] == [
        f"precision lost on {n} of {MAX_DATA} datapoints: |log w| up to 2.5e+27 nats, float32 "
        "spacing 3e+20 nats there (more than 0.1 nat); their gap, ESS and k̂ are rounding "
        "noise, not shown, and they are excluded from the means."
    ]
    good = ~bad
    assert e["num_used"] == MAX_DATA - n
    assert e["gap"]["mean"] == pytest.approx(arrays["gap"][good].mean())
    assert -100 < e["log_px"]["mean"] < 0 and e["ess_median"] < 20
    assert "precision lost on" in (run / "report.md").read_text()


# -- defect 3: run files that cannot be read or written --------------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("{", ["report.json: damaged: not valid JSON"]),
        ("[1, 2]", ["report.json: damaged report (a JSON list, not an object)"]),
        ('{"config": {}}', ["report.json: damaged report (no key 'model')"]),
        (b"\xff\xfe", ["report.json: damaged: not a UTF-8 text file"]),
    ],
)
def test_a_damaged_report_is_refused_before_any_work(
    run, refused, monkeypatch, text, words, snapshot
):
    path = run / "report.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = snapshot(run)

    def never(*args, **kwargs):
        raise AssertionError("the run was loaded before its report was checked")

    monkeypatch.setattr(evaluate_module, "load_run", never)
    refused(["evaluate", str(run), "--no-progress"], str(path), *words)
    assert snapshot(run) == before
    with pytest.raises(CheckpointError, match="report.json"):
        pv.evaluate_run(run)


def test_a_report_that_is_an_evaluation_alone_is_extended(run, capsys):
    (run / "report.json").write_text("{}\n")
    assert evaluate(run) == 0
    assert "## Evaluation" in (run / "report.md").read_text()


def test_plots_that_is_a_file_is_refused(run, refused, snapshot):
    shutil.rmtree(run / "plots")
    (run / "plots").write_text("not a folder")
    before = snapshot(run)
    refused(["evaluate", str(run)], f"{run / 'plots'}: exists and is not a directory")
    assert snapshot(run) == before
    refused(
        ["sample", str(run), "--interpolate"],
        f"{run / 'plots'}: exists and is not a directory",
    )
    refused(["sample", str(run)], f"{run / 'plots'}: exists and is not a directory")
    assert snapshot(run) == before


@pytest.mark.parametrize("folder", ["run", "plots"])
def test_a_read_only_folder_is_refused_before_any_work(run, monkeypatch, folder, refused, snapshot):
    target = run if folder == "run" else run / "plots"
    before = snapshot(run)
    if os.geteuid() == 0:  # root ignores permissions: the system's refusal, simulated
        touch = Path.touch

        def denied(self, *args, **kwargs):
            if self.parent == target:
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return touch(self, *args, **kwargs)

        monkeypatch.setattr(Path, "touch", denied)
    else:
        os.chmod(target, 0o500)
    try:
        refused(["evaluate", str(run)], f"{target}: cannot be written to (Permission denied)")
    finally:
        os.chmod(target, 0o755)
    assert snapshot(run) == before


def test_a_full_disk_leaves_the_previous_evaluation_as_it_was(
    run, capsys, monkeypatch, refused, snapshot
):
    quick = ["evaluate", str(run), "--num-samples", "5", "--max-data", "8", "--no-progress"]
    assert main([*quick, "--elbo-samples", "2"]) == 0
    capsys.readouterr()
    before = snapshot(run)

    def full(file, **arrays):
        file.write(b"half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evaluate_module.np, "savez", full)
    refused(
        [*quick, "--seed", "1"],
        f"{run / 'evaluation.npz'}: cannot be written (No space left on device); it is left as "
        "it was",
    )
    assert snapshot(run) == before  # and no temporary file left behind
    monkeypatch.undo()

    write_text = Path.write_text

    def full_report(self, text, *args, **kwargs):
        if "report" in self.name:
            write_text(self, text[:10], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_report)
    refused(
        [*quick, "--seed", "1"],
        f"{run / 'report.json'}: cannot be written (No space left on device)",
    )
    after = snapshot(run)
    assert after["report.json"] == before["report.json"]
    assert after["report.md"] == before["report.md"]
    assert not [p for p in after if p.endswith(".tmp")]

"""Conditional and semi-supervised models through runs and the command line: the bundled cvae
on digits cut in halves (an npz with an input column), the bundled ss_vae on digits with 50
labels; their estimands, the classifier's accuracy, conditional draws, and bad input."""

import json

import numpy as np
import pytest
import torch

import pyro_vae as pv
from pyro_vae.bundled import bundled_dir
from pyro_vae.cli import main
from pyro_vae.data import load_dataset
from tests.helpers import model_file, one_line_error


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """digits as an npz: the left half of each image the input ``left``, the right half x."""
    digits = load_dataset("digits")
    folder = tmp_path_factory.mktemp("halves")
    arrays = {}
    for split in ("train", "test"):
        images = getattr(digits, split).reshape(-1, 8, 8)
        arrays[split] = images[:, :, 4:].reshape(len(images), -1).numpy()
        arrays[f"{split}_left"] = images[:, :, :4].reshape(len(images), -1).numpy()
    path = folder / "halves.npz"
    np.savez(path, **arrays)
    return path


def _train(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_cvae_trains_and_evaluates_log_p_x_given_c(tmp_path, halves, capsys):
    model = model_file(tmp_path, _cvae_text(), "cvae.toml")
    run = tmp_path / "run"
    _train(["train", "--model", str(model), "--guide", "cvae", "--data", str(halves),
            "--epochs", "2", "--out", str(run), "--no-progress"], capsys)  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["args"] == ["x", "left"] and config["data_sizes"] == {"c": 32}
    out = _train(["evaluate", str(run), "--num-samples", "20", "--max-data", "30"], capsys)
    assert "log p̂(x | c), importance sampling" in out
    report = json.loads((run / "report.json").read_text())["evaluation"]
    assert report["estimand"]["given"] == ["c"]


def _bundled(name: str) -> str:
    return (bundled_dir("models") / f"{name}.toml").read_text()


def _cvae_text():
    """The bundled cvae with small nets and its input read from the column ``left``."""
    text = _bundled("cvae")
    return (
        text.replace('data = "given"', 'data = "left"')
        .replace("[500, 500]", "[16]")
        .replace("dim = 200", "dim = 4")
    )


def test_ss_vae_trains_with_labels_apart_and_reports_accuracy(tmp_path, capsys):
    run = tmp_path / "m2"
    _train(["train", "--model", "ss_vae", "--data", "digits", "--data-option", "labelled=50",
            "--epochs", "2", "--out", str(run), "--no-progress"], capsys)  # fmt: skip
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["objective"] == "trace_enum" and config["objective_options"] == {"classify": 46}
    assert config["data_options"] == {"labelled": 50} and config["args"] == ["x", "labels"]
    out = _train(["evaluate", str(run), "--num-samples", "10", "--max-data", "40"], capsys)
    assert "log p̂(x), importance sampling" in out and "accuracy of q(y | x)" in out
    section = json.loads((run / "report.json").read_text())["evaluation"]["classification"]
    assert section[0]["node"] == "y" and section[0]["num_data"] == 40
    assert 0 <= section[0]["accuracy"] <= 1
    assert (run / "plots" / "samples_by_y.png").exists()
    _train(["sample", str(run), "--given", "y=3", "--n", "8"], capsys)
    assert main(["sample", str(run), "--given", "y=10"]) == 2
    assert "y takes a value from 0 to 9" in capsys.readouterr().err


def test_training_batches_keep_labelled_and_unlabelled_rows_apart(tmp_path):
    small = _bundled("ss_vae").replace("[500]", "[16]").replace("dim = 50", "dim = 2")
    vae = pv.load(model_file(tmp_path, small), "ss_vae", data_shape=(64,), seed=0)
    seen = []
    real = vae.model

    def model(x, labels=None):  # None: the test ELBO, which sums the label out
        if labels is not None:
            seen.append(bool((labels >= 0).all() or (labels < 0).all()))
        return real(x, labels)

    vae.model = model
    pv.train(vae, "digits", data_options={"labelled": 30}, epochs=1, batch_size=64)
    assert seen and all(seen)


@pytest.mark.parametrize(
    "edit, data, words",
    [
        # an input the data set does not have
        (lambda t: t, "digits", ["input.c", "has no array 'given'"]),
        # an observed node without data
        (lambda t: t.replace('data = "given"', 'data = "left"') + _EXTRA_OBSERVED, None,
         ["observed.y", "has no array 'y'"]),
    ],
)  # fmt: skip
def test_data_nodes_without_data_are_refused_naming_the_file_and_key(
    tmp_path, halves, capsys, edit, data, words
):
    model = model_file(tmp_path, edit(_bundled("cvae")), "cv.toml")
    args = ["train", "--model", str(model), "--guide", "cvae", "--data", data or str(halves)]
    assert main([*args, "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cv.toml" in err, err
    for word in words:
        assert word in err, err
    assert not (tmp_path / "r").exists()


_EXTRA_OBSERVED = """
[observed.y]
family = "normal"
given = ["z"]
net = { kind = "linear" }
"""


def test_a_label_outside_its_categories_is_refused(tmp_path, capsys):
    text = _bundled("ss_vae")
    model = model_file(tmp_path, text.replace("categories = 10", "categories = 5"), "m2.toml")
    args = ["train", "--model", str(model), "--guide", "ss_vae", "--data", "digits"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "m2.toml: latent.y" in err and "outside its 5 categories" in err, err


def test_rows_of_an_input_that_do_not_match_are_refused(tmp_path, capsys):
    digits = load_dataset("digits")
    path = tmp_path / "short.npz"
    train, test = digits.train.numpy(), digits.test.numpy()
    np.savez(path, train=train, test=test, train_left=train[:-5, :32], test_left=test[:, :32])
    text = _cvae_text()
    model = model_file(tmp_path, text, "cv.toml")
    args = ["train", "--model", str(model), "--guide", "cvae", "--data", str(path)]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "left" in err and "rows" in err, err


def test_labelled_needs_labels_and_a_count_in_range():
    one_line_error(pv.DataError, lambda: load_dataset("digits", labelled=0), "labelled", "1 to")
    one_line_error(
        pv.DataError, lambda: load_dataset("linear-gaussian", labelled=5), "has no labels"
    )


def test_conditional_sample_draws_completions():
    torch.manual_seed(0)
    vae = pv.load("cvae", data_shape={"x": (4,), "c": (3,)}, seed=0)
    drawn = vae.sample(5, given={"c": torch.zeros(1, 3)})
    assert drawn.shape == (5, 4)
    one_line_error(ValueError, lambda: vae.sample(2), "inputs ['c']")

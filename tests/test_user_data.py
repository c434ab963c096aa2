"""Your own data (.npz / .npy), labels, image shapes, and data matched to the likelihood."""

import json
import textwrap

import numpy as np
import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import main


def grey(n, *shape, seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def test_npz_with_labels_and_images_loads_flat_with_its_image_shape(tmp_path):
    path = tmp_path / "mine.npz"
    labels = np.arange(30) % 3
    np.savez(
        path,
        train=grey(30, 5, 4),
        test=grey(10, 5, 4, seed=1),
        train_labels=labels,
        test_labels=labels[:10],
    )
    data = pv.load_dataset(str(path))
    assert data.train.shape == (30, 20) and data.image_shape == (1, 5, 4)
    assert torch.equal(data.train_labels, torch.as_tensor(labels))
    assert torch.equal(data.train[3], torch.as_tensor(grey(30, 5, 4)[3].reshape(-1)))
    assert data.options["sha256"] and data.name == str(path)
    colour = tmp_path / "colour.npz"
    np.savez(colour, train=grey(6, 3, 2, 2), test=grey(2, 3, 2, 2))
    assert pv.load_dataset(str(colour)).image_shape == (3, 2, 2)


def test_npy_is_split_with_a_fixed_seed_and_the_split_is_recorded(tmp_path):
    path = tmp_path / "one.npy"
    np.save(path, grey(100, 6))
    a = pv.load_dataset(str(path), seed=3)
    b = pv.load_dataset(str(path), seed=4)  # the training seed does not move the split
    assert a.train.shape == (90, 6) and a.test.shape == (10, 6) and torch.equal(a.test, b.test)
    assert a.options["test_fraction"] == 0.1 and a.options["split_seed"] == 0
    other = pv.load_dataset(str(path), split_seed=1, test_fraction=0.25)
    assert other.test.shape == (25, 6) and not torch.equal(other.test[:10], a.test)
    # Every row lands in exactly one split.
    rows = torch.cat([a.train, a.test])
    assert torch.equal(rows.sort(0).values, torch.as_tensor(grey(100, 6)).sort(0).values)


def bad_files(tmp_path):
    """(file, what to write, words of the one-line error)."""
    nan = grey(10, 4)
    nan[3, 1] = np.nan
    yield "nan.npz", dict(train=nan, test=grey(5, 4)), "nan.npz: train: 1 NaN value at row 3"
    yield (
        "shapes.npz",
        dict(train=grey(10, 4), test=grey(5, 5)),
        "different shapes: train (4,), test (5,)",
    )
    yield "notest.npz", dict(train=grey(10, 4)), "has no array 'test'"
    yield (
        "extra.npz",
        dict(train=grey(10, 4), test=grey(5, 4), tset=grey(2, 4)),
        "unknown array 'tset'",
    )
    yield (
        "labels.npz",
        dict(train=grey(10, 4), test=grey(5, 4), train_labels=np.arange(9)),
        "9 labels for 10 datapoints",
    )
    yield "text.npz", dict(train=np.array([["a", "b"]] * 3), test=grey(5, 2)), "are not numbers"
    yield "flat.npy", np.arange(10.0), "shape (10,); expected (N, D), (N, H, W) or (N, C, H, W)"
    yield (
        "huge.npy",
        np.full((10, 2), 1e300),
        "(as 32-bit floats): 20 infinite values, the first at row 0",
    )
    yield "objects.npy", np.array([{"a": 1}] * 3, dtype=object), "without pickle"


def test_bad_data_files_get_one_line_naming_file_and_problem(tmp_path, capsys):
    for name, content, words in bad_files(tmp_path):
        path = tmp_path / name
        if name.endswith(".npz"):
            np.savez(path, **content)
        else:
            np.save(path, content, allow_pickle=True)
        with pytest.raises(pv.DataError) as caught:
            pv.load_dataset(str(path))
        assert words in str(caught.value), (name, str(caught.value))
        argv = [
            "train",
            "--model",
            "gaussian_vae",
            "--data",
            str(path),
            "--out",
            str(tmp_path / "r"),
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and "Traceback" not in err
        assert not (tmp_path / "r").exists()
    with pytest.raises(pv.DataError, match="missing.npz: no such file"):
        pv.load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(pv.DataError, match="option 'test_fraction' must be a number in"):
        pv.load_dataset(str(tmp_path / "flat.npy"), test_fraction=1.5)
    with pytest.raises(pv.DataError, match="has no option 'n_train'"):
        pv.load_dataset(str(tmp_path / "nan.npz"), n_train=3)


def test_a_run_on_a_file_records_it_and_refuses_it_once_changed(tmp_path, capsys):
    path = tmp_path / "mine.npy"
    np.save(path, grey(120, 8))
    run = tmp_path / "run"
    argv = ["train", "--model", "gaussian_vae", "--data", str(path), "--epochs", "1"]
    assert main([*argv, "--out", str(run), "--no-progress"]) == 0
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["data"] == str(path.resolve())
    assert set(config["data_options"]) == {"sha256", "test_fraction", "split_seed"}
    assert main(["evaluate", str(run), "--num-samples", "5", "--no-progress"]) == 0
    np.save(path, grey(120, 8, seed=5))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--num-samples", "5", "--no-progress"]) == 2
    assert "the data changed since" in capsys.readouterr().err


CB_MODEL = textwrap.dedent("""
    [latent.z]
    family = "standard_normal"
    dim = 4
    [observed.x]
    family = "continuous_bernoulli"
    given = ["z"]
    net = { kind = "mlp", hidden = [32] }
""")


def test_continuous_bernoulli_trains_on_grey_levels_and_refuses_data_outside_0_1(tmp_path):
    spec = tmp_path / "cb.toml"
    spec.write_text(CB_MODEL)
    vae = pv.load(spec, "mean_field", data_shape=(64,), seed=0)
    result = pv.train(vae, "digits", epochs=2, progress=False)
    assert result.config.binarization == "none"  # grey levels are its data: no binarization
    assert not result.dataset.is_binary
    # A normalized density on [0, 1]: its log density integrates to 1 (checked numerically).
    px = vae.likelihood({"z": torch.zeros(1, 4)})
    grid = torch.linspace(0, 1, 20001)[:, None].expand(-1, 64)
    density = px.base_dist.log_prob(grid)[:, 0].exp()
    assert torch.trapezoid(density, dx=1 / 20000).item() == pytest.approx(1.0, abs=1e-4)
    outside = tmp_path / "outside.npy"
    np.save(outside, grey(50, 64) * 1.5)
    with pytest.raises(
        pv.DataError,
        match=r"cb.toml: observed.x.family: 'continuous_bernoulli' "
        r"needs values in \[0, 1\], but .*outside.npy' has values in \[0.*, 1.4",
    ):
        pv.train(pv.load(spec, "mean_field", data_shape=(64,)), str(outside), epochs=1)


def test_labels_are_kept_and_follow_the_split():
    from sklearn.datasets import load_digits

    digits = pv.load_dataset("digits")
    assert digits.train_labels.shape == (1500,) and digits.test_labels.shape == (297,)
    raw = load_digits()
    images = torch.as_tensor(raw.data, dtype=torch.float32) / 16
    for split, labels in ((digits.train, digits.train_labels), (digits.test, digits.test_labels)):
        for i in (0, 7, len(split) - 1):
            (row,) = (images == split[i]).all(1).nonzero()[:1, 0].tolist()
            assert raw.target[row] == labels[i].item()
    binarized = pv.load_dataset("digits", binarization="static")
    assert torch.equal(binarized.test_labels, digits.test_labels)


def test_image_shaped_data_shape_builds_flat_models():
    vae = pv.load("bernoulli_vae", data_shape=(1, 8, 8), seed=0)
    assert vae.data_shape == (64,) and vae.image_shape == (1, 8, 8)
    assert pv.load("bernoulli_vae", data_shape=(8, 8)).image_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="data_shape must be"):
        pv.load("bernoulli_vae", data_shape=(1, 2, 2, 2))

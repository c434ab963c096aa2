"""Tests of the data layer: registry, binarization, batching, synthetic truth, files, downloads."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae.data import DATASETS, Dataset, data_root, load_dataset
from pyro_vae.data import binarized_mnist as binarized_mnist_module
from pyro_vae.data import mnist as mnist_module
from pyro_vae.data.files import check_finite, fetch_verified
from pyro_vae.errors import DataError

# The reference copies of the real data sets sit beside the repository, in ../shared/data.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HAVE_MNIST = (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists()
HAVE_BINARIZED_MNIST = (SHARED_DATA / "binarized-mnist" / "binarized_mnist.npz").exists()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"no MNIST copy in {SHARED_DATA}")
needs_binarized_mnist = pytest.mark.skipif(
    not HAVE_BINARIZED_MNIST, reason=f"no binarized MNIST copy in {SHARED_DATA}"
)


@pytest.fixture(autouse=True)
def isolated_data_root(monkeypatch, tmp_path):
    """No test may read the user's cache or download from the internet by accident."""
    monkeypatch.delenv("PYRO_VAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", ["http://127.0.0.1:9/unreachable/"])
    monkeypatch.setattr(
        binarized_mnist_module, "BINARIZED_MNIST_MIRRORS", ["http://127.0.0.1:9/unreachable/"]
    )
    # Local test servers must be reached directly, even where a proxy is configured.
    for proxy_variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(proxy_variable, raising=False)


@pytest.fixture
def serve():
    """``serve(directory) -> base URL`` of an HTTP server on 127.0.0.1 for that directory."""
    servers = []

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(directory: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def sha256_of_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# --- registry and options ---------------------------------------------------------------------


def test_registered_names():
    assert DATASETS.names() == [
        "binarized-mnist",
        "digits",
        "linear-gaussian",
        "mixture-1d",
        "mnist",
    ]


def test_unknown_name_suggests_closest():
    with pytest.raises(DataError, match="unknown data set 'mnits'; did you mean 'mnist'"):
        load_dataset("mnits")


def test_unknown_option_is_named():
    with pytest.raises(DataError, match="no option 'n_trian'; did you mean 'n_train'"):
        load_dataset("mixture-1d", n_trian=10)
    with pytest.raises(DataError, match=r"'digits' has no option 'n_train' \(it takes none\)"):
        load_dataset("digits", n_train=10)


def test_bad_option_value():
    with pytest.raises(DataError, match="'n_train' must be a positive integer, got 0"):
        load_dataset("mixture-1d", n_train=0)
    with pytest.raises(DataError, match="'dim' must be a positive integer, got 2.5"):
        load_dataset("linear-gaussian", dim=2.5)
    with pytest.raises(DataError, match="'sigma' must be positive, got -1"):
        load_dataset("linear-gaussian", sigma=-1)
    with pytest.raises(DataError, match="'include_valid' must be true or false"):
        load_dataset("binarized-mnist", include_valid="yes")


def test_unknown_binarization_suggests_closest():
    with pytest.raises(DataError, match="unknown binarization 'statc'; did you mean 'static'"):
        load_dataset("digits", binarization="statc")


def test_data_root_precedence(monkeypatch, tmp_path):
    assert data_root() == tmp_path / "home" / ".cache" / "pyro_vae" / "data"
    monkeypatch.setenv("PYRO_VAE_DATA", str(tmp_path / "from-env"))
    assert data_root() == tmp_path / "from-env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"


# --- digits, binarization, batching -----------------------------------------------------------


def test_digits_shapes_range_and_split_fixed_across_seeds(digits):
    assert digits.train.shape == (1500, 64) and digits.test.shape == (297, 64)
    assert digits.train.dtype == digits.test.dtype == torch.float32
    assert digits.event_shape == torch.Size([64])
    assert digits.image_shape == (1, 8, 8) and digits.binarization == "none"
    assert float(digits.train.min()) == 0.0 and float(digits.train.max()) == 1.0
    assert not digits.is_binary
    other_seed = load_dataset("digits", seed=7)
    assert torch.equal(other_seed.train, digits.train)
    assert torch.equal(other_seed.test, digits.test)


def test_static_binarization_is_binary_and_fixed_per_seed(digits):
    first = load_dataset("digits", binarization="static", seed=1)
    again = load_dataset("digits", binarization="static", seed=1)
    other = load_dataset("digits", binarization="static", seed=2)
    assert first.is_binary and first.binarization == "static"
    assert first.train_intensities is None
    assert torch.equal(first.train, again.train) and torch.equal(first.test, again.test)
    assert not torch.equal(first.train, other.train)
    assert not torch.equal(first.test, other.test)
    # A Bernoulli sample of the intensities: its mean is close to theirs.
    assert abs(float(first.train.mean()) - float(digits.train.mean())) < 0.01


def test_dynamic_binarization_resamples_each_epoch_but_repeats_from_saved_state(digits):
    dynamic = load_dataset("digits", binarization="dynamic", seed=3)
    static = load_dataset("digits", binarization="static", seed=3)
    assert dynamic.is_binary and torch.equal(dynamic.train_intensities, digits.train)
    assert torch.equal(dynamic.test, static.test)  # scores stay comparable across modes

    generator = torch.Generator().manual_seed(11)
    saved_state = generator.get_state()
    first_epoch = list(dynamic.train_batches(64, generator))
    second_epoch = list(dynamic.train_batches(64, generator))
    generator.set_state(saved_state)
    replayed_epoch = list(dynamic.train_batches(64, generator))

    assert [len(batch) for batch in first_epoch] == [64] * 23 + [28]
    assert all(bool(((batch == 0) | (batch == 1)).all()) for batch in first_epoch)
    assert not all(torch.equal(a, b) for a, b in zip(first_epoch, second_epoch, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first_epoch, replayed_epoch, strict=True))


def test_train_batches_visit_every_row_once(digits):
    generator = torch.Generator().manual_seed(0)
    batches = list(digits.train_batches(500, generator))
    assert [len(batch) for batch in batches] == [500, 500, 500]
    epoch = torch.cat(batches)
    assert not torch.equal(epoch, digits.train)  # shuffled
    sort = functools.partial(sorted, key=lambda row: tuple(row.tolist()))
    assert all(torch.equal(a, b) for a, b in zip(sort(epoch), sort(digits.train), strict=True))


def test_test_batches_in_order(digits):
    batches = list(digits.test_batches(100))
    assert [len(batch) for batch in batches] == [100, 100, 97]
    assert torch.equal(torch.cat(batches), digits.test)
    with pytest.raises(ValueError, match="batch_size"):
        next(digits.test_batches(0))


def test_test_indices_are_a_seeded_random_subset(digits):
    n = len(digits.test)
    assert torch.equal(digits.test_indices(None), torch.arange(n))
    assert torch.equal(digits.test_indices(n + 5), torch.arange(n))
    rows = digits.test_indices(50, seed=1)
    assert len(rows) == 50 and len(set(rows.tolist())) == 50
    assert torch.equal(rows, rows.sort().values) and torch.equal(rows, digits.test_indices(50, 1))
    assert not torch.equal(rows, digits.test_indices(50, seed=2))
    # Spread over the split, not its prefix (which would end at row 49).
    assert rows.max() > n // 2
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="max_data must be a positive integer"):
            digits.test_indices(bad)


def test_binarizing_unbounded_data_is_refused():
    with pytest.raises(DataError, match=r"needs intensities in \[0, 1\]"):
        load_dataset("mixture-1d", binarization="static")


# --- synthetic sets ---------------------------------------------------------------------------


def test_mixture_1d_matches_its_truth():
    data = load_dataset("mixture-1d", seed=4)
    assert data.train.shape == (2000, 1) and data.test.shape == (1000, 1)
    assert data.image_shape is None and data.source == "synthetic"
    truth = data.truth
    assert all(truth[key].dtype == torch.float32 for key in ("weights", "means", "scales"))
    assert torch.equal(truth["means"], truth["means"].sort().values)
    weights, means, scales = (truth[key].double() for key in ("weights", "means", "scales"))
    mean = (weights * means).sum()
    variance = (weights * (scales**2 + means**2)).sum() - mean**2
    # Exact fourth central moment of the mixture, for the standard error of the sample variance.
    offset = means - mean
    fourth = (weights * (offset**4 + 6 * offset**2 * scales**2 + 3 * scales**4)).sum()
    x = data.train.double().squeeze(-1)
    n = len(x)
    assert abs(x.mean() - mean) < 4 * (variance / n).sqrt()
    assert abs(x.var() - variance) < 4 * ((fourth - variance**2) / n).sqrt()
    assert torch.equal(load_dataset("mixture-1d", seed=4).train, data.train)
    assert not torch.equal(load_dataset("mixture-1d", seed=5).train, data.train)


def test_linear_gaussian_covariance_matches_truth():
    data = load_dataset("linear-gaussian", seed=2)
    truth = data.truth
    assert data.train.shape == (5000, 5) and data.test.shape == (1000, 5)
    assert truth["W"].shape == (5, 2) and truth["b"].shape == (5,) and truth["sigma"].ndim == 0
    covariance = truth["covariance"].double()
    expected = truth["W"].double() @ truth["W"].double().T + 0.25 * torch.eye(
        5, dtype=torch.float64
    )
    assert torch.allclose(covariance, expected, atol=1e-5)
    x = data.train.double()
    n = len(x)
    variances = covariance.diag()
    # Standard error of a Gaussian sample covariance entry: sqrt((S_ii S_jj + S_ij^2) / n).
    standard_error = ((variances[:, None] * variances[None, :] + covariance**2) / n).sqrt()
    assert ((x.T.cov() - covariance).abs() < 4 * standard_error).all()
    assert ((x.mean(0) - truth["b"].double()).abs() < 4 * (variances / n).sqrt()).all()
    small = load_dataset("linear-gaussian", dim=3, latent_dim=1, sigma=0.1, n_train=10)
    assert small.train.shape == (10, 3) and small.truth["W"].shape == (3, 1)


# --- real files -------------------------------------------------------------------------------


@needs_mnist
def test_mnist_loads_from_explicit_root():
    data = load_dataset("mnist", root=SHARED_DATA)
    assert data.train.shape == (60000, 784) and data.test.shape == (10000, 784)
    assert data.train.dtype == torch.float32 and data.image_shape == (1, 28, 28)
    assert float(data.train.min()) == 0.0 and float(data.train.max()) == 1.0
    assert data.binarization == "none" and str(SHARED_DATA) in data.source
    # The first training image is a 5 whose pixels sum to 27525 / 255.
    assert abs(float(data.train[0].sum()) * 255 - 27525) < 0.1
    assert data.train_labels[0].item() == 5 and data.test_labels[0].item() == 7
    assert data.test_labels.bincount().tolist()[:2] == [980, 1135]  # MNIST's published counts


@needs_binarized_mnist
def test_binarized_mnist_loads_from_environment_root(monkeypatch):
    monkeypatch.setenv("PYRO_VAE_DATA", str(SHARED_DATA))
    data = load_dataset("binarized-mnist")
    assert data.train.shape == (50000, 784) and data.test.shape == (10000, 784)
    assert data.binarization == "static" and data.image_shape == (1, 28, 28)
    assert data.is_binary
    # Number of ones per split, as listed in the data set's README.
    assert int(data.train.sum()) == 5_118_041 and int(data.test.sum()) == 1_038_896
    for impossible in ("dynamic", "none"):
        with pytest.raises(DataError, match="no grayscale intensities"):
            load_dataset("binarized-mnist", binarization=impossible)


@needs_mnist
def test_corrupted_mnist_file_is_reported_and_left_alone(tmp_path):
    copy = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    copy.parent.mkdir()
    shutil.copyfile(SHARED_DATA / "mnist" / copy.name, copy)
    flip_byte(copy, 5000)
    corrupted = copy.read_bytes()
    with pytest.raises(DataError, match="has sha256 .*, expected 440fcabf.*delete it") as error:
        load_dataset("mnist", root=tmp_path, download=True)
    assert str(copy) in str(error.value)
    assert copy.read_bytes() == corrupted


@needs_binarized_mnist
def test_corrupted_binarized_mnist_array_is_reported_and_left_alone(tmp_path):
    path = tmp_path / "binarized-mnist" / "binarized_mnist.npz"
    path.parent.mkdir()
    with np.load(SHARED_DATA / "binarized-mnist" / path.name) as archive:
        arrays = {split: archive[split] for split in archive.files}
    arrays["test"][0, 0] ^= 1
    np.savez(path, **arrays)
    before = path.read_bytes()
    with pytest.raises(DataError, match=r"\(array 'test'\) has sha256 .*, expected ca0294c3"):
        load_dataset("binarized-mnist", root=tmp_path)
    assert path.read_bytes() == before


def test_missing_file_under_explicit_root_is_named(tmp_path):
    with pytest.raises(DataError, match="is missing; pass download=True") as error:
        load_dataset("mnist", root=tmp_path)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in str(error.value)
    assert not (tmp_path / "mnist").exists()


def test_missing_file_under_environment_root_is_not_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("PYRO_VAE_DATA", str(tmp_path))
    with pytest.raises(DataError, match="binarized_mnist.npz is missing"):
        load_dataset("binarized-mnist")


def test_malformed_idx_is_reported():
    path = Path("bad-idx.gz")
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (2, 28, 28))
    good = header + bytes(2 * 28 * 28)
    assert mnist_module.parse_idx(good, path, 2051).shape == (2, 28, 28)
    with pytest.raises(DataError, match="bad-idx.gz: IDX magic number is 2051, expected 2049"):
        mnist_module.parse_idx(good, path, 2049)
    with pytest.raises(DataError, match="bad-idx.gz: IDX file is"):
        mnist_module.parse_idx(good[:-1], path, 2051)
    with pytest.raises(DataError, match="bad-idx.gz: IDX header is truncated"):
        mnist_module.parse_idx(header[:10], path, 2051)


def test_non_finite_values_are_reported(monkeypatch, tmp_path):
    with pytest.raises(
        DataError, match="somewhere.bin: 1 NaN value at row 1, 1 infinite value at row 2"
    ):
        check_finite(torch.tensor([0.0, float("nan"), float("inf")]), "somewhere.bin")
    with pytest.raises(DataError, match="x: 2 NaN values, the first at row 1$"):
        check_finite(torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [0.0, float("nan")]]), "x")
    check_finite(np.arange(3, dtype=np.uint8), "integers can hold no NaN")

    arrays = {split: np.zeros((2, 784), dtype=np.float32) for split in ("train", "valid", "test")}
    arrays["train"][1, 5] = np.nan
    path = tmp_path / "binarized-mnist" / "binarized_mnist.npz"
    path.parent.mkdir()
    np.savez(path, **arrays)
    hashes = {split: sha256_of_array(array) for split, array in arrays.items()}
    monkeypatch.setattr(binarized_mnist_module, "BINARIZED_MNIST_SHA256", hashes)
    with pytest.raises(DataError, match=r"binarized_mnist.npz \(array .train.\): 1 NaN value"):
        load_dataset("binarized-mnist", root=tmp_path)


# --- downloads --------------------------------------------------------------------------------


@needs_mnist
def test_mnist_downloads_into_default_cache(monkeypatch, tmp_path, serve):
    served = tmp_path / "served"
    shutil.copytree(SHARED_DATA / "mnist", served)
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", [serve(served)])
    data = load_dataset("mnist")  # no root given: downloads into ~/.cache/pyro_vae/data
    assert data.train.shape == (60000, 784)
    cached = tmp_path / "home" / ".cache" / "pyro_vae" / "data" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(mnist_module.MNIST_SHA256)
    for name in mnist_module.MNIST_SHA256:
        assert (cached / name).read_bytes() == (served / name).read_bytes()


@needs_mnist
def test_corrupted_download_leaves_no_file(monkeypatch, tmp_path, serve):
    served = tmp_path / "served"
    served.mkdir()
    name = "train-images-idx3-ubyte.gz"
    shutil.copyfile(SHARED_DATA / "mnist" / name, served / name)
    flip_byte(served / name, 100)
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", [serve(served)])
    with pytest.raises(DataError, match=f"could not download .*{name}.*has sha256"):
        load_dataset("mnist", root=tmp_path / "data", download=True)
    assert list((tmp_path / "data" / "mnist").iterdir()) == []


def test_fetch_falls_back_to_next_mirror(tmp_path, serve):
    good, bad, empty, destination = (tmp_path / name for name in ("good", "bad", "empty", "dest"))
    for directory in (good, bad, empty, destination):
        directory.mkdir()
    payload = gzip.compress(b"payload")
    (good / "file.gz").write_bytes(payload)
    (bad / "file.gz").write_bytes(payload[:-1])
    sha256 = hashlib.sha256(payload).hexdigest()
    fetch_verified([serve(empty), serve(bad), serve(good)], destination / "file.gz", sha256)
    assert (destination / "file.gz").read_bytes() == payload
    assert [p.name for p in destination.iterdir()] == ["file.gz"]


def write_amat(path: Path, array: np.ndarray) -> None:
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in array))


def test_binarized_mnist_download_from_amat(monkeypatch, tmp_path, serve):
    rng = np.random.default_rng(0)
    arrays = {
        split: rng.integers(0, 2, size=(n, 784), dtype=np.uint8)
        for split, n in (("train", 4), ("valid", 2), ("test", 3))
    }
    served = tmp_path / "served"
    served.mkdir()
    for split, array in arrays.items():
        write_amat(served / f"binarized_mnist_{split}.amat", array)
    hashes = {split: sha256_of_array(array) for split, array in arrays.items()}
    monkeypatch.setattr(binarized_mnist_module, "BINARIZED_MNIST_SHA256", hashes)
    monkeypatch.setattr(binarized_mnist_module, "BINARIZED_MNIST_MIRRORS", [serve(served)])

    data = load_dataset("binarized-mnist", root=tmp_path / "data", download=True)
    assert torch.equal(data.train, torch.from_numpy(arrays["train"]).float())
    assert torch.equal(data.test, torch.from_numpy(arrays["test"]).float())
    with_valid = load_dataset("binarized-mnist", root=tmp_path / "data", include_valid=True)
    assert with_valid.train.shape == (6, 784)
    directory = tmp_path / "data" / "binarized-mnist"
    assert [p.name for p in directory.iterdir()] == ["binarized_mnist.npz"]

    # A served file that parses but holds other bits fails its array hash; nothing is written.
    flipped = arrays["valid"].copy()
    flipped[0, 0] ^= 1
    write_amat(served / "binarized_mnist_valid.amat", flipped)
    with pytest.raises(DataError, match=r"\(array 'valid'\) has sha256"):
        load_dataset("binarized-mnist", root=tmp_path / "other", download=True)
    assert list((tmp_path / "other" / "binarized-mnist").iterdir()) == []

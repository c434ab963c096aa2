"""Your own data as NumPy files (.npz / .npy): labels, image shapes, the split of a .npy; bad or
damaged files refused in one line naming the file (also when fuzzed), a big-endian file, a
checksum."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.data import load_dataset
from tests.fuzzing import accepted_or_clean, fuzz
from tests.helpers import grey, one_line_error


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


# -- damaged files ---------------------------------------------------------------------------------


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _header(shape, descr="<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def _huge_npz() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.npy", _header((10**12, 4)) + bytes(64))
        archive.writestr("test.npy", _header((10, 4)) + bytes(160))
    return buffer.getvalue()


RANDOM_BYTES = np.random.default_rng(0).bytes(500)
GOOD = dict(train=np.random.default_rng(0).random((40, 6)), test=np.zeros((8, 6)))
GOOD_NPZ = _npz_bytes(**GOOD)


def _flipped(data: bytes, at: int) -> bytes:
    damaged = bytearray(data)
    damaged[at] ^= 0xFF
    return bytes(damaged)


DAMAGED_FILES = {
    "truncated.npz": (GOOD_NPZ[: len(GOOD_NPZ) // 2], "cannot be read as an .npz file"),
    "truncated-end.npz": (GOOD_NPZ[:-1], "cannot be read as an .npz file"),
    "flipped.npz": (_flipped(GOOD_NPZ, 120), "flipped.npz: train"),
    "huge-header.npz": (_huge_npz(), "its header declares 16,000,000,000,000 bytes"),
    "huge-header.npy": (_header((10**12, 4)) + bytes(64), "is truncated or damaged"),
    "truncated.npy": (_header((40, 6)) + bytes(100), "is truncated or damaged"),
    "bad-header.npy": (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4', 'fortr", "is damaged or not"),
    "random.npy": (RANDOM_BYTES, "is damaged or not a NumPy array file"),
    "random.npz": (RANDOM_BYTES, "cannot be read as an .npz file"),
    "zip-prefix.npz": (b"PK\x03\x04" + RANDOM_BYTES, "cannot be read as an .npz file"),
    "empty.npz": (b"", "cannot be read as an .npz file"),
    "objects.npy": (_header((3,), "|O") + bytes(20), "without pickle"),
    "nan.npz": (
        _npz_bytes(train=np.where(np.eye(4, 6) > 0, np.nan, 0.5), test=np.zeros((2, 6))),
        "train: 4 NaN values, the first at row 0",
    ),
    "inf.npy": (_header((4, 2), "<f8") + np.full(8, np.inf).tobytes(), "8 infinite values"),
}


@pytest.mark.parametrize("name", DAMAGED_FILES)
def test_damaged_data_files_are_data_errors_naming_the_file(tmp_path, name):
    content, words = DAMAGED_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    one_line_error(pv.DataError, lambda: load_dataset(str(path)), name, words)


def test_a_big_endian_file_loads_like_a_native_one(tmp_path):
    values = np.random.default_rng(0).random((20, 3))
    np.save(tmp_path / "big.npy", values.astype(">f8"))
    np.save(tmp_path / "native.npy", values)
    big, native = (load_dataset(str(tmp_path / n)) for n in ("big.npy", "native.npy"))
    assert torch.equal(big.train, native.train)


def test_a_wrong_checksum_is_a_data_error(tmp_path):
    path = tmp_path / "mine.npz"
    path.write_bytes(GOOD_NPZ)
    digest = load_dataset(str(path)).options["sha256"]
    one_line_error(
        pv.DataError,
        lambda: load_dataset(str(path), sha256="0" * 64),
        "the data changed since",
    )
    for bad in ("abc", 5, "G" * 64):
        one_line_error(
            pv.DataError,
            lambda bad=bad: load_dataset(str(path), sha256=bad),
            "option 'sha256' must be 64 hexadecimal digits",
        )
    assert load_dataset(str(path), sha256=digest).options["sha256"] == digest


# -- fuzzed: any bytes are loaded or refused in one line -------------------------------------------


@fuzz(200)
@given(st.binary(max_size=2000), st.sampled_from([".npz", ".npy"]))
def test_data_loader_on_random_bytes(content, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        accepted_or_clean(lambda: load_dataset(str(path)))


def _file_bytes(suffix: str) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    if suffix == ".npz":
        np.savez_compressed(buffer, train=rng.random((20, 3)), test=rng.random((5, 3)))
    else:
        np.save(buffer, rng.random((30, 2, 2)).astype(np.float32))
    return buffer.getvalue()


VALID_FILES = {suffix: _file_bytes(suffix) for suffix in (".npz", ".npy")}


@fuzz(300)
@given(
    st.sampled_from([".npz", ".npy"]),
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "insert"]),
            st.integers(0, 10**6),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_data_loader_on_damaged_files(suffix, damage):
    content = bytearray(VALID_FILES[suffix])
    for action, where, data in damage:
        at = where % max(len(content), 1)
        if action == "flip" and content:
            content[at] ^= data[0] or 1
        elif action == "cut":
            del content[at:]
        else:
            content[at:at] = data
    assume(bytes(content) != VALID_FILES[suffix])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(bytes(content))
        accepted_or_clean(lambda: load_dataset(str(path)))


def test_npz_named_arrays_come_with_their_splits(tmp_path):
    path = tmp_path / "named.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        train=rng.random((6, 4)),
        test=rng.random((3, 4)),
        train_cond=rng.integers(0, 3, 6),
        test_cond=rng.integers(0, 3, 3),
        train_labels=np.arange(6),
        test_labels=np.arange(3),
    )
    data = pv.load_dataset(str(path))
    assert data.names == ["x", "labels", "labels_onehot", "cond"]
    assert data.array("cond", "train").dtype == torch.int64 and len(data.array("cond", "test")) == 3
    assert data.array("labels_onehot", "test").shape == (3, 6)
    batch = next(iter(data.test_batches(2, names=("x", "cond"))))
    assert batch[0].shape == (2, 4) and torch.equal(batch[1], data.array("cond", "test")[:2])
    np.savez(path, train=rng.random((6, 4)), test=rng.random((3, 4)), train_cond=np.arange(6))
    with pytest.raises(pv.DataError, match="has 'cond' arrays but no 'test_cond'"):
        pv.load_dataset(str(path))


def test_a_column_named_like_the_labels_is_the_column(tmp_path):
    fine = np.arange(9) * 7 % 5 + 100  # values no label or one-hot of labels has
    arrays = dict(train=grey(6, 4), test=grey(3, 4), train_labels_fine=fine[:6])
    arrays["test_labels_fine"] = fine[6:]
    np.savez(tmp_path / "fine.npz", **arrays)
    data = pv.load_dataset(str(tmp_path / "fine.npz"))
    assert data.names == ["x", "labels_fine"]
    assert torch.equal(data.array("labels_fine", "test"), torch.as_tensor(fine[6:]))
    np.savez(tmp_path / "both.npz", train_labels=np.arange(6) % 2, test_labels=[0, 1, 1], **arrays)
    data = pv.load_dataset(str(tmp_path / "both.npz"))
    assert data.names == ["x", "labels", "labels_onehot", "labels_fine"]
    assert torch.equal(data.array("labels_fine", "train"), torch.as_tensor(fine[:6]))
    assert torch.equal(data.array("labels", "test"), torch.tensor([0, 1, 1]))
    assert data.array("labels_onehot", "test").shape == (3, 2)


# -- sequences -------------------------------------------------------------------------------------


def test_npz_with_lengths_holds_sequences_zero_past_each_length(tmp_path):
    path = tmp_path / "seq.npz"
    train, test = grey(6, 5, 2) + 0.1, grey(3, 5, 2, seed=1) + 0.1
    lengths = np.array([5, 1, 3, 5, 2, 4], dtype=np.int32)
    np.savez(
        path,
        train=train,
        test=test,
        train_lengths=lengths,
        test_lengths=np.array([2, 5, 1]),
        valid=grey(2, 5, 2),
        valid_lengths=np.array([1, 2]),
        valid_labels=np.array([1, 0]),
        train_labels=np.arange(6) % 2,
        test_labels=np.array([0, 1, 1]),
    )
    data = pv.load_dataset(str(path))
    assert data.is_sequence and data.train.shape == (6, 5, 2) and data.image_shape is None
    assert data.step_shape == (2,) and data.names == ["x", "labels", "labels_onehot", "lengths"]
    train_lengths, test_lengths = data.columns["lengths"]
    assert train_lengths.dtype == torch.int64 and train_lengths.tolist() == lengths.tolist()
    assert test_lengths.tolist() == [2, 5, 1]
    # Inside a length the file's values; past it zeros.
    assert torch.equal(data.train[2, :3], torch.as_tensor(train[2, :3]))
    assert (data.train[2, 3:] == 0).all() and (data.test[2, 1:] == 0).all()
    assert (data.train[0] != 0).all()
    both = pv.load_dataset(str(path), include_valid=True)
    assert both.train.shape == (8, 5, 2) and both.columns["lengths"][0][-2:].tolist() == [1, 2]
    assert (both.train[6, 1:] == 0).all()
    # The same 3-D arrays without lengths are images, flattened, as before.
    np.savez(tmp_path / "images.npz", train=train, test=test)
    images = pv.load_dataset(str(tmp_path / "images.npz"))
    assert not images.is_sequence and images.image_shape == (1, 5, 2)
    assert images.train.shape == (6, 10) and "lengths" not in images.names


def bad_sequence_files():
    """(arrays, words of the one-line error) of sequence files with bad lengths."""
    good = np.array([3, 1, 2, 3])
    yield dict(train_lengths=good.astype(float)), "train_lengths: expected one integer length"
    yield dict(train_lengths=np.array([3, 0, 2, 3])), "train_lengths: length 0 at row 1"
    yield dict(train_lengths=np.array([3, 1, 4, 3])), "length 4 at row 2; each must be from 1 to 3"
    yield dict(train_lengths=good[:3]), "train_lengths: 3 lengths for 4 sequences"
    yield dict(train_lengths=good.reshape(2, 2)), "expected one integer length per sequence"
    yield dict(train_lengths=good > 1), "got bool"
    yield dict(test_lengths=None), "has 'lengths' arrays but no 'test_lengths'"
    yield dict(train=grey(4, 6), test=grey(2, 6)), "train: shape (4, 6); expected (N, T, D)"
    yield dict(test_lengths=np.array([1.5, 3])), "test_lengths: expected one integer length"


@pytest.mark.parametrize("bad, words", list(bad_sequence_files()))
def test_bad_sequence_lengths_are_refused_naming_file_and_key(tmp_path, bad, words):
    arrays = dict(
        train=grey(4, 3, 2),
        test=grey(2, 3, 2),
        train_lengths=np.array([3, 1, 2, 3]),
        test_lengths=np.array([1, 3]),
    )
    arrays.update(bad)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(tmp_path / "bad.npz", **arrays)
    one_line_error(
        pv.DataError, lambda: pv.load_dataset(str(tmp_path / "bad.npz")), "bad.npz", words
    )


def test_a_valid_split_of_sequences_needs_lengths_only_when_used(tmp_path):
    path = tmp_path / "valid.npz"
    lengths = dict(train_lengths=np.array([3, 1]), test_lengths=np.array([2]))
    np.savez(path, train=grey(2, 3, 2), test=grey(1, 3, 2), valid=grey(2, 3, 2), **lengths)
    assert pv.load_dataset(str(path)).train.shape == (2, 3, 2)
    one_line_error(
        pv.DataError,
        lambda: pv.load_dataset(str(path), include_valid=True),
        "valid.npz",
        "has 'lengths' arrays but no 'valid_lengths'",
    )
    np.savez(path, train=grey(2, 3, 2), test=grey(1, 3, 2), valid=grey(2, 6), **lengths)
    one_line_error(pv.DataError, lambda: pv.load_dataset(str(path)), "valid: shape (2, 6)")

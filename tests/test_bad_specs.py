"""Bad input of every kind gets one line naming the file and the key or option at fault.

One test (or one parametrized catalogue) per defect: (1) TOML the parser chokes on, (2) sizes
that are not whole numbers in range, (3) fixed distribution parameters outside their
constraint, (4) pairs far too large to allocate, refused before anything is, (5) objective
settings, (6) data options and damaged data files. Every case asserts the exception class, that
the message is one line, and that it names the key, option or file: 148 bad inputs in all.
"""

from __future__ import annotations

import gzip
import io
import time
import zipfile

import numpy as np
import pytest
import torch

import pyro_vae as pv
from pyro_vae.bundled import bundled_dir, bundled_names
from pyro_vae.cli import main
from pyro_vae.data import load_dataset
from pyro_vae.model import sizes
from pyro_vae.model.families import FAMILIES, Family
from pyro_vae.model.guide_families import GUIDE_FAMILIES, register_guide_family
from pyro_vae.model.nets import NETS
from pyro_vae.objectives.registry import MAX_PARTICLES, ObjectiveChoice
from pyro_vae.spec.parse import parse_guide, parse_model
from pyro_vae.spec.resolve import read_guide, read_model

BERNOULLI_VAE = (bundled_dir("models") / "bernoulli_vae.toml").read_text()
GAUSSIAN_VAE = (bundled_dir("models") / "gaussian_vae.toml").read_text()
CONV_VAE = (bundled_dir("models") / "conv_vae.toml").read_text()


def one_line_error(error_type, call, *words):
    """Run ``call``, expect ``error_type``; its message is one line holding every word."""
    with pytest.raises(error_type) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    for word in words:
        assert word in message, (word, message)
    return caught.value


def model_file(tmp_path, text, name="m.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load_model(path, guide="mean_field", data_shape=(64,)):
    return lambda: pv.load(path, guide, data_shape=data_shape)


# -- 1: TOML the parser cannot take -----------------------------------------------------------


UNREADABLE_TOML = {
    "nested arrays": "x = " + "[" * 100_000,
    "nested inline tables": "x = " + "{a = " * 100_000,
    "a 100,000-part dotted key": ".".join(["a"] * 100_000) + " = 1",
    "an integer of 5,000 digits": "x = " + "9" * 5000,
    "NUL bytes": "x = 1\x00\x00",
    "bad date": "x = 1979-02-30",
    "too long": "# " + "a" * 1_000_001,
}


@pytest.mark.parametrize("text", UNREADABLE_TOML.values(), ids=UNREADABLE_TOML)
def test_unreadable_toml_is_a_spec_error_naming_the_file(tmp_path, text):
    path = model_file(tmp_path, text)
    one_line_error(pv.SpecError, load_model(path), str(path))
    error = one_line_error(pv.SpecError, lambda: parse_model(text, "m.toml"), "m.toml: ")
    assert error.key == ""


@pytest.mark.parametrize(
    "content, words",
    [
        (bytes(range(256)) * 4, "is not UTF-8 text"),
        ("description = 'café'".encode("latin-1"), "is not UTF-8 text"),
        (gzip.compress(BERNOULLI_VAE.encode()), "is not UTF-8 text"),
        (b"\xef\xbb\xbf" + BERNOULLI_VAE.encode(), "not valid TOML"),  # a byte-order mark
        ('x = "\ud800"'.encode("utf-8", "surrogatepass"), "is not UTF-8 text"),
    ],
    ids=["binary", "latin-1", "gzip", "bom", "surrogate"],
)
def test_binary_and_non_utf8_files_are_spec_errors(tmp_path, content, words):
    path = tmp_path / "m.toml"
    path.write_bytes(content)
    one_line_error(pv.SpecError, load_model(path), str(path), words)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "m.toml"
    with open(path, "wb") as file:
        file.truncate(5 * 10**9)  # sparse: 5 GB that take no disk
    one_line_error(pv.SpecError, load_model(path), str(path), "a spec may have at most")


def test_cli_reports_deep_nesting_as_one_line(tmp_path, capsys):
    path = model_file(tmp_path, "x = " + "[" * 100_000)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {path}: not valid TOML")


# -- 2: sizes that are not whole numbers in range ---------------------------------------------


BAD_SIZES = [
    ("dim = 50", "dim = 1e20", "latent.z.dim"),
    ("dim = 50", "dim = 1e300", "latent.z.dim"),
    ("dim = 50", "dim = -3", "latent.z.dim"),
    ("dim = 50", "dim = 0", "latent.z.dim"),
    ("dim = 50", "dim = true", "latent.z.dim"),
    ("dim = 50", 'dim = "5"', "latent.z.dim"),
    ("dim = 50", "dim = 5.0", "latent.z.dim"),
    ("dim = 50", "dim = nan", "latent.z.dim"),
    ("dim = 50", "dim = inf", "latent.z.dim"),
    ("dim = 50", f"dim = {10**30}", "latent.z.dim"),
    ("dim = 50", "dim = 0x" + "f" * 5000, "latent.z.dim"),
    ("dim = 50", "dim = [50]", "latent.z.dim"),
    ("hidden = [200, 200]", "hidden = [1.5]", "observed.x.net.hidden"),
    ("hidden = [200, 200]", "hidden = [200, -1]", "observed.x.net.hidden"),
    ("hidden = [200, 200]", f"hidden = [{2**63}]", "observed.x.net.hidden"),
    ("hidden = [200, 200]", "hidden = [[200]]", "observed.x.net.hidden"),
]


@pytest.mark.parametrize("old, new, key", BAD_SIZES, ids=[new[:24] for _, new, _ in BAD_SIZES])
def test_bad_sizes_name_the_key_and_the_range(tmp_path, old, new, key):
    path = model_file(tmp_path, BERNOULLI_VAE.replace(old, new))
    words = [f"{path}: {key}: "]
    if "[[" not in new:
        words.append("must be a whole number between 1 and 1,000,000,000")
    error = one_line_error(pv.SpecError, load_model(path), *words)
    assert error.key == key
    assert len(str(error)) < 300  # a huge number is described, not printed


@pytest.mark.parametrize(
    "model, old, new, key",
    [
        ("mixture_1d", "categories = 3", "categories = 1e3", "latent.c.categories"),
        ("mixture_prior_vae", "components = 10", "components = 2.5", "latent.z.components"),
        ("flow_prior_vae", "flows = 2", "flows = -1", "latent.z.flows"),
        ("conv_vae", "kernel = 3", "kernel = 3.0", "observed.x.net.kernel"),
        ("conv_vae", "stride = 2", f"stride = {10**12}", "observed.x.net.stride"),
        ("conv_vae", "channels = [64, 32]", "channels = [64, true]", "observed.x.net.channels"),
    ],
)
def test_every_size_key_takes_whole_numbers_only(tmp_path, model, old, new, key):
    text = (bundled_dir("models") / f"{model}.toml").read_text()
    assert old in text
    error = one_line_error(
        pv.SpecError, lambda: parse_model(text.replace(old, new), "m.toml"), "whole number"
    )
    assert error.key == key


# -- 3: fixed distribution parameters outside their constraint ---------------------------------


@pytest.mark.parametrize(
    "scale", ["1e-300", "0", "-0.5", "inf", "-inf", "nan", "5e-324", "1e-7", "1e30", str(10**400)]
)
def test_a_fixed_scale_outside_its_constraint_is_named_with_the_reason(tmp_path, scale):
    path = model_file(tmp_path, GAUSSIAN_VAE.replace('scale = "learned"', f"scale = {scale}"))
    error = one_line_error(
        pv.SpecError,
        load_model(path),
        f"{path}: observed.x.scale: ",
        "must be a finite number from 1e-06 to 1e+18",
        "float32",
    )
    assert error.key == "observed.x.scale"


@pytest.mark.parametrize("scale", ["1e-6", "0.01", "3", "1e18"])
def test_a_fixed_scale_inside_its_constraint_gives_finite_densities(tmp_path, scale):
    path = model_file(tmp_path, GAUSSIAN_VAE.replace('scale = "learned"', f"scale = {scale}"))
    vae = pv.load(path, "mean_field", data_shape=(64,), seed=0)
    x = torch.rand(3, 64)
    joint, _, guide = vae.log_densities(x, vae.draw_latents(x, 2))
    assert torch.isfinite(joint).all() and torch.isfinite(guide).all()


@pytest.mark.parametrize(
    "weights, words",
    [
        ("[0.5, 0.5, nan]", "item 2: a fixed weight must be a finite number"),
        ("[1.5, -0.25, -0.25]", "item 0: a fixed weight must be a finite number from 1e-30 to 1"),
        ("[1e-300, 0.5, 0.5]", "rounds to 0 in float32"),
        ("[0.0, 0.5, 0.5]", "item 0: a fixed weight"),
        ("[0.2, 0.2, 0.2]", "expected probabilities summing to 1, got sum 0.6"),
        ("[inf, 0.5, 0.5]", "item 0"),
        ('[0.5, "a", 0.5]', "item 1: expected a number"),
    ],
)
def test_fixed_weights_outside_their_constraint_are_named(weights, words):
    text = (bundled_dir("models") / "mixture_1d.toml").read_text()
    text = text.replace('weights = "learned"', f"weights = {weights}")
    error = one_line_error(pv.SpecError, lambda: parse_model(text, "m.toml"), words)
    assert error.key == "latent.c.weights"


def test_constraints_are_declared_by_the_families_for_options_they_have():
    declared = {name: FAMILIES.get(name).constraints for name in FAMILIES.names()}
    assert set(declared["normal"]) == {"scale"} and set(declared["categorical"]) == {"weights"}
    for name, constraints in declared.items():
        assert set(constraints) <= set(FAMILIES.get(name).options), name


# -- 4: pairs too large to allocate, refused before anything is --------------------------------


def _allocated_while(call):
    """(result or error, seconds, largest tensor allocated) of ``call``; tensors are seen through
    torch's allocation of parameters (nn.Linear, nn.Parameter go through torch.empty)."""
    largest = [0]
    original = torch.empty

    def watched(*args, **kwargs):
        tensor = original(*args, **kwargs)
        largest[0] = max(largest[0], tensor.numel())
        return tensor

    start = time.perf_counter()
    torch.empty = watched
    try:
        with pytest.raises(pv.SpecError) as caught:
            call()
    finally:
        torch.empty = original
    return caught.value, time.perf_counter() - start, largest[0]


@pytest.mark.parametrize(
    "model, old, new, guide, shape, key",
    [
        ("bernoulli_vae", "dim = 50", "dim = 10000000", "mean_field", (64,), "latent.z.dim"),
        (
            "bernoulli_vae",
            "hidden = [200, 200]",
            "hidden = [100000, 100000]",
            "mean_field",
            (64,),
            "observed.x.net.hidden",
        ),
        ("bernoulli_vae", "dim = 50", "dim = 100000", "full_normal", (64,), "latent.z.dim"),
        ("conv_vae", "kernel = 3", "kernel = 99999", "conv", (1, 28, 28), "observed.x.net.kernel"),
        ("conv_vae", "stride = 2", "stride = 100000", "conv", (1, 28, 28), "observed.x.net"),
        (
            "vamp_vae",
            "pseudo_inputs = 500",
            "pseudo_inputs = 1000000000",
            "mean_field",
            (784,),
            "latent.z.pseudo_inputs",
        ),
    ],
)
def test_a_pair_too_large_is_refused_by_key_before_any_allocation(
    tmp_path, model, old, new, guide, shape, key
):
    text = (bundled_dir("models") / f"{model}.toml").read_text()
    assert old in text
    path = model_file(tmp_path, text.replace(old, new))
    error, seconds, largest = _allocated_while(load_model(path, guide, shape))
    assert error.key == key and str(error).startswith(f"{path}: {key}: ")
    assert "above the limit of 2 GiB (PYRO_VAE_MAX_BYTES)" in str(error)
    assert "\n" not in str(error)
    assert seconds < 5 and largest < 10**6


def test_the_parameter_count_is_named_in_the_message(tmp_path):
    path = model_file(tmp_path, BERNOULLI_VAE.replace("[200, 200]", "[100000, 100000]"))
    message = str(one_line_error(pv.SpecError, load_model(path)))
    # 200·10⁵ (z → h1) + 10¹⁰ (h1 → h2) + 10⁵·64 (h2 → x) weights, with their biases.
    # The guide's 64-200-200-100 encoder, and the prior's buffer of 50 zeros.
    decoder = 50 * 100_000 + 100_000 + 100_000**2 + 100_000 + 100_000 * 64 + 64
    encoder = 64 * 200 + 200 + 200 * 200 + 200 + 200 * 100 + 100
    total = decoder + encoder + 50
    assert f"would hold {total:,} parameters (37.3 GiB of float32)" in message
    # Every weight of a layer with a hidden side is blamed on hidden; the 64 output biases not.
    assert f"{decoder - 64:,} of them are sized by this key" in message


def test_the_limit_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(sizes.MAX_BYTES_ENV, "1000")
    one_line_error(
        pv.SpecError,
        lambda: pv.load("bernoulli_vae", data_shape=(64,)),
        "above the limit of 1000 bytes",
    )
    monkeypatch.setenv(sizes.MAX_BYTES_ENV, str(2**40))
    path = model_file(tmp_path, BERNOULLI_VAE.replace("dim = 50", "dim = 10000000"))
    counts, _ = sizes.value_counts(read_model(path), read_guide("mean_field"), 64)
    assert sum(counts.values()) * 4 < 2**40  # allowed now (not built: 22 GiB)
    for bad in ("lots", "-5", "0", "1e9", "١٠٠"):
        monkeypatch.setenv(sizes.MAX_BYTES_ENV, bad)
        one_line_error(
            pv.PyroVaeError,
            lambda: pv.load("bernoulli_vae", data_shape=(64,)),
            "PYRO_VAE_MAX_BYTES",
            "expected a whole number of bytes",
        )


def _real_values(vae) -> int:
    """Float32 values of the distinct storages of a built pair's parameters and buffers."""
    storages = {}
    for tensor in [*vae.parameters(), *vae.buffers()]:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()) // 4


#: Guide entries that, with the bundled ones, build every guide family with and without inputs.
EXTRA_GUIDES = {
    "low_rank": '[latent.z]\nfamily = "low_rank_normal"\nrank = 3\ngiven = ["x"]\n'
    'net = { kind = "mlp", hidden = [16] }\n',
    "low_rank_global": '[latent.z]\nfamily = "low_rank_normal"\nrank = 2\n',
    "full_global": '[latent.z]\nfamily = "full_normal"\n',
    "iaf_global": '[latent.z]\nfamily = "iaf"\nflows = 3\nhidden = [64, 64]\n',
    "diagonal_global": '[latent.z]\nfamily = "diagonal_normal"\n',
    "iaf_context": '[latent.z]\nfamily = "iaf"\ncontext = 5\ngiven = ["x"]\n'
    'net = { kind = "linear" }\n',
}

#: Models that, with the bundled ones, build every family, scale mode and net kind.
EXTRA_MODELS = {
    "fixed_scale": GAUSSIAN_VAE.replace('scale = "learned"', "scale = 0.1"),
    "per_dim": GAUSSIAN_VAE.replace('scale = "learned"', 'scale = "learned_per_dim"'),
    "net_scale": GAUSSIAN_VAE.replace('scale = "learned"', 'scale = "net"'),
    "learned_prior": BERNOULLI_VAE.replace('"standard_normal"', '"normal"'),
    "continuous": BERNOULLI_VAE.replace('"bernoulli"', '"continuous_bernoulli"'),
    "linear": BERNOULLI_VAE.replace(
        'kind = "mlp", hidden = [200, 200], activation = "tanh"', 'kind = "linear"'
    ),
}


def test_the_count_equals_the_values_of_the_built_modules(tmp_path):
    """Every bundled model with every bundled guide (where they fit), the extra models and
    guides above, on flat and image data: the count is exact, so the limit is exact too."""
    models = {name: name for name in bundled_names("models")}
    models.update({n: model_file(tmp_path, t, f"{n}.toml") for n, t in EXTRA_MODELS.items()})
    guides = {name: name for name in bundled_names("guides")}
    guides.update({n: model_file(tmp_path, t, f"g_{n}.toml") for n, t in EXTRA_GUIDES.items()})
    built = set()
    for model in models.values():
        for guide in guides.values():
            for shape in [(64,), (1, 8, 8), (3, 5, 6)]:
                try:
                    vae = pv.load(model, guide, data_shape=shape)
                except pv.SpecError:
                    continue  # a pair that does not fit (a conv guide on flat data, ...)
                counts, _ = sizes.value_counts(
                    vae.model_spec, vae.guide_spec, vae.data_shape[0], vae.image_shape
                )
                assert sum(counts.values()) == _real_values(vae), (model, guide, shape)
                built |= {n.family for n in vae.model_spec.latents.values()}
                built |= {vae.model_spec.observed.family}
                built |= {n.family for n in vae.guide_spec.latents.values()}
                built |= {n.net.kind for n in vae.guide_spec.latents.values() if n.net}
                built |= {vae.model_spec.observed.net.kind}
    every = set(FAMILIES.names()) | set(GUIDE_FAMILIES.names()) | set(NETS.names())
    assert every <= built, every - built
    # Each entry counts its own tensors: no family falls back on the base class's count.
    counted = {
        n for n in FAMILIES.names() if FAMILIES.get(n).count.__func__ is not Family.count.__func__
    }
    assert counted == set(FAMILIES.names())
    counted = {n for n in GUIDE_FAMILIES.names() if GUIDE_FAMILIES.get(n).count is not None}
    assert counted | {"enumerate"} == set(GUIDE_FAMILIES.names())
    assert all(callable(NETS.get(n).count) for n in NETS.names())


def test_a_sampled_guide_family_cannot_be_registered_without_a_count():
    with pytest.raises(ValueError, match="needs a count"):
        register_guide_family("uncounted", {"real"})
    assert "uncounted" not in GUIDE_FAMILIES


def test_a_conv_encoder_with_a_second_input_is_counted_exactly(tmp_path):
    model = model_file(
        tmp_path,
        '[latent.z1]\nfamily = "standard_normal"\ndim = 3\n'
        '[latent.z2]\nfamily = "normal"\ndim = 4\ngiven = ["z1"]\nnet = { kind = "linear" }\n'
        '[observed.x]\nfamily = "bernoulli"\ngiven = ["z2"]\n'
        'net = { kind = "conv", channels = [8, 4] }\n',
    )
    guide = model_file(
        tmp_path,
        '[latent.z2]\nfamily = "diagonal_normal"\ngiven = ["x"]\n'
        'net = { kind = "conv", channels = [5], stride = 3, kernel = 5 }\n'
        '[latent.z1]\nfamily = "diagonal_normal"\ngiven = ["z2", "x"]\n'
        'net = { kind = "conv", channels = [6, 7] }\n',
        "g.toml",
    )
    vae = pv.load(model, guide, data_shape=(2, 9, 7))
    counts, maps = sizes.value_counts(vae.model_spec, vae.guide_spec, 126, (2, 9, 7))
    assert sum(counts.values()) == _real_values(vae)
    assert set(maps) == {
        (str(model), "observed.x.net"),
        (str(guide), "latent.z2.net"),
        (str(guide), "latent.z1.net"),
    }


# -- 5: objective settings --------------------------------------------------------------------


BAD_OBJECTIVES = [
    ("renyi:alpha=nan", "option alpha: must be a finite number, got nan"),
    ("renyi:alpha=inf", "option alpha: must be a finite number, got inf"),
    ("renyi:alpha=-inf", "option alpha: must be a finite number"),
    ("renyi:alpha=1e400", "option alpha: must be a finite number, got inf"),
    ("renyi:alpha=0x10", "alpha must be a number"),
    ("renyi:alpha=", "alpha has no value"),
    ("iwae:k=99999999999", f"k must be <= {MAX_PARTICLES:,}"),
    (f"iwae:k={MAX_PARTICLES + 1}", f"k must be <= {MAX_PARTICLES:,}"),
    ("iwae:k=" + "9" * 5000, f"k must be <= {MAX_PARTICLES:,}"),
    ("iwae:k=0", "k must be >= 1, got 0"),
    ("iwae:k=-1", "k must be >= 1, got -1"),
    ("iwae:k=1.5", "k must be a whole number from 1 to 100,000"),
    ("iwae:k=abc", "k must be a whole number from 1 to 100,000"),
    ("iwae:k=1_000", "k must be a whole number"),
    ("iwae:k=٥", "k must be a whole number"),
    ("iwae:k=5,k=6", "sets k twice"),
    ("renyi:alpha=0.1,alpha=0.2", "sets alpha twice"),
    (":k=5", "no name before the settings"),
    ("", "no name before the settings"),
    ("iwae:", "nothing after ':'"),
    ("iwae:k", "k has no value"),
    ("iwae:k=", "k has no value"),
    ("iwae:=5", "an empty setting"),
    ("iwae:k=5,", "an empty setting"),
    ("iwae:k=5,,alpha=1", "an empty setting"),
    ("iwae:alpha=0.5", "has no option 'alpha' (options: none)"),
    ("iwea:k=5", "did you mean 'iwae'"),
    ("iwae\n:k=5\nx", "iwae"),
]


@pytest.mark.parametrize("text, words", BAD_OBJECTIVES, ids=[t[:20] for t, _ in BAD_OBJECTIVES])
def test_bad_objective_settings_name_the_option(text, words):
    one_line_error(pv.PyroVaeError, lambda: ObjectiveChoice.parse(text), words)


@pytest.mark.parametrize(
    "args, words",
    [
        (("iwae", 10**11), "k must be <= 100,000"),
        (("iwae", 2.0), "k must be a whole number"),
        (("iwae", True), "k must be a whole number"),
        ((["iwae"],), "expected a name"),
        (("renyi", 2, {"alpha": "0.5"}), "option alpha: must be a finite number"),
        (("renyi", 2, [("alpha", 1)]), "options must be a table"),
        (("renyi", 2, {3: 1}), "has no option '3'"),
    ],
)
def test_objective_choices_built_in_python_are_checked_too(args, words):
    one_line_error(pv.PyroVaeError, lambda: ObjectiveChoice(*args), words)


def test_good_objective_settings_still_parse():
    assert ObjectiveChoice.parse(" iwae : k = 5 ") == ObjectiveChoice("iwae", 5)
    assert ObjectiveChoice.parse(f"iwae:k={MAX_PARTICLES}").num_particles == MAX_PARTICLES
    assert ObjectiveChoice.parse("renyi:alpha=-.5e1").options == {"alpha": -5.0}


# -- 6: data options and damaged data files ---------------------------------------------------


BAD_DATA_OPTIONS = [
    ("mixture-1d", {"n_train": -1}, "option 'n_train' must be a positive integer, got -1"),
    (
        "mixture-1d",
        {"n_train": 1e11},
        "option 'n_train' must be a positive integer, got 100000000000.0",
    ),
    ("mixture-1d", {"n_train": 10**11}, "(a whole number from 1 to 10,000,000)"),
    ("mixture-1d", {"n_train": "500"}, "option 'n_train' must be a positive integer, got '500'"),
    ("mixture-1d", {"n_train": True}, "option 'n_train' must be a positive integer, got True"),
    ("mixture-1d", {"n_train": None}, "option 'n_train' must be a positive integer, got None"),
    ("mixture-1d", {"n_trian": 10}, "no option 'n_trian'; did you mean 'n_train'"),
    ("linear-gaussian", {"dim": 10**7, "n_train": 10**7}, "ask for"),
    ("linear-gaussian", {"sigma": float("inf")}, "option 'sigma' must be finite"),
    ("linear-gaussian", {"sigma": float("nan")}, "option 'sigma' must be positive, got nan"),
    ("linear-gaussian", {"sigma": "0.5"}, "option 'sigma' must be positive, got '0.5'"),
    ("digits", {"seed": -1}, "seed must be a whole number from 0 to 4,294,967,295"),
    ("digits", {"seed": 2**70}, "seed must be a whole number"),
    ("digits", {"seed": "1"}, "seed must be a whole number"),
    ("digits", {"binarization": ["static"]}, "binarization: expected one of"),
    ("digits", {"download": "yes"}, "option 'download' must be true or false"),
    ("digits", {"root": 5}, "data root: expected a directory"),
    (["digits"], {}, "data: expected a data set name or file"),
    ("", {}, "data: expected a data set name or file"),
    ("digits\x00", {}, "must be printable text"),
    ("mine\n.npz", {}, "must be printable text"),
    ("a" * 5000 + ".npz", {}, "cannot be opened"),
    ("binarized-mnist", {"include_valid": 1}, "'include_valid' must be true or false"),
]


@pytest.mark.parametrize(
    "name, options, words", BAD_DATA_OPTIONS, ids=[str(o)[:30] for _, o, _ in BAD_DATA_OPTIONS]
)
def test_bad_data_options_name_the_option(name, options, words):
    one_line_error(pv.DataError, lambda: load_dataset(name, **options), words)


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


def test_a_damaged_mnist_file_is_reported_by_its_checksum(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00" * 100)[:-4])
    one_line_error(
        pv.DataError,
        lambda: load_dataset("mnist", root=tmp_path),
        "train-images-idx3-ubyte.gz has sha256",
    )


def test_a_damaged_binarized_mnist_file_is_a_data_error(tmp_path):
    folder = tmp_path / "binarized-mnist"
    folder.mkdir()
    arrays = {s: np.zeros((2, 784), np.uint8) for s in ("train", "valid", "test")}
    (folder / "binarized_mnist.npz").write_bytes(_flipped(_npz_bytes(**arrays), 100))
    one_line_error(
        pv.DataError,
        lambda: load_dataset("binarized-mnist", root=tmp_path),
        "binarized_mnist.npz",
    )


def test_guides_get_the_same_checks(tmp_path):
    """The guide reader shares the model's: deep nesting, bad sizes, reserved names."""
    for text, words in [
        ("x = " + "[" * 100_000, "not valid TOML"),
        ('[latent.z]\nfamily = "low_rank_normal"\nrank = 1e9\n', "latent.z.rank: "),
        ('[latent.keys]\nfamily = "diagonal_normal"\n', "'keys' is reserved: the torch"),
        ('[latent."a.b"]\nfamily = "diagonal_normal"\n', "latent.'a.b': a node name"),
    ]:
        one_line_error(pv.SpecError, lambda text=text: parse_guide(text, "g.toml"), words)

"""Sequence models in the spec language: a chain latent (``transition``, ``initial``) and x
emitted from it at every step, with a guide entry that reads x through an ``rnn``. The bundled
dmm and lgssm parse and build with exact parameter counts; every misuse of the new keys is one
SpecError naming the file and the dotted key; every recurrent cell and direction builds and its
guide runs; ``pyro-vae check`` prints the chain and refuses a bad sequence spec in one line."""

from __future__ import annotations

import re

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.bundled import bundled_dir
from pyro_vae.cli import main
from pyro_vae.model import sizes
from pyro_vae.model.sequence_nets import SequenceEncoder
from pyro_vae.spec.parse import NetSpec, check_pair, parse_guide, parse_model
from pyro_vae.spec.resolve import read_guide, read_model
from tests.helpers import model_file, one_line_error

DMM_MODEL = (bundled_dir("models") / "dmm.toml").read_text()
DMM_GUIDE = (bundled_dir("guides") / "dmm.toml").read_text()
LGSSM_MODEL = (bundled_dir("models") / "lgssm.toml").read_text()

# Lines of the bundled dmm specs the edits below start from.
TRANSITION = 'transition = { kind = "gated", hidden = 200 }'
INITIAL = 'initial = "learned"'
EMISSION = 'net = { kind = "mlp", hidden = [100, 100], activation = "relu" }'
X_GIVEN = 'given = ["z"]'
RNN = 'rnn = { cell = "rnn_relu", hidden = 600, direction = "backward" }'

#: Three padded sequences of 5 steps and their lengths.
LENGTHS = torch.tensor([5, 2, 4])


def edited(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced by ``new`` (the bundled spec must still hold it)."""
    assert text.count(old) == 1, (old, text)
    return text.replace(old, new)


def refused(call, path, key: str, *words: str) -> pv.SpecError:
    """``call`` raises a one-line SpecError naming ``path`` and ``key``, holding ``words``."""
    error = one_line_error(pv.SpecError, call, *words)
    assert (error.path, error.key) == (str(path), key), str(error)
    assert str(error).startswith(f"{path}: {key}: "), str(error)
    return error


def real_values(vae) -> int:
    """Float32 values of the distinct storages of a built pair's parameters and buffers."""
    storages = {}
    for tensor in [*vae.parameters(), *vae.buffers()]:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()) // 4


def counted_values(vae) -> int:
    counts, _ = sizes.value_counts(vae.model_spec, vae.guide_spec, vae.data_shape[-1])
    return sum(counts.values())


def rnn_guide(cell: str, direction: str, layers: int = 1, hidden: int = 8) -> str:
    return (
        '[latent.z]\nfamily = "diagonal_normal"\ngiven = ["x"]\n'
        f'rnn = {{ cell = "{cell}", hidden = {hidden}, direction = "{direction}", '
        f"layers = {layers} }}\n"
        'net = { kind = "combiner" }\n'
    )


def sample_sites(trace) -> list[str]:
    return [n for n, site in trace.nodes.items() if site["type"] == "sample" and n != "data"]


# -- the bundled specs parse ----------------------------------------------------------------------


def test_bundled_dmm_parses_as_a_chain():
    model = read_model("dmm")
    assert model.path == str(bundled_dir("models") / "dmm.toml")
    assert model.sequential and list(model.chains) == ["z"] == list(model.latents)
    z = model.chains["z"]
    assert z.transition == NetSpec("gated", {"hidden": 200})
    assert z.initial == "learned" and z.given == () and z.net is None
    assert z.options["dim"] == 100 and z.family == "normal"
    assert model.observed.given == ("z",) and model.observed.transition is None
    assert model.observed.net.kind == "mlp" and model.default_guide == "dmm"

    guide = read_guide("dmm")
    entry = guide.latents["z"]
    assert entry.given == ("x",) and entry.net == NetSpec("combiner", {})
    # hidden and direction as written, cell as written, layers the default
    assert entry.rnn == {"cell": "rnn_relu", "hidden": 600, "direction": "backward", "layers": 1}
    assert entry.transition is None and entry.initial is None
    check_pair(model, guide)


def test_bundled_lgssm_parses_as_a_chain():
    model = read_model("lgssm")
    assert model.sequential and list(model.chains) == ["z"]
    z = model.chains["z"]
    assert z.transition == NetSpec("linear", {}) and z.initial == "zeros"
    assert z.options == {"dim": 2, "scale": "learned_per_dim"}
    guide = read_guide("lgssm")
    assert guide.latents["z"].rnn == {
        "cell": "gru",
        "hidden": 32,
        "direction": "backward",
        "layers": 1,
    }
    check_pair(model, guide)


def test_initial_defaults_to_zeros_and_rnn_options_to_their_defaults():
    model = parse_model(edited(DMM_MODEL, INITIAL + "\n", ""), "m.toml")
    assert model.chains["z"].initial == "zeros"
    guide = parse_guide(edited(DMM_GUIDE, RNN, "rnn = {}"), "g.toml")
    assert guide.latents["z"].rnn == {
        "cell": "gru",
        "hidden": 600,
        "direction": "backward",
        "layers": 1,
    }


def test_a_model_without_a_chain_is_not_sequential():
    model = read_model("bernoulli_vae")
    assert not model.sequential and model.chains == {}
    assert all(n.transition is None and n.initial is None for n in model.latents.values())
    assert all(n.rnn is None for n in read_guide("mean_field").latents.values())


# -- model refusals ---------------------------------------------------------------------------

SECOND_LATENT = '\n[latent.w]\nfamily = "standard_normal"\ndim = 2\n'
SECOND_CHAIN = '\n[latent.w]\nfamily = "normal"\ndim = 2\ntransition = { kind = "linear" }\n'


@pytest.mark.parametrize(
    "old, new, key, words",
    [
        (
            INITIAL,
            INITIAL + '\ngiven = ["x"]\nnet = { kind = "linear" }',
            "latent.z.given",
            ("a chain latent's parent is its own previous step", "it takes no 'given'"),
        ),
        (
            INITIAL,
            INITIAL + '\ngiven = ["z"]\nnet = { kind = "linear" }',
            "latent.z.given",
            ("it takes no 'given'",),
        ),
        (
            TRANSITION + "\n",
            "",
            "latent.z.initial",
            ("only a chain latent (one with a transition) has an initial state",),
        ),
        (
            INITIAL,
            'initial = "random"',
            "latent.z.initial",
            ("unknown value 'random'", "'learned', 'zeros'", "the state before the first step"),
        ),
        (INITIAL, "initial = 0", "latent.z.initial", ("unknown value 0",)),
        (
            TRANSITION,
            'transition = "gated"',
            "latent.z.transition",
            ("expected a table like { kind = \"mlp\" }, got 'gated'",),
        ),
        (
            TRANSITION,
            'transition = { kind = "gatted" }',
            "latent.z.transition.kind",
            ("unknown net 'gatted'", "did you mean 'gated'?"),
        ),
        (TRANSITION, "transition = { hidden = 200 }", "latent.z.transition.kind", ("required",)),
        (
            TRANSITION,
            'transition = { kind = "gated", hiden = 200 }',
            "latent.z.transition.hiden",
            ("unknown key; did you mean 'hidden'?",),
        ),
        (
            'family = "normal"\ndim = 100',
            'family = "categorical"\ncategories = 3',
            "latent.z.family",
            ("'categorical' cannot be a chain", "discrete chains are not supported"),
        ),
        (
            'family = "normal"',
            'family = "standard_normal"',
            "latent.z.family",
            ("'standard_normal' cannot be a chain",),
        ),
        (
            EMISSION,
            EMISSION + "\n" + SECOND_LATENT,
            "latent.w",
            ("a sequence model has one latent, its chain 'z'", "static or a second chain"),
        ),
        (
            "[latent.z]",
            SECOND_LATENT + "\n[latent.z]",
            "latent.w",
            ("a sequence model has one latent, its chain 'z'",),
        ),
        (EMISSION, EMISSION + "\n" + SECOND_CHAIN, "latent.w", ("one latent",)),
        (
            EMISSION,
            EMISSION + "\n\n[input.c]\ndim = 3\n",
            "input.c",
            ("a sequence model observes x alone", "inputs are not supported"),
        ),
        (
            EMISSION,
            EMISSION + '\n\n[observed.y]\nfamily = "bernoulli"\ngiven = ["z"]\n'
            'net = { kind = "linear" }\n',
            "observed.y",
            ("a sequence model observes x alone",),
        ),
        (
            X_GIVEN,
            'given = ["w"]',
            "observed.x.given",
            ('in a sequence model x_t is emitted from the chain alone: given = ["z"]',),
        ),
        (
            X_GIVEN + "\n" + EMISSION,
            "",
            "observed.x.given",
            ("emitted from the chain alone",),
        ),
        (
            TRANSITION + "\n" + INITIAL,
            'given = ["z"]\nnet = { kind = "gated" }',
            "latent.z.given",
            (
                "'z' cannot be its own parent",
                'set transition = { kind = "gated" } (or "linear") on it instead',
            ),
        ),
    ],
)
def test_a_bad_sequence_model_is_refused_by_key(old, new, key, words):
    text = edited(DMM_MODEL, old, new)
    refused(lambda: parse_model(text, "m.toml"), "m.toml", key, *words)


def test_a_bad_sequence_model_file_is_refused_by_its_path(tmp_path):
    path = model_file(tmp_path, edited(DMM_MODEL, INITIAL, 'initial = "random"'))
    refused(lambda: read_model(path), path, "latent.z.initial", "unknown value 'random'")
    refused(lambda: pv.load(path, data_shape=(7, 6)), path, "latent.z.initial", "unknown value")


# -- guide refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, key, words",
    [
        (
            RNN,
            'rnn = "gru"',
            "latent.z.rnn",
            ("expected a table like { cell = \"gru\" }, got 'gru'",),
        ),
        (
            'given = ["x"]',
            'given = ["y"]',
            "latent.z.given",
            ('an rnn reads the data sequence: given = ["x"]',),
        ),
        ('given = ["x"]', 'given = ["x", "c"]', "latent.z.given", ("an rnn reads",)),
        (
            'direction = "backward"',
            'directon = "backward"',
            "latent.z.rnn.directon",
            ("unknown key; did you mean 'direction'?",),
        ),
        (
            'cell = "rnn_relu"',
            'cell = "transformer"',
            "latent.z.rnn.cell",
            ("unknown value 'transformer'", "'gru', 'lstm', 'rnn_relu', 'rnn_tanh'"),
        ),
        (
            'direction = "backward"',
            'direction = "sideways"',
            "latent.z.rnn.direction",
            ("unknown value 'sideways'", "'backward', 'both', 'forward'"),
        ),
        ('direction = "backward"', "layers = 0", "latent.z.rnn.layers", ("positive integer",)),
        ("hidden = 600", "hidden = 2.5", "latent.z.rnn.hidden", ("positive integer",)),
        (RNN, TRANSITION, "latent.z.transition", ("unknown key",)),
    ],
)
def test_a_bad_sequence_guide_is_refused_by_key(old, new, key, words):
    text = edited(DMM_GUIDE, old, new)
    refused(lambda: parse_guide(text, "g.toml"), "g.toml", key, *words)


MEAN_FIELD_WITH_RNN = (bundled_dir("guides") / "mean_field.toml").read_text() + (
    'rnn = { cell = "gru" }\n'
)


def test_an_rnn_on_a_latent_that_is_not_a_chain_is_refused():
    bernoulli = read_model("bernoulli_vae")
    guide = parse_guide(MEAN_FIELD_WITH_RNN, "g.toml")  # parses: the model is not known yet
    refused(
        lambda: check_pair(bernoulli, guide),
        "g.toml",
        "latent.z.rnn",
        f"'z' is not a chain latent of {bernoulli.path}; an rnn reads a sequence",
    )


def test_an_rnn_on_a_latent_that_is_not_a_chain_is_refused_by_load(tmp_path):
    path = model_file(tmp_path, MEAN_FIELD_WITH_RNN, "g.toml")
    refused(
        lambda: pv.load("bernoulli_vae", path, data_shape=(64,)),
        path,
        "latent.z.rnn",
        "is not a chain latent",
    )


@pytest.mark.parametrize(
    "guide",
    [
        '[latent.z]\nfamily = "diagonal_normal"\n',
        '[latent.z]\nfamily = "enumerate"\n',
    ],
)
def test_a_chain_guide_entry_must_be_given_x(tmp_path, guide):
    path = model_file(tmp_path, guide, "g.toml")
    words = ("'z' is a chain", 'needs given = ["x"]', 'net = { kind = "combiner" }')
    refused(lambda: check_pair(read_model("dmm"), read_guide(path)), path, "latent.z.given", *words)
    refused(lambda: pv.load("dmm", path, data_shape=(7, 6)), path, "latent.z.given", *words)


# -- building ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, shape", [("dmm", (7, 6)), ("lgssm", (5, 4))])
def test_bundled_sequence_pairs_build_with_their_counted_size(name, shape):
    vae = pv.load(name, data_shape=shape, seed=0)
    assert isinstance(vae, pv.SequenceModel)
    assert vae.data_shape == shape and vae.chain == "z"
    assert counted_values(vae) == real_values(vae)
    steps, size = shape
    x = torch.randint(0, 2, (3, steps, size)).float()
    lengths = torch.tensor([steps, 2, steps - 1])
    model = pyro.poutine.trace(vae.model).get_trace(x, lengths)
    expected = [s for t in range(1, steps + 1) for s in (f"z_{t}", f"x_{t}")]
    assert sample_sites(model) == expected
    assert model.nodes["x_3"]["is_observed"]
    assert model.nodes["x_3"]["mask"].tolist() == [True, False, True]
    guide = pyro.poutine.trace(vae.guide).get_trace(x, lengths)
    assert sample_sites(guide) == [f"z_{t}" for t in range(1, steps + 1)]


def test_the_initial_state_is_learned_or_a_zero_buffer():
    dmm = pv.load("dmm", data_shape=(7, 6), seed=0)
    assert isinstance(dmm.generative["z"].initial, torch.nn.Parameter)
    lgssm = pv.load("lgssm", data_shape=(5, 4), seed=0)
    initial = lgssm.generative["z"].initial
    assert not isinstance(initial, torch.nn.Parameter) and torch.equal(initial, torch.zeros(2))
    assert any(b is initial for b in lgssm.buffers())


def test_a_gated_transition_with_a_learned_per_dim_scale_outputs_the_loc_only(tmp_path):
    text = edited(DMM_MODEL, INITIAL, INITIAL + '\nscale = "learned_per_dim"')
    text = edited(text, "dim = 100", "dim = 5")
    path = model_file(tmp_path, text)
    assert read_model(path).chains["z"].options["scale"] == "learned_per_dim"
    vae = pv.load(path, data_shape=(7, 6), seed=0)
    gated = vae.generative["z"].net
    assert gated.scale is None  # the scale is the family's parameter, not the net's output
    assert gated([torch.zeros(3, 5)]).shape == (3, 5)
    assert counted_values(vae) == real_values(vae)
    # The bundled dmm's gated transition outputs loc and scale: 2 × dim.
    dmm = pv.load("dmm", data_shape=(7, 6), seed=0)
    assert dmm.generative["z"].net([torch.zeros(3, 100)]).shape == (3, 200)


def test_a_gated_emission_of_another_size_is_refused_by_its_key(tmp_path):
    path = model_file(tmp_path, edited(DMM_MODEL, EMISSION, 'net = { kind = "gated" }'))
    refused(
        lambda: pv.load(path, data_shape=(7, 6)),
        path,
        "observed.x.net",
        "a 'gated' transition",
        "asked for 6 values from 100",
    )
    # Where the sizes agree (x_t of the chain's dim) it is a net like any other.
    same = edited(edited(DMM_MODEL, EMISSION, 'net = { kind = "gated" }'), "dim = 100", "dim = 6")
    vae = pv.load(model_file(tmp_path, same, "same.toml"), data_shape=(7, 6), seed=0)
    assert counted_values(vae) == real_values(vae)


@pytest.mark.parametrize("name, shape", [("dmm", (64,)), ("dmm", (1, 7, 6)), ("lgssm", (4,))])
def test_a_sequence_model_needs_data_of_shape_t_by_d(name, shape):
    path = bundled_dir("models") / f"{name}.toml"
    refused(
        lambda: pv.load(name, data_shape=shape),
        path,
        "latent.z.transition",
        "a sequence model takes sequences of shape (N, T, D)",
        f"one datapoint has shape {shape}, not (T, D)",
    )


@pytest.mark.parametrize("direction", ["forward", "backward", "both"])
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn_relu", "rnn_tanh"])
def test_every_cell_and_direction_builds_and_its_guide_runs(tmp_path, cell, direction):
    size = 3
    path = model_file(tmp_path, rnn_guide(cell, direction, layers=2), "g.toml")
    vae = pv.load("lgssm", path, data_shape=(5, size), seed=0)
    encoder = vae.inference["z"].encoder
    assert isinstance(encoder, SequenceEncoder)
    assert encoder.size == 8 * (2 if direction == "both" else 1)
    assert counted_values(vae) == real_values(vae)
    x = torch.randn(3, 5, size)
    trace = pyro.poutine.trace(vae.guide).get_trace(x, LENGTHS)
    assert sample_sites(trace) == [f"z_{t}" for t in range(1, 6)]
    assert all(trace.nodes[f"z_{t}"]["value"].shape == (3, 2) for t in range(1, 6))
    assert trace.nodes["z_5"]["mask"].tolist() == [True, False, False]


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn_relu", "rnn_tanh"])
def test_the_backward_states_within_a_length_ignore_the_padding(cell):
    torch.manual_seed(0)
    encoder = SequenceEncoder(3, cell, 4, "backward", 1)
    x = torch.randn(3, 5, 3)
    padded = x.clone()
    for n, length in enumerate(LENGTHS.tolist()):
        padded[n, length:] = 100.0
    with torch.no_grad():
        states, states_padded = encoder(x, LENGTHS), encoder(padded, LENGTHS)
        alone = encoder(x[1:2, :2], LENGTHS[1:2])  # the second sequence, cut to its length
    for n, length in enumerate(LENGTHS.tolist()):
        assert torch.allclose(states[n, :length], states_padded[n, :length], atol=1e-6)
    assert torch.allclose(states[1, :2], alone[0], atol=1e-6)


# -- pyro-vae check ---------------------------------------------------------------------------


def test_cli_check_prints_the_dmm_chain(capsys):
    assert main(["check", "dmm"]) == 0
    out = capsys.readouterr().out
    assert f"model {bundled_dir('models') / 'dmm.toml'}: Deep Markov model" in out
    assert "  z      latent    normal(dim=100)  <- z[t-1] via gated" in out
    assert ", learned at t=0\n" in out
    assert "  x      observed  bernoulli(dim=data)  <- z via mlp[100, 100] relu" in out
    assert (
        "  z      diagonal_normal  <- z[t-1], rnn(cell=rnn_relu, hidden=600, "
        "direction=backward, layers=1) over x via combiner\n"
    ) in out
    assert out.strip().endswith("ok")


def test_cli_check_prints_the_lgssm_chain(capsys):
    assert main(["check", "lgssm"]) == 0
    out = capsys.readouterr().out
    assert (
        "  z      latent    normal(dim=2, scale=learned_per_dim)  <- z[t-1] via linear, "
        "zeros at t=0\n"
    ) in out
    assert "  x      observed  normal(dim=data, scale=learned_per_dim)  <- z via linear" in out
    assert "rnn(cell=gru, hidden=32, direction=backward, layers=1) over x via combiner" in out
    assert out.strip().endswith("ok")


def test_cli_check_separates_the_gated_kind_from_its_width(capsys):
    assert main(["check", "dmm"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"<- z\[t-1\] via gated\b", out), out


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_cli_check_refuses_a_bad_sequence_model_in_one_line(tmp_path, capsys):
    path = model_file(tmp_path, edited(DMM_MODEL, INITIAL, 'initial = "random"'))
    assert main(["check", str(path)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {path}: latent.z.initial: unknown value 'random'")


def test_cli_check_refuses_a_bad_sequence_guide_in_one_line(tmp_path, capsys):
    guide = model_file(tmp_path, edited(DMM_GUIDE, 'cell = "rnn_relu"', 'cell = "tcn"'), "g.toml")
    assert main(["check", "dmm", str(guide)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {guide}: latent.z.rnn.cell: unknown value 'tcn'")


def test_cli_check_without_a_guide_builds_the_sequence_model_nets(tmp_path, capsys):
    """Without a guide (no default_guide) check builds the model's nets alone: the gated
    emission of the wrong size is found there."""
    text = edited(DMM_MODEL, 'default_guide = "dmm"\n', "")
    good = model_file(tmp_path, text, "good.toml")
    assert main(["check", str(good)]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")
    bad = model_file(tmp_path, edited(text, EMISSION, 'net = { kind = "gated" }'), "bad.toml")
    assert main(["check", str(bad)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {bad}: observed.x.net: a 'gated' transition")


def test_cli_check_builds_a_forward_rnn_guide(tmp_path, capsys):
    guide = model_file(tmp_path, rnn_guide("gru", "forward"), "g.toml")
    assert main(["check", "lgssm", str(guide)]) == 0
    assert "direction=forward" in capsys.readouterr().out

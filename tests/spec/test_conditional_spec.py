"""The spec rules of input nodes, several observed nodes and partially observed latents; each
refusal names the file and the key."""

import pytest

import pyro_vae as pv
from pyro_vae.spec.parse import parse_guide, parse_model

CVAE = """
[input.c]
dim = 3

[latent.z]
family = "normal"
dim = 2
given = ["c"]
net = { kind = "linear" }

[observed.x]
family = "bernoulli"
given = ["z", "c"]
net = { kind = "linear" }

[observed.w]
family = "normal"
given = ["z"]
net = { kind = "linear" }
"""

M2 = """
[latent.y]
family = "categorical"
categories = 4
observed = "partial"
data = "labels"

[latent.z]
family = "standard_normal"
dim = 2

[observed.x]
family = "bernoulli"
given = ["y", "z"]
net = { kind = "linear" }
"""


def test_inputs_and_several_observed_nodes_are_parsed_in_call_order():
    spec = parse_model(CVAE, "cvae.toml")
    assert list(spec.inputs) == ["c"] and spec.inputs["c"].options == {"dim": 3}
    assert list(spec.observed_nodes) == ["x", "w"] and list(spec.data_nodes) == ["x", "w", "c"]
    m2 = parse_model(M2, "m2.toml")
    assert list(m2.partial) == ["y"] and m2.latents["y"].data == "labels"
    assert list(m2.data_nodes) == ["x", "y"]


@pytest.mark.parametrize(
    "text, old, new, key, words",
    [
        (CVAE, "dim = 3", "dim = 0", "input.c.dim", "positive integer"),
        (CVAE, "dim = 3", "size = 3", "input.c.size", "unknown key"),
        (CVAE, '[observed.x]', '[observed.v]', "observed", "named 'x'"),
        (CVAE, 'given = ["c"]', 'given = ["w"]', "latent.z.given", "declare it an [input.w]"),
        (CVAE, "[input.c]", "[input.z]", "latent.z", "is an input node"),
        (CVAE, 'given = ["z"]\n', 'given = ["z", "x"]\n', "observed.w.given",
         "cannot depend on the observed x"),
        (CVAE, 'given = ["z", "c"]', 'given = ["c"]', "observed.x.given", "latent parents"),
        (CVAE, 'family = "bernoulli"', 'family = "bernoulli"\ndata = "pixels"',
         "observed.x.data", "takes no data key"),
        (M2, 'observed = "partial"', 'observed = "full"', "latent.y.observed", "partial"),
        (M2, 'family = "standard_normal"\ndim = 2',
         'family = "standard_normal"\ndim = 2\nobserved = "partial"', "latent.z.observed",
         "only a categorical latent"),
        (M2, 'observed = "partial"\n', "", "latent.y.data", 'only with observed = "partial"'),
    ],
)  # fmt: skip
def test_bad_conditional_specs_are_refused_by_key(text, old, new, key, words):
    assert old in text
    with pytest.raises(pv.SpecError) as caught:
        parse_model(text.replace(old, new, 1), "m.toml")
    assert caught.value.key == key and words in str(caught.value), str(caught.value)
    assert str(caught.value).startswith(f"m.toml: {key}: ")


GUIDE = """
[latent.y]
family = "categorical"
given = ["x"]
net = { kind = "linear" }
enumerate = "parallel"

[latent.z]
family = "diagonal_normal"
given = ["x", "y"]
net = { kind = "linear" }
"""


def test_a_guide_may_condition_on_a_latent_it_enumerates():
    vae = pv.LatentModel(parse_model(M2, "m2.toml"), parse_guide(GUIDE, "g.toml"), (5,))
    assert vae.guide_enumerated == {"y"} and not vae.has_fast_paths


@pytest.mark.parametrize(
    "old, new, key, words",
    [
        ('enumerate = "parallel"', 'enumerate = "sequential"', "latent.y.enumerate", "parallel"),
        ('given = ["x", "y"]', 'given = ["x", "labels"]', "latent.z.given",
         "neither a guide latent nor a data node"),
        ('family = "categorical"\ngiven = ["x"]\nnet = { kind = "linear" }\n'
         'enumerate = "parallel"', 'family = "enumerate"', "latent.z.given",
         'with enumerate = "parallel"'),
    ],
)  # fmt: skip
def test_bad_guides_of_partially_observed_nodes_are_refused_by_key(old, new, key, words):
    model = parse_model(M2, "m2.toml")
    with pytest.raises(pv.SpecError) as caught:
        pv.LatentModel(model, parse_guide(GUIDE.replace(old, new), "g.toml"), (5,))
    assert caught.value.key == key and words in str(caught.value), str(caught.value)


def test_an_input_without_a_size_needs_its_data():
    model = parse_model(CVAE.replace("dim = 3\n", "", 1), "cvae.toml")
    guide = parse_guide(
        '[latent.z]\nfamily = "diagonal_normal"\ngiven = ["x", "c"]\nnet = { kind = "linear" }\n',
        "g.toml",
    )
    with pytest.raises(pv.SpecError, match="cvae.toml: input.c: the size of 'c' is unknown"):
        pv.LatentModel(model, guide, {"x": (4,), "w": (2,)})
    vae = pv.LatentModel(model, guide, {"x": (4,), "w": (2,), "c": (7,)})
    assert vae.data_sizes == {"w": 2, "c": 7} and vae.argument_names == ("x", "w", "c")

"""The objectives by name (ObjectiveChoice): settings parsed into one value, refused by name in one
line (also when fuzzed), built in Python or parsed from text; the default objective of a model; and
pv.train's ways of naming one."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyro_vae as pv
from pyro_vae.objectives.registry import MAX_PARTICLES, OBJECTIVES, ObjectiveChoice
from tests.fuzzing import accepted_or_clean, fuzz
from tests.helpers import one_line_error, small_vae


def test_an_objective_with_its_settings_is_one_value():
    assert ObjectiveChoice.parse("renyi:k=5,alpha=0.25") == ObjectiveChoice(
        "renyi", 5, {"alpha": 0.25}
    )
    # Options are completed with their defaults, and the label says what was chosen.
    renyi = ObjectiveChoice("renyi", 3)
    assert renyi.options == {"alpha": 0.5} and renyi.label == "renyi(K=3, alpha=0.5)"
    # The number of particles and the options may come apart (pv.train's keywords, the CLI's
    # --num-particles), but not twice.
    assert ObjectiveChoice.parse("iwae", num_particles=7) == ObjectiveChoice("iwae", 7)
    assert ObjectiveChoice.parse("renyi", options={"alpha": 0}).options == {"alpha": 0.0}
    with pytest.raises(pv.PyroVaeError, match="sets k; do not also give"):
        ObjectiveChoice.parse("iwae:k=5", num_particles=5)
    with pytest.raises(pv.PyroVaeError, match="sets its options"):
        ObjectiveChoice.parse("renyi:alpha=0.2", options={"alpha": 0.3})


@pytest.mark.parametrize(
    "text, words",
    [
        ("iwea", "did you mean 'iwae'"),
        ("iwae:k=0", "k must be >= 1, got 0"),
        ("iwae:k=2.5", "expected name:k=K,option=value, got 'k=2.5'"),
        ("renyi:alpha=1", "option alpha: alpha = 1 is the ELBO"),
        ("renyi:alpha=nan", "option alpha: must be a finite number, got nan"),
        ("renyi:beta=2", "has no option 'beta' (options: alpha)"),
        ("trace:alpha=2", "has no option 'alpha' (options: classify)"),
    ],
)
def test_bad_objective_settings_are_refused_by_name(text, words):
    with pytest.raises(pv.PyroVaeError) as caught:
        ObjectiveChoice.parse(text)
    assert words in str(caught.value)


def test_train_takes_the_objective_as_text_choice_or_keywords():
    def objective(**settings):
        vae = pv.load("linear_gaussian", data_shape=(5,), seed=0)
        data = {"n_train": 50, "n_test": 20}
        return pv.train(
            vae, "linear-gaussian", epochs=1, data_options=data, progress=False, **settings
        ).config.objective

    expected = ObjectiveChoice("renyi", 2, {"alpha": 0.3})
    assert objective(objective="renyi:k=2,alpha=0.3") == expected
    assert objective(objective="renyi", num_particles=2, objective_options={"alpha": 0.3}) == (
        expected
    )
    assert objective(objective=expected) == expected
    with pytest.raises(pv.PyroVaeError, match="inside the ObjectiveChoice"):
        objective(objective=expected, num_particles=2)


def test_default_objective_suits_the_model():
    mixture = pv.load("mixture_1d", data_shape=(1,), seed=0)
    result = pv.train(mixture, "mixture-1d", epochs=1, progress=False)
    assert result.config.objective == ObjectiveChoice("trace")
    enumerated = pv.load("mixture_1d", "mixture_1d_enumerate", data_shape=(1,), seed=0)
    trained = pv.train(enumerated, "mixture-1d", epochs=1, progress=False)
    assert trained.config.objective.name == "trace_enum"
    trained = pv.train(small_vae(), "digits", epochs=1, progress=False)
    assert trained.config.objective.name == "trace_mean_field"


# -- bad settings: one line naming the option ------------------------------------------------------


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


# -- fuzzed: settings are accepted or refused in one line ------------------------------------------


@fuzz(500)
@given(st.text(max_size=60))
def test_objective_settings_on_arbitrary_text(text):
    accepted_or_clean(lambda: ObjectiveChoice.parse(text))


SETTING_VALUES = st.one_of(
    st.integers().map(str),
    st.floats().map(repr),
    st.text(max_size=8),
    st.sampled_from(["", "nan", "inf", "-inf", "1_0", "0x10", "1e400", "٥", " 3 "]),
)


@fuzz(300)
@given(
    st.sampled_from([*OBJECTIVES.names(), "", "iwea"]),
    st.lists(
        st.tuples(st.sampled_from(["k", "alpha", "", "beta", " k"]), SETTING_VALUES), max_size=4
    ),
    st.sampled_from([":", "", "::"]),
    st.sampled_from([",", ",,", ", "]),
)
def test_objective_settings_assembled_from_parts(name, pairs, colon, comma):
    text = name + colon + comma.join(f"{k}={v}" for k, v in pairs)
    if accepted_or_clean(lambda: ObjectiveChoice.parse(text)):
        choice = ObjectiveChoice.parse(text)
        assert 1 <= choice.num_particles <= 100_000
        assert all(math.isfinite(v) for v in choice.options.values())

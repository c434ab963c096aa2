"""The classification term (classify = α): the objective's loss is the ELBO's minus α times
Σ log q(y | x) over the labelled rows, and it is refused where no classifier exists."""

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.bundled import bundled_dir
from pyro_vae.objectives.registry import ObjectiveChoice, default_objective
from tests.helpers import model_file, one_line_error


@pytest.fixture
def m2(tmp_path):
    text = (bundled_dir("models") / "ss_vae.toml").read_text()
    small = text.replace("[500]", "[8]").replace("dim = 50", "dim = 2")
    return pv.load(model_file(tmp_path, small), "ss_vae", data_shape=(6,), seed=0)


@pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")
def test_the_classification_term_is_alpha_times_log_q_of_the_labels(m2):
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    y = torch.tensor([0, 3, 3, 9, 1])
    plain = ObjectiveChoice.parse("trace_enum").build(m2)
    classified = ObjectiveChoice.parse("trace_enum:classify=7").build(m2)
    log_q = float(m2.inference["y"]({"x": x}).log_prob(y).sum())
    losses = []
    for elbo, args in ((plain, (x, y)), (classified, (x, y)), (plain, (x,)), (classified, (x,))):
        pyro.set_rng_seed(0)
        losses.append(float(elbo.differentiable_loss(m2.model, m2.guide, *args)))
    assert losses[1] == pytest.approx(losses[0] - 7 * log_q, rel=1e-6)
    # what the training loop takes out of the ELBO it reports: the term, summed over calls
    assert classified.classification_total == pytest.approx(-7 * log_q, rel=1e-6)
    assert losses[3] == pytest.approx(losses[2], rel=1e-6)  # no label, no term


def test_classify_is_refused_without_a_classifier():
    vae = pv.load("bernoulli_vae", "mean_field", data_shape=(64,))
    one_line_error(
        pv.PyroVaeError,
        lambda: ObjectiveChoice.parse("trace:classify=1").build(vae),
        "classify=1",
        "no partially observed node",
    )
    one_line_error(pv.PyroVaeError, lambda: ObjectiveChoice.parse("trace:classify=-1"), ">= 0")


def test_a_spec_names_its_default_objective_and_a_bad_one_is_refused_by_key(tmp_path):
    text = (bundled_dir("models") / "ss_vae.toml").read_text()
    assert default_objective(pv.load("ss_vae", data_shape=(6,))) == "trace_enum:classify=46"
    bad = model_file(tmp_path, text.replace("classify=46", "classfy=46"))
    vae = pv.load(bad, "ss_vae", data_shape=(6,))
    one_line_error(pv.SpecError, lambda: default_objective(vae), "default_objective", "classfy")

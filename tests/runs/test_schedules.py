"""Learning-rate schedules: their factors, their refusals, and runs that follow and resume them."""

import json
import math

import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import main
from pyro_vae.runs.schedules import LrSchedule
from tests.helpers import SMALL, small_vae


def factors(text: str, epochs: int, at) -> list[float]:
    schedule = LrSchedule.parse(text)
    return [schedule.factor(e, epochs) for e in at]


def test_multistep_multiplies_from_each_milestone_on():
    got = factors("multistep:milestones=200+350,gamma=0.631", 500, [1, 199, 200, 349, 350, 500])
    assert got == pytest.approx([1, 1, 0.631, 0.631, 0.631**2, 0.631**2])


def test_exponential_and_cosine():
    assert factors("exponential:gamma=0.9", 10, [1, 2, 3]) == pytest.approx([1, 0.9, 0.81])
    cosine = factors("cosine:floor=0.1", 11, [1, 6, 11])
    assert cosine == pytest.approx([1, 0.55, 0.1])


def test_the_iwae_passes_last_three_to_the_i_epochs():
    """Burda et al.: pass i lasts 3^i epochs at 10^(-i/7); 8 passes are 3280 epochs."""
    ends = [sum(3**j for j in range(i + 1)) for i in range(8)]  # last epoch of each pass
    assert ends[-1] == 3280
    for i, end in enumerate(ends):
        assert factors("iwae", 3280, [end]) == pytest.approx([10 ** (-i / 7)])
        assert factors("iwae", 3280, [end + 1]) == pytest.approx([10 ** (-(i + 1) / 7)])


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "expected NAME[:option=value,...]"),
        ("cosin", "did you mean 'cosine'"),
        ("multistep", "milestones: required key is missing"),
        ("multistep:milestones=0", "milestones"),
        ("exponential:gamma=-1", "gamma: expected a positive number"),
        ("exponential:gama=0.9", "gama: unknown key; did you mean 'gamma'"),
        ("cosine:floor=2", "floor: expected a number from 0 to 1"),
        ("cosine:floor", "expected option=value"),
        ("iwae:base=1", "base: expected an integer >= 2"),
        ("multistep:milestones=a", "milestones: expected a number"),
    ],
)
def test_bad_schedules_are_refused_in_one_line(text, words):
    with pytest.raises(pv.PyroVaeError) as error:
        LrSchedule.parse(text)
    message = str(error.value)
    assert message.startswith("--lr-schedule ") and words in message and "\n" not in message


def test_the_command_line_refuses_a_bad_schedule_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--model", "bernoulli_vae", "--lr-schedule", "cosin", "--out", str(run)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'cosine'" in err[0]
    assert not run.exists() or not any(run.iterdir())


def test_a_run_follows_its_schedule_and_resumes_it_exactly(tmp_path):
    settings = {
        **SMALL,
        "epochs": 3,
        "lr": 1e-2,
        "lr_schedule": "multistep:milestones=2+3,gamma=0.5",
    }
    straight = pv.train(small_vae(), "digits", out=tmp_path / "a", **settings)
    assert [r["lr"] for r in straight.history] == pytest.approx([1e-2, 5e-3, 2.5e-3])
    pv.train(small_vae(), "digits", out=tmp_path / "b", **{**settings, "epochs": 1})
    resumed = pv.resume(tmp_path / "b", epochs=3, progress=False)
    for p, q in zip(straight.vae.state_dict().values(), resumed.vae.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(p, q)
    config = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    assert config["lr_schedule"] == "multistep:milestones=2+3,gamma=0.5"
    assert math.isclose(resumed.history[-1]["lr"], 2.5e-3)


def test_plateau_cuts_as_torchs_reduce_on_plateau_on_the_same_metrics():
    """The schedule replays the history; torch's scheduler steps through it: the same rates."""
    values = [-100, -90, -91, -92, -89.5, -89.6, -89.7, -89.8, -80, -80.5, -81, -82, -83]
    history = [{"epoch": e, "train_elbo": v} for e, v in enumerate(values, 1)]
    text = "plateau:patience=1,gamma=0.5,threshold=0.2,cooldown=1"
    schedule = LrSchedule.parse(text)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    torchs = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=1, threshold=0.2, threshold_mode="abs",
        cooldown=1, eps=0.0,
    )  # fmt: skip
    for epoch, value in enumerate(values, 1):
        assert schedule.factor(epoch, 20, history) == pytest.approx(optimizer.param_groups[0]["lr"])
        torchs.step(value)
    assert schedule.factor(len(values) + 1, 20, history) < 0.2  # it did cut, more than once


def test_plateau_watches_the_validation_elbo_where_there_is_one():
    history = [
        {"epoch": 1, "train_elbo": -10.0, "valid_elbo": -10.0},
        {"epoch": 2, "train_elbo": -9.0, "valid_elbo": -11.0},  # train better, validation not
    ]
    assert LrSchedule.parse("plateau:patience=0").factor(3, 5, history) == pytest.approx(0.1)
    no_valid = [{k: v for k, v in r.items() if k != "valid_elbo"} for r in history]
    assert LrSchedule.parse("plateau:patience=0").factor(3, 5, no_valid) == 1.0

"""What a new user meets first works as written: the README's first Python snippets run, and
what they print is readable (a table; one-line reprs)."""

import re

import pyro_vae as pv
from tests.helpers import REPO

README = REPO / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_the_first_snippets_run_as_written(capsys):
    first, second = python_blocks()[:2]
    names: dict = {}
    exec(compile(first, "README.md (first snippet)", "exec"), names)
    run = names["run"]
    assert isinstance(run, pv.TrainResult) and run.final["epoch"] == 50
    printed = capsys.readouterr().out
    assert "test ELBO" in printed and "tensor(" not in printed
    line = repr(run)
    assert line.startswith("TrainResult(") and "\n" not in line and len(line) < 300
    exec(compile(second, "README.md (second snippet)", "exec"), names)
    printed = capsys.readouterr().out
    assert "log p̂(x)" in printed and "KL(q(z|x) ‖ p(z|x))" in printed
    assert names["gap"].to_dict()["num_data"] == 16

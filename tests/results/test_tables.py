"""The helpers of the results' views: numbers, missing values, alignment, Markdown and JSON."""

import math

import torch

from pyro_vae.results.tables import MISSING, Table, fmt, fmt_pm, jsonable, text_table


def test_numbers_missing_values_and_alignment():
    assert fmt(None) == fmt(math.nan) == MISSING and fmt(math.nan, "6.2f") == "     –"
    assert fmt_pm(1.23456, math.nan) == "1.235 ± –" and fmt_pm(None, 0.1) == MISSING
    lines = text_table(["", "value"], [["log p̂(x)", "-1.5"], ["ESS", "10.25"]])
    # The combining hat of p̂ takes no column: the numbers end in the same one.
    assert len({len(line.replace("\u0302", "")) for line in lines}) == 1
    assert jsonable({1: torch.tensor([1.0, math.inf, math.nan]), "k": (True, 2)}) == {
        "1": [1.0, None, None],
        "k": [True, 2],
    }
    markdown = Table("t", ["a", "b"], [["q(z|x)", 1]]).markdown()
    assert "| q(z\\|x) | 1 |" in markdown

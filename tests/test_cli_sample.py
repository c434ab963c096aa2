"""``pyro-vae sample``: bad options and output paths refused in one line, the run's files left as
they were."""

import pytest


@pytest.mark.parametrize(
    "options, words",
    [
        (["--n", "0"], "argument --n"),
        (["--n", str(10**9)], "argument --n"),
        (["--output", "samples.txt"], "--output samples.txt: expected the path of a .png file"),
        (["--seed", "-5"], "argument --seed"),
    ],
)
def test_sample_refuses_bad_options(run, refused, options, words, snapshot):
    before = snapshot(run)
    refused(["sample", str(run), *options], *words)
    assert snapshot(run) == before


def test_sample_output_that_is_a_directory_is_refused(run, tmp_path, refused):
    folder = tmp_path / "pictures.png"
    folder.mkdir()
    refused(["sample", str(run), "--output", str(folder)], "expected the path of a .png")


def test_sample_output_under_a_file_is_refused(run, tmp_path, refused):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "pictures" / "samples.png"
    refused(["sample", str(run), "--output", str(out)], f"lies under {blocker}")

"""Sizes that would not fit in memory are refused with the figure, before any work: a training step,
AIS chains."""

from pyro_vae.cli import main
from tests.helpers import train_cli


def test_a_step_too_large_for_the_machine_is_refused_with_its_size(tmp_path, refused, monkeypatch):
    import pyro_vae.runs.memory as memory

    monkeypatch.setattr(memory, "device_bytes", lambda device: 50 * 2**20)  # a 50 MiB machine
    out = tmp_path / "new"
    err = refused(train_cli(out, "--objective", "iwae:k=1000"), "--batch-size 100")
    assert "iwae(K=1000)" in err and "100,000 rows" in err and "GiB" in err
    assert not out.exists()
    assert main(train_cli(out, "--objective", "iwae:k=2", "--epochs", "1")) == 0


def test_ais_chains_too_large_for_the_machine_are_refused_before_sampling(
    run, refused, monkeypatch, snapshot
):
    import pyro_vae.runs.memory as memory

    monkeypatch.setattr(memory, "device_bytes", lambda device: 20 * 2**20)  # a 20 MiB machine
    before = snapshot(run)
    argv = ["evaluate", str(run), "--ais", "--ais-samples", "100000", "--num-samples", "2"]
    err = refused(argv, "--ais-samples 100000 with --batch-size 100", "GiB")
    assert "rows scored at once" in err
    assert snapshot(run) == before

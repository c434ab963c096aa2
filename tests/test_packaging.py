"""The package ships every module and the bundled specs, also in a non-editable install."""

import configparser
import subprocess
import sys
import zipfile

import pytest


def test_setup_cfg_lists_every_subpackage(repo):
    config = configparser.ConfigParser()
    config.read(repo / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {
        ".".join(p.parent.relative_to(repo).parts) for p in (repo / "pyro_vae").rglob("__init__.py")
    }
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"
    assert {"pyro_vae.bundled.models", "pyro_vae.bundled.guides"} <= listed


@pytest.mark.slow
def test_wheel_resolves_bundled_specs_outside_the_checkout(tmp_path, repo):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(repo),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("models", "guides"):
        for spec in (repo / kind).glob("*.toml"):
            assert f"pyro_vae/bundled/{kind}/{spec.name}" in names
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(tmp_path / "site"),
            str(wheel),
        ],
        check=True,
    )
    code = (
        "import pyro_vae as pv; vae = pv.load('hierarchical_vae', data_shape=(64,)); "
        "print(vae.model_spec.path)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        check=True,
        text=True,
        capture_output=True,
        env={"PYTHONPATH": str(tmp_path / "site")},
    ).stdout
    assert out.strip().startswith(str(tmp_path / "site"))

import os
from pathlib import Path

import pyro
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def shared_data(monkeypatch):
    """Point PYRO_VAE_DATA at ../shared/data (skip when it is not there)."""
    root = Path(os.environ.get("PYRO_VAE_DATA", SHARED_DATA))
    if not (root / "binarized-mnist").is_dir():
        pytest.skip("real data sets not available")
    monkeypatch.setenv("PYRO_VAE_DATA", str(root))
    return root

"""Property-based fuzzing of every reader of user input: whatever it is given, it either
accepts it or raises a :class:`~pyro_vae.errors.PyroVaeError` with a one-line message; it never
raises anything else (a ``TypeError``, a ``RecursionError``, an allocator's ``MemoryError``).

The fuzz tests sit with the tests of what they read; examples per test (``max_examples``; all
of them run in about 15 s on 2 cores):

- ``spec/test_spec.py``: spec reader on arbitrary text: 300; on TOML-ish text assembled from spec
  fragments: 300; bundled model specs mutated (keys dropped, renamed or added, values replaced
  by random integers, floats, strings, booleans, dates, lists and nested tables), parsed and
  built into a :class:`~pyro_vae.model.latent_model.LatentModel`: 300; bundled guide specs
  mutated: 200;
- ``objectives/test_registry.py``: objective settings on arbitrary text: 500; on
  ``name:key=value,...`` assembled from parts: 300;
- ``data/test_registry.py``: data loader on arbitrary option dicts for every registered set: 300;
  ``data/test_arrays.py``: on random bytes written as an ``.npz`` / ``.npy`` file: 200; on valid
  files damaged (bytes flipped, cut, inserted): 300.

2,700 examples in all, the same ones on every run (``PYRO_VAE_FUZZ_EXPLORE=1`` draws new
ones). While fuzzing, the model size limit (``PYRO_VAE_MAX_BYTES``) and the
synthetic sets' bound on counts are lowered, so that an accepted example stays cheap to build.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from pyro_vae.data import synthetic
from pyro_vae.errors import PyroVaeError
from pyro_vae.model import sizes

# Hypothesis keeps a cache of constants in ./.hypothesis; not in the working tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "pyro_vae-hypothesis")


#: Set to explore: each run then draws new examples (CI draws the same ones every time).
EXPLORE_ENV = "PYRO_VAE_FUZZ_EXPLORE"


def fuzz(examples: int) -> settings:
    """``examples`` examples, no deadline (a first build imports and warms up torch), and no
    example database: nothing is written into the working tree. The examples are derived from
    each test's name, so a run fails or passes as the last one did, unless
    ``PYRO_VAE_FUZZ_EXPLORE`` is set."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=not os.environ.get(EXPLORE_ENV),
        suppress_health_check=[HealthCheck.too_slow],
    )


def accepted_or_clean(call):
    """Run ``call``; a :class:`PyroVaeError` must be one line. Returns whether it accepted."""
    try:
        call()
    except PyroVaeError as e:
        assert "\n" not in str(e) and "\r" not in str(e), str(e)
        assert len(str(e)) < 2000, str(e)[:300]
        return False
    return True


@contextlib.contextmanager
def small_limits():
    """A model limit of 64 MiB and synthetic sets of at most 2,000 rows while fuzzing."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(sizes.MAX_BYTES_ENV, str(64 * 2**20))
        patch.setattr(synthetic, "MAX_COUNT", 2000)
        yield

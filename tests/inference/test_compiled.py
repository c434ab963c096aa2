"""Importance weights from passes compiled by torch.compile: the same estimates as the eager
passes (at every shape a pass runs at, the last one padded), chosen automatically only for
large estimates, and left, with a warning, where compiling fails or disagrees."""

import pytest
import torch

import pyro_vae as pv
import pyro_vae.inference.compiled as compiled_module
import pyro_vae.inference.log_likelihood as log_likelihood_module
from pyro_vae.inference.compiled import compile_pays


def _estimates(vae, x, **options):
    """The seeded estimate of ``x`` uncompiled and compiled, the same draws for both."""
    eager = pv.log_likelihood(vae.model, vae.guide, x, compile=False, **options)
    compiled = pv.log_likelihood(vae.model, vae.guide, x, compile=True, **options)
    return eager, compiled


def test_compiled_passes_give_the_eager_estimates(digits):
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    x = digits[:6]
    # K = 2500 in chunks of 1000: passes of 834 samples, the last of each chunk padded.
    eager, compiled = _estimates(vae, x, num_samples=2500, seed=0, chunk_size=1000)
    assert torch.allclose(compiled.log_px, eager.log_px, rtol=0, atol=1e-4)
    assert torch.allclose(compiled.stderr, eager.stderr, rtol=1e-3, atol=1e-6)
    assert compiled.details["compile_seconds"] > 0 and "compile_seconds" not in eager.details
    # Unseeded: the whole batch per pass, another compiled shape, the same draws again.
    torch.manual_seed(5)
    eager = pv.log_likelihood(vae.model, vae.guide, x, num_samples=300, compile=False)
    torch.manual_seed(5)
    compiled = pv.log_likelihood(vae.model, vae.guide, x, num_samples=300, compile=True)
    assert torch.allclose(compiled.log_px, eager.log_px, rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gaussian_vae", "hierarchical_vae", "mixture_prior_vae"])
def test_compiled_passes_of_other_families_give_the_eager_estimates(name, digits):
    vae = pv.load(name, data_shape=(64,), seed=0)
    eager, compiled = _estimates(vae, digits[:4], num_samples=700, seed=1)
    assert "compile_seconds" in compiled.details
    assert torch.allclose(compiled.log_px, eager.log_px, rtol=0, atol=1e-3)


@pytest.mark.slow
def test_compiled_bf16_passes_stay_close_to_float32(digits):
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    options = {"num_samples": 1000, "seed": 0}
    reference = pv.log_likelihood(vae.model, vae.guide, digits[:8], compile=False, **options)
    eager, compiled = _estimates(vae, digits[:8], precision="bf16", **options)
    assert "compile_seconds" in compiled.details
    # bf16 moves each estimate by far less than its Monte Carlo error, compiled or not.
    for estimate in (eager, compiled):
        change = (estimate.log_px - reference.log_px).abs()
        assert change.mean() < 0.1 * reference.stderr.mean()


def _counting_pass(calls, shift=0.0):
    """A stand-in for the compiled pass: the eager pass (plus ``shift``), counted."""

    def compiled_pass(owner):
        def score(x, values, from_guide):
            calls.append(next(iter(values.values())).shape[:2])
            return owner.pass_log_weights(x, values, from_guide) + shift

        return score

    return compiled_pass


def test_every_pass_has_the_shape_the_check_compiled(digits, monkeypatch):
    calls = []
    monkeypatch.setattr(log_likelihood_module, "compiled_pass", _counting_pass(calls))
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    pv.log_likelihood(vae.model, vae.guide, digits[:3], num_samples=2500, seed=0, compile=True)
    assert calls and set(calls) == {(834, 1)}  # 3 passes of the 2500 samples, per datapoint


def test_auto_compiles_only_estimates_large_enough_to_pay(digits, monkeypatch):
    assert compile_pays(5000, 10_000) and not compile_pays(1000, 300)
    calls = []
    monkeypatch.setattr(log_likelihood_module, "compiled_pass", _counting_pass(calls))
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    small = pv.log_likelihood(vae.model, vae.guide, digits[:4], num_samples=100, seed=0)
    assert not calls and "compile_seconds" not in small.details
    monkeypatch.setattr(compiled_module, "COMPILE_ROWS", 400)
    large = pv.log_likelihood(vae.model, vae.guide, digits[:4], num_samples=100, seed=0)
    assert calls and "compile_seconds" in large.details
    assert torch.allclose(large.log_px, small.log_px, rtol=0, atol=1e-5)


def test_a_failing_compilation_falls_back_to_the_eager_passes(digits, monkeypatch):
    def failing(owner):
        def score(x, values, from_guide):
            raise RuntimeError("no C++ compiler found\nmore detail")

        return score

    monkeypatch.setattr(log_likelihood_module, "compiled_pass", failing)
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    eager = pv.log_likelihood(vae.model, vae.guide, digits[:3], num_samples=50, seed=0)
    with pytest.warns(UserWarning, match=r"torch.compile failed \(no C\+\+ compiler found\)"):
        got = pv.log_likelihood(
            vae.model, vae.guide, digits[:3], num_samples=50, seed=0, compile=True
        )
    assert torch.equal(got.log_px, eager.log_px) and "compile_seconds" not in got.details


def test_a_compiled_pass_that_disagrees_is_not_used(digits, monkeypatch):
    calls = []
    monkeypatch.setattr(log_likelihood_module, "compiled_pass", _counting_pass(calls, 1.0))
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    eager = pv.log_likelihood(vae.model, vae.guide, digits[:3], num_samples=50, seed=0)
    with pytest.warns(UserWarning, match="compiled importance_log_weights disagree"):
        got = pv.log_likelihood(
            vae.model, vae.guide, digits[:3], num_samples=50, seed=0, compile=True
        )
    assert len(calls) == 1  # the check only
    assert torch.equal(got.log_px, eager.log_px)


def test_a_pair_without_modules_to_compile_is_traced(digits):
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)

    def model(x):  # a plain function: no fast path, nothing to compile
        return vae.model(x)

    traced = pv.log_likelihood(model, vae.guide, digits[:3], num_samples=40, seed=0, compile=True)
    fast = pv.log_likelihood(vae.model, vae.guide, digits[:3], num_samples=40, seed=0)
    assert "compile_seconds" not in traced.details
    assert torch.allclose(traced.log_px, fast.log_px, rtol=0, atol=1e-4)


def test_impossible_compile_options_are_refused(digits):
    vae = pv.load("bernoulli_vae", data_shape=(64,), seed=0)
    with pytest.raises(ValueError, match="compile must be True, False or None"):
        pv.log_likelihood(vae.model, vae.guide, digits[:2], num_samples=5, compile="yes")
    with pytest.raises(ValueError, match="compile is for method='is'"):
        pv.log_likelihood(
            vae.model, vae.guide, digits[:2], num_samples=5, method="ais", compile=True
        )

"""How the evaluation table reads parts of a report: latent usage grouped, so that a chain's
steps take one line."""

from pyro_vae.results.evaluation import LatentStats, UsageSection, _usage_lines


def _stats(active: int) -> LatentStats:
    return LatentStats(dims=2, active_units=active, kl_total=1.0, kl_per_dim=None, activity=[])


def test_latents_alike_share_a_line_and_others_keep_theirs():
    latents = {f"z_{t}": _stats(2) for t in range(1, 21)}
    latents["z_20"] = _stats(1)
    lines = _usage_lines(UsageSection(0.01, latents))
    assert lines == [
        "z_1, …, z_19 (19 latents): 2 of 2 dimensions active",
        "z_20: 1 of 2 dimensions active",
    ]


def test_no_usage_no_lines():
    assert _usage_lines(None) == []

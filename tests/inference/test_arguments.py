"""Arguments beyond x reach model and guide; those with one row per datapoint are sliced with it
(tensors, PackedSequence, tuples, lists, dicts, a type registered by the user), the rest passed
whole; an argument that cannot be sliced is named."""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import pyro_vae as pv
from pyro_vae.inference.arguments import register_slicer, rows_of, take, take_rows

T, D, H = 5, 2, 8


class SequencePair(nn.Module):
    """A deep-Markov-like pair written as Pyro's dmm.py writes its calls: the padded batch, the
    same sequences reversed and packed for the guide's RNN, a mask, the lengths, and a scalar."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(D, H, batch_first=True)
        self.to_loc = nn.Linear(H, 1)

    def model(self, batch, reversed_packed, mask, lengths, annealing=1.0):
        with pyro.plate("sequences", len(batch)):
            z = torch.zeros(len(batch))
            for t in pyro.markov(range(T)):
                with poutine.scale(scale=annealing):
                    z = pyro.sample(f"z_{t}", dist.Normal(0.9 * z, 1.0).mask(mask[:, t]))
                pyro.sample(
                    f"x_{t}",
                    dist.Normal(z[..., None], 0.5).mask(mask[:, t : t + 1]).to_event(1),
                    obs=batch[:, t],
                )

    def guide(self, batch, reversed_packed, mask, lengths, annealing=1.0):
        pyro.module("pair", self)
        output, _ = self.rnn(reversed_packed)
        padded, _ = pad_packed_sequence(output, batch_first=True, total_length=T)
        loc = self.to_loc(padded).squeeze(-1)  # (N, T), in reversed time
        with pyro.plate("sequences", len(batch)):
            for t in pyro.markov(range(T)):
                pyro.sample(f"z_{t}", dist.Normal(loc[:, T - 1 - t], 0.8).mask(mask[:, t]))


def sequences(n=6):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, T + 1, (n,), generator=g)
    batch = torch.randn(n, T, D, generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    batch = batch * mask[..., None]
    reversed_batch = torch.stack(
        [torch.cat([b[:n_].flip(0), b[n_:]]) for b, n_ in zip(batch, lengths, strict=True)]
    )
    packed = pack_padded_sequence(reversed_batch, lengths, batch_first=True, enforce_sorted=False)
    return batch, packed, mask, lengths


def test_a_packed_sequence_is_sliced_row_by_row():
    batch, packed, mask, lengths = sequences()
    assert rows_of(packed) == 6
    one = take(packed, torch.tensor([3]))
    padded, one_length = pad_packed_sequence(one, batch_first=True)
    whole, _ = pad_packed_sequence(packed, batch_first=True)
    assert one_length.tolist() == [lengths[3].item()]
    assert torch.equal(padded[0, : lengths[3]], whole[3, : lengths[3]])
    args, kwargs = take_rows(
        (batch, packed, (mask, 1.5)), {"lengths": lengths}, 6, torch.tensor([4, 1])
    )
    assert args[0].shape == (2, T, D) and rows_of(args[1]) == 2 and args[2][1] == 1.5
    assert torch.equal(kwargs["lengths"], lengths[[4, 1]])


def test_a_pair_called_with_every_argument_dmm_style():
    pair = SequencePair()
    batch, packed, mask, lengths = sequences()
    pyro.set_rng_seed(0)
    together = pv.log_likelihood(
        pair.model, pair.guide, batch, packed, mask, lengths, 0.5, num_samples=400
    )
    alone = pv.log_likelihood(
        pair.model, pair.guide, batch, packed, mask, lengths, 0.5, num_samples=400, seed=0
    )
    assert together.num_data == alone.num_data == 6
    assert (
        (together.log_px - alone.log_px).abs() < 4 * torch.hypot(together.stderr, alone.stderr)
    ).all()
    e = together.estimand
    # The model reads the mask; the reversed copy (the guide's) and the lengths it does not.
    assert e.observed == ("batch",) and e.given == ("mask",) and e.log_p() == "log p(batch | mask)"
    # The plate's name is the DMM's own; the scale (annealing) is left out of log p.
    assert (
        pv.elbo_gap(
            pair.model, pair.guide, batch, packed, mask, lengths, 0.5, num_samples=50
        ).num_data
        == 6
    )


class Wrapped:
    """An argument of the user's own type holding the data."""

    def __init__(self, rows):
        self.rows = rows


def test_a_type_of_ones_own_is_sliced_once_registered():
    def model(w):
        with pyro.plate("data", len(w.rows)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=w.rows)

    def guide(w):
        with pyro.plate("data", len(w.rows)):
            pyro.sample("z", dist.Normal(w.rows / 2, 0.7))

    data = Wrapped(torch.randn(5))
    with pytest.raises(pv.ModelGuideError) as refused:
        pv.log_likelihood(model, guide, data, num_samples=10, seed=0)
    assert "could not slice: w (Wrapped)" in str(refused.value) and "register_slicer" in str(
        refused.value
    )
    register_slicer(Wrapped, lambda w: len(w.rows), lambda w, index: Wrapped(w.rows[index]))
    assert pv.log_likelihood(model, guide, data, num_samples=10, seed=0).num_data == 5

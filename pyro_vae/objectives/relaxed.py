"""The Gumbel-softmax / Concrete relaxation of discrete latents (Jang et al. 2017, "Categorical
Reparameterization with Gumbel-Softmax"; Maddison et al. 2017, "The Concrete Distribution").

Every Bernoulli or one-hot categorical latent, in the guide and in the model alike, is replaced
by its relaxation at temperature :math:`\\tau`: a Bernoulli with logits :math:`\\ell` by
:math:`\\sigma(y)`, :math:`y = (\\ell + \\log u - \\log(1 - u)) / \\tau`, a one-hot categorical by
:math:`\\operatorname{softmax}((\\ell + g) / \\tau)` with Gumbel noise :math:`g`. Both are
reparameterized, so the relaxed ELBO

.. math:: \\mathcal L_\\tau = \\mathbb E_{q_\\tau}\\big[\\log p_\\tau(x, \\tilde z)
          - \\log q_\\tau(\\tilde z \\mid x)\\big]

has a path gradient of low variance. It is the ELBO of a different, relaxed model: its value and
its gradient are biased for the discrete ELBO, the bias vanishing as :math:`\\tau \\to 0` while
the variance grows. The training metrics' ``train_elbo`` is :math:`\\mathcal L_\\tau`; the test
ELBO stays the discrete one.

The densities are taken in logit space (of :math:`y`, and of the log-simplex for categories),
where they are stable: each site's sigmoid (or exp) is one transform object shared by the
guide's and the model's relaxed distributions, and it remembers the :math:`y` it mapped, so the
model's density at the guide's draw is never computed from a saturated :math:`\\sigma(y)`.

A categorical latent with integer values (``Categorical``) is relaxed in a spec-built pair,
whose nets read categorical values as vectors while it runs relaxed (one-hot for the observed
ones: :mod:`pyro_vae.model.relaxing`). A hand-written program indexes with such a value, so
there it is refused: write it as ``OneHotCategorical``.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.infer import Trace_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from torch.distributions import transforms
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from ..errors import PyroVaeError
from ..model.latent_model import LatentModel
from ..model.relaxing import vector_categories


class LogitConcrete(LogitRelaxedBernoulli, TorchDistributionMixin):
    """The binary Concrete in logit space, drawn and scored without saturating:
    :math:`y = (\\ell + L)/\\tau` with logistic L, :math:`\\log p(y) = \\log\\tau + d -
    2\\,\\mathrm{softplus}(d)`, :math:`d = \\ell - \\tau y`."""

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(torch.Size(sample_shape))
        u = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device)
        u = u.clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps)
        return (self.logits + u.log() - (-u).log1p()) / self.temperature

    def log_prob(self, value):
        diff = self.logits - value * self.temperature
        return self.temperature.log() + diff - 2 * F.softplus(diff)


class ExpConcrete(ExpRelaxedCategorical, TorchDistributionMixin):
    """torch's categorical Concrete on the log-simplex (already stable), with Pyro's methods."""


def relaxed(fn, temperature: torch.Tensor, squash: transforms.Transform, name: str, coded: bool):
    """The relaxation of a Bernoulli or one-hot categorical distribution (through Pyro's
    ``Independent`` and expanded wrappers), its values mapped by ``squash``; ``coded``: an
    integer-coded categorical too, its values then vectors over its categories."""
    base = _base(fn)
    shape = fn.batch_shape + fn.event_shape
    if isinstance(base, torch.distributions.Bernoulli):
        inner = LogitConcrete(temperature.to(base.logits), logits=base.logits.expand(shape))
    elif isinstance(base, torch.distributions.OneHotCategorical):
        inner = ExpConcrete(temperature.to(base.logits), logits=base.logits.expand(shape))
    elif isinstance(base, torch.distributions.Categorical) and coded:
        logits = base.logits.expand(shape + base.logits.shape[-1:])
        inner = ExpConcrete(temperature.to(logits), logits=logits)
    else:
        kind = "a Categorical with integer values (write it as OneHotCategorical)"
        kind = kind if isinstance(base, torch.distributions.Categorical) else type(base).__name__
        raise PyroVaeError(
            f"objective 'relaxed': site '{name}' is {kind}; only Bernoulli and one-hot "
            f"categorical latents have a relaxation"
        )
    out = dist.TransformedDistribution(inner, [squash])
    events = len(fn.event_shape) - len(base.event_shape)  # the wrappers' event dims
    return out.to_event(events) if events else out


def one_hot(fn):
    """An integer-coded categorical as its one-hot equivalent (the same density of the
    one-hot codes)."""
    base = _base(fn)
    shape = fn.batch_shape + fn.event_shape + base.logits.shape[-1:]
    coded = dist.OneHotCategorical(logits=base.logits.expand(shape))
    events = len(fn.event_shape)
    return coded.to_event(events) if events else coded


class Relaxation(Messenger):
    """Replaces each unobserved Bernoulli or one-hot categorical site by its relaxation. One
    instance serves one run of the guide and then of the model: a site's squashing transform
    is shared between them (and caches the logit of its last draw).

    ``coded``: a spec-built pair, whose nets and data read categorical values as vectors while
    they run relaxed (:mod:`pyro_vae.model.relaxing`): its integer-coded categorical latents
    are relaxed too, and its observed ones scored as one-hot codes.
    """

    def __init__(self, temperature: float, coded: bool = False):
        super().__init__()
        self.temperature, self.coded = torch.tensor(float(temperature)), coded
        self.squashes: dict[str, transforms.Transform] = {}

    def _pyro_sample(self, msg):
        fn = msg["fn"]
        if isinstance(fn, _Subsample) or getattr(fn, "has_rsample", False):
            return
        coded = isinstance(_base(fn), torch.distributions.Categorical)
        if msg["is_observed"]:  # a spec-built pair observes its labels one-hot when relaxed
            if coded and self.coded:
                msg["fn"] = one_hot(fn)
            return
        name = msg["name"]
        if name not in self.squashes:
            vectors = coded or isinstance(_base(fn), torch.distributions.OneHotCategorical)
            squash = transforms.ExpTransform if vectors else transforms.SigmoidTransform
            self.squashes[name] = squash(cache_size=1)
        msg["fn"] = relaxed(fn, self.temperature, self.squashes[name], name, self.coded)
        # A site the guide would enumerate is drawn relaxed instead (M2's y, for one).
        msg["infer"] = {k: v for k, v in msg["infer"].items() if k != "enumerate"}


def _base(fn):
    while isinstance(fn, torch.distributions.Independent | dist.ExpandedDistribution):
        fn = fn.base_dist
    return fn


class RelaxedELBO(Trace_ELBO):
    """Trace_ELBO of the pair with its discrete latents relaxed at ``temperature``: the
    relaxed ELBO and its reparameterized gradient."""

    def __init__(self, temperature: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature

    def _relaxed(self, model, guide):
        coded = isinstance(getattr(model, "__self__", None), LatentModel)
        relaxation = Relaxation(self.temperature, coded)
        if not coded:
            return relaxation(model), relaxation(guide)

        def vectors(program):
            def run(*args, **kwargs):
                with vector_categories():
                    return relaxation(program)(*args, **kwargs)

            return run

        return vectors(model), vectors(guide)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return super().differentiable_loss(*self._relaxed(model, guide), *args, **kwargs)

    def loss(self, model, guide, *args, **kwargs):
        return super().loss(*self._relaxed(model, guide), *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        return super().loss_and_grads(*self._relaxed(model, guide), *args, **kwargs)

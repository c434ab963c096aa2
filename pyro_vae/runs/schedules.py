"""Learning-rate schedules: the factor each epoch's learning rate is multiplied by.

A schedule is a function of the epoch, the run's number of epochs and the metrics of the epochs
before (which only ``plateau`` reads), with no state of its own, so that a run resumed at any
epoch trains with exactly the rates it would have had.
It is written as text, ``NAME`` or ``NAME:option=value,...`` (lists joined by ``+``), on the
command line (``--lr-schedule``), in the API (``lr_schedule=``) and in ``config.json``:

- ``multistep:milestones=200+350,gamma=0.631``: × γ at each milestone epoch (from it on);
- ``exponential:gamma=0.99``: × γ^(e−1) at epoch e;
- ``cosine:floor=0.01``: from 1 down to ``floor`` along half a cosine over the run's epochs;
- ``iwae``: Burda et al. (2016)'s passes: pass i (i = 0, 1, …) lasts ``base``^i epochs and
  trains at 10^(−i/``divisions``) (``base`` 3, ``divisions`` 7: 3280 epochs in 8 passes);
- ``plateau:patience=10,gamma=0.1,threshold=0,cooldown=0``: × γ each time the monitored ELBO
  (the validation ELBO where the run has a validation split, else the train ELBO) has not
  risen by more than ``threshold`` nats over its best for more than ``patience`` epochs, then
  no cut for ``cooldown`` epochs (torch's ``ReduceLROnPlateau``, mode max, absolute threshold).
  It is a function of the metrics of the epochs before, replayed from the run's history, so it
  too resumes exactly.

The epoch's rate is ``lr · lr_decay^(e−1) · factor(e)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import PyroVaeError, shown
from ..registry import Registry
from ..spec.options import Option, int_at_least, list_of, positive_int, validate_options


def _positive(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"expected a positive number, got {shown(value)}")
    return float(value)


def _unit(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"expected a number from 0 to 1, got {shown(value)}")
    return float(value)


def _one_or_more(item):
    """A list of ``item``s; one value alone (``milestones=200``) is a list of one."""
    check = list_of(item, allow_empty=False)
    return lambda value: check(value if isinstance(value, list) else [value])


@dataclass(frozen=True)
class ScheduleKind:
    """A registered schedule: ``factor(epoch, epochs, **options)`` and its options."""

    factor: Callable[..., float]
    options: dict[str, Option]


SCHEDULES: Registry[ScheduleKind] = Registry("learning-rate schedule")


def _register(name: str, **options: Option):
    def decorator(factor):
        SCHEDULES.register(name)(ScheduleKind(factor, options))
        return factor

    return decorator


@_register(
    "multistep",
    milestones=Option(_one_or_more(positive_int), doc="epochs, e.g. 200+350"),
    gamma=Option(_positive, 0.1, doc="the factor at each milestone"),
)
def _multistep(epoch: int, epochs: int, history, milestones, gamma: float) -> float:
    return gamma ** sum(epoch >= m for m in milestones)


@_register("exponential", gamma=Option(_positive, doc="the factor per epoch"))
def _exponential(epoch: int, epochs: int, history, gamma: float) -> float:
    return gamma ** (epoch - 1)


@_register("cosine", floor=Option(_unit, 0.0, doc="the last epoch's factor"))
def _cosine(epoch: int, epochs: int, history, floor: float) -> float:
    progress = (epoch - 1) / max(epochs - 1, 1)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@_register(
    "iwae",
    base=Option(int_at_least(2), 3, doc="pass i lasts base^i epochs"),
    divisions=Option(positive_int, 7, doc="pass i trains at 10^(-i/divisions)"),
)
def _iwae(epoch: int, epochs: int, history, base: int, divisions: int) -> float:
    passed, i = 0, 0
    while passed + base**i < epoch:
        passed += base**i
        i += 1
    return 10 ** (-i / divisions)


def _non_negative(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(f"expected a number >= 0, got {shown(value)}")
    return float(value)


@_register(
    "plateau",
    patience=Option(int_at_least(0), 10, doc="epochs without improvement before a cut"),
    gamma=Option(_positive, 0.1, doc="the factor of each cut"),
    threshold=Option(_non_negative, 0.0, doc="nats the ELBO must rise by to improve"),
    cooldown=Option(int_at_least(0), 0, doc="epochs after a cut before counting again"),
)
def _plateau(epoch, epochs, history, patience, gamma, threshold, cooldown) -> float:
    best, bad, cool, factor = -math.inf, 0, 0, 1.0
    for record in [r for r in history if r["epoch"] < epoch]:
        value = monitored(record)
        if value > best + threshold:
            best, bad = value, 0
        else:
            bad += 1
        if cool > 0:  # as torch: epochs in cooldown do not count as bad
            cool, bad = cool - 1, 0
        if bad > patience:
            factor, cool, bad = factor * gamma, cooldown, 0
    return factor


def monitored(record: dict) -> float:
    """The ELBO a schedule or early stopping watches: the validation ELBO where the run has a
    validation split, else the train ELBO (never the test ELBO)."""
    return record["valid_elbo"] if "valid_elbo" in record else record["train_elbo"]


@dataclass(frozen=True)
class LrSchedule:
    """A schedule by name with its options (checked)."""

    name: str
    options: dict

    @classmethod
    def parse(cls, text: str) -> LrSchedule:
        """``NAME[:option=value,...]``; a :class:`PyroVaeError` naming the fault otherwise."""
        where = f"--lr-schedule {shown(text)}"
        if not isinstance(text, str) or not text.strip():
            raise PyroVaeError(f"{where}: expected NAME[:option=value,...]")
        name, _, rest = (part.strip() for part in text.partition(":"))
        if name not in SCHEDULES:
            raise PyroVaeError(f"{where}: {SCHEDULES.unknown_message(name)}")
        kind = SCHEDULES.get(name)
        raw = dict(_setting(where, pair) for pair in rest.split(",") if pair.strip())
        options = validate_options(
            raw, kind.options, lambda key, message: PyroVaeError(f"{where}: {key}: {message}")
        )
        return cls(name, options)

    def factor(self, epoch: int, epochs: int, history=()) -> float:
        """The factor of epoch ``epoch`` (from 1) of a run of ``epochs``, after the epochs
        whose metrics are ``history`` (one record per epoch)."""
        return SCHEDULES.get(self.name).factor(epoch, epochs, list(history), **self.options)

    def __str__(self) -> str:
        parts = [
            f"{k}={'+'.join(str(v) for v in value) if isinstance(value, list) else value}"
            for k, value in self.options.items()
        ]
        return f"{self.name}:{','.join(parts)}" if parts else self.name


def _setting(where: str, pair: str) -> tuple[str, object]:
    """One ``key=value``: a number, or numbers joined by ``+`` (a list)."""
    key, sep, value = (part.strip() for part in pair.partition("="))
    if not key or not sep or not value:
        raise PyroVaeError(f"{where}: expected option=value, got {shown(pair.strip())}")
    try:
        numbers = [_number(v) for v in value.split("+")]
    except ValueError:
        raise PyroVaeError(f"{where}: {key}: expected a number, got {shown(value)}") from None
    return key, numbers if "+" in value else numbers[0]


def _number(text: str) -> int | float:
    number = float(text)
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number


def schedule_names() -> str:
    """The schedules and their options, for help texts."""
    listed = []
    for name in SCHEDULES.names():
        options = SCHEDULES.get(name).options
        listed.append(f"{name} ({', '.join(options)})" if options else name)
    return "; ".join(listed)

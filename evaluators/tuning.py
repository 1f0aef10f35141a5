"""Fair learning-rate tuning: every rule gets exactly the same number of training runs.

A comparison between optimizers is only fair when each is tuned as well as the others
(Choi et al. 2019, "On Empirical Comparisons of Optimizers for Deep Learning"; Schmidt et al.
2021, "Descending through a Crowded Valley"). Here the budget is a number of trials, one trial =
one training run at one learning rate, and a tuner always spends all of it, for the candidate and
for every baseline alike.

Two tuners, both ask/tell over a plain objective ``lrs -> losses`` (so they are testable without
training anything; non-finite losses, e.g. diverged runs, count as +inf):

- ``grid`` (default): a log-spaced grid around ``center`` with ratio ``factor`` between points,
  evaluated as one batch (so an ensemble trainer can run it as one model). While the best point
  sits at an edge of what has been tried, the grid **widens** by one more point beyond that edge
  (down if every run failed); once the best is interior, the remaining trials **refine** it with
  log-midpoints towards its better neighbour. Widening stops at ``[lr_min, lr_max]``.
- ``tpe``: Optuna's TPE sampler (Bergstra et al. 2011) over ``[low, high]`` on a log scale, with
  the same number of trials; the first ``budget // 2`` (at most 10) trials are random start-up.

Both are placed relative to the rule's own update scale: ``make_tuner(name, scale=s)`` multiplies
the grid's centre and its widening bounds (or TPE's range) by ``s``, where ``s`` is the factor
``evaluators.scale.relative_scale`` gives (AdamW's update RMS over the rule's), so that a rule and
the same rule times a constant are tuned to the same steps. ``max_extra > 0`` lets the grid go on
widening **beyond** the budget, up to that many extra trials, while its best lr still sits at an
edge: every rule gets the same rule, and a tuned lr at the edge of what was tried (a grid too
narrow for that rule) becomes interior wherever the bounds allow. The held-out protocol uses it;
``TuningResult.extra`` records how many trials it took.

Example::

    >>> result = GridTuner().tune(lambda lrs: [(math.log10(lr) + 1) ** 2 for lr in lrs], budget=6)
    >>> result.n_trials, round(result.best_lr, 9), result.widened
    (6, 0.1, 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Objective = Callable[[Sequence[float]], Sequence[float]]

DEFAULT_BUDGET = 8
DEFAULT_CENTER = 10**-2.5  # ~3.2e-3: the default grid 3.2e-4 .. 3.2e-2 holds AdamW's usual optimum
DEFAULT_FACTOR = 10**0.5
LR_MIN, LR_MAX = 1e-7, 10.0


@dataclass(frozen=True)
class Trial:
    """One training run of the tuning: a learning rate and the loss it reached (inf = failed)."""

    lr: float
    loss: float


@dataclass(frozen=True)
class TuningResult:
    """All trials of one tuning, in the order they ran, and the best of them."""

    tuner: str
    budget: int
    trials: tuple[Trial, ...]
    best_lr: float
    best_loss: float
    widened: int  # grid points added beyond the initial grid's edges
    at_edge: bool  # the best lr is the smallest or largest one tried (the grid may be too narrow)
    scale: float = 1.0  # the grid's placement relative to the default (the rule's update scale)
    extra: int = 0  # trials beyond the budget (widening until the best lr is interior)

    @property
    def n_trials(self) -> int:
        return len(self.trials)

    def to_dict(self) -> dict:
        return {"tuner": self.tuner, "budget": self.budget, "best_lr": self.best_lr,
                "best_loss": self.best_loss, "widened": self.widened, "at_edge": self.at_edge,
                "scale": self.scale, "extra": self.extra, "trials": [{"lr": t.lr, "loss": t.loss} for t in self.trials]}


def _clean(loss: float) -> float:
    loss = float(loss)
    return loss if math.isfinite(loss) else math.inf


def _run(objective: Objective, lrs: Sequence[float], trials: list[Trial]) -> None:
    losses = list(objective(list(lrs)))
    if len(losses) != len(lrs):
        raise ValueError(f"objective returned {len(losses)} losses for {len(lrs)} learning rates")
    trials.extend(Trial(float(lr), _clean(loss)) for lr, loss in zip(lrs, losses, strict=True))


def _best(trials: Sequence[Trial]) -> tuple[Trial, bool]:
    """The best trial (ties, and all-failed, go to the smallest lr) and whether it is at an edge."""
    ordered = sorted(trials, key=lambda t: t.lr)
    best = min(ordered, key=lambda t: t.loss)
    return best, len(ordered) > 1 and best.lr in (ordered[0].lr, ordered[-1].lr)


def _result(name: str, budget: int, trials: list[Trial], widened: int, scale: float = 1.0,
            extra: int = 0) -> TuningResult:
    best, at_edge = _best(trials)
    return TuningResult(name, budget, tuple(trials), best.lr, best.loss, widened, at_edge, scale,
                        extra)


def _check_budget(budget: int) -> None:
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"tuning budget must be a positive integer, got {budget!r}")


class GridTuner:
    """Log grid that widens while the best lr is at an edge, then refines; uses the whole budget."""

    name = "grid"

    def __init__(self, center: float = DEFAULT_CENTER, factor: float = DEFAULT_FACTOR,
                 initial_points: int | None = None, lr_min: float = LR_MIN,
                 lr_max: float = LR_MAX, max_extra: int = 0, scale: float = 1.0):
        if not (center > 0 and factor > 1 and 0 < lr_min < lr_max):
            raise ValueError("grid needs center > 0, factor > 1 and 0 < lr_min < lr_max")
        if not (isinstance(max_extra, int) and max_extra >= 0):
            raise ValueError(f"max_extra must be an integer >= 0, got {max_extra!r}")
        self.center, self.factor = center, factor
        self.initial_points, self.lr_min, self.lr_max = initial_points, lr_min, lr_max
        self.max_extra, self.scale = max_extra, scale

    def initial_grid(self, budget: int) -> list[float]:
        """The first batch: ``budget - max(1, budget // 4)`` points (all of them if budget <= 3)."""
        n = self.initial_points or (budget if budget <= 3 else budget - max(1, budget // 4))
        n = min(n, budget)
        offsets = np.arange(n) - (n - 1) / 2.0
        return [float(self.center * self.factor**o) for o in offsets]

    def _widening(self, trials: Sequence[Trial]) -> float | None:
        """The lr one step beyond the edge the best trial sits at, if the bounds allow it."""
        ordered = sorted(trials, key=lambda t: t.lr)
        i = min(range(len(ordered)), key=lambda k: ordered[k].loss)
        lo, hi = ordered[0].lr, ordered[-1].lr
        if i == 0 and lo / self.factor >= self.lr_min * (1 - 1e-9):
            return lo / self.factor
        if i == len(ordered) - 1 and math.isfinite(ordered[i].loss) \
                and hi * self.factor <= self.lr_max * (1 + 1e-9):
            return hi * self.factor
        return None

    def next_lr(self, trials: Sequence[Trial]) -> tuple[float, bool]:
        """The next lr to try and whether it widens the grid (False: it refines the best)."""
        wider = self._widening(trials)
        if wider is not None:
            return wider, True
        ordered = sorted(trials, key=lambda t: t.lr)
        i = min(range(len(ordered)), key=lambda k: ordered[k].loss)
        best = ordered[i]
        left = ordered[i - 1] if i > 0 else None
        right = ordered[i + 1] if i + 1 < len(ordered) else None
        if left is None and right is None:  # a single trial so far (budget 1 never gets here)
            return best.lr * self.factor, True
        if right is None or (left is not None and left.loss <= right.loss):
            return math.sqrt(best.lr * left.lr), False
        return math.sqrt(best.lr * right.lr), False

    def tune(self, objective: Objective, budget: int = DEFAULT_BUDGET) -> TuningResult:
        """Run ``budget`` trials (the initial grid as one batch, then one at a time), then up to
        ``max_extra`` more while the best lr is at an edge the bounds let the grid widen past."""
        _check_budget(budget)
        trials: list[Trial] = []
        _run(objective, self.initial_grid(budget), trials)
        widened = 0
        while len(trials) < budget:
            lr, widens = self.next_lr(trials)
            widened += widens
            _run(objective, [lr], trials)
        extra = 0
        while extra < self.max_extra and _best(trials)[0].loss < math.inf:
            wider = self._widening(trials)
            if wider is None:
                break
            _run(objective, [wider], trials)
            widened += 1
            extra += 1
        return _result(self.name, budget, trials, widened, self.scale, extra)


class TPETuner:
    """Optuna TPE over a log-scaled lr range, with exactly ``budget`` trials."""

    name = "tpe"

    def __init__(self, low: float = 1e-5, high: float = 1.0, seed: int = 0, scale: float = 1.0):
        if not 0 < low < high:
            raise ValueError("TPE needs 0 < low < high")
        self.low, self.high, self.seed, self.scale = low, high, seed, scale

    def tune(self, objective: Objective, budget: int = DEFAULT_BUDGET) -> TuningResult:
        """Ask one lr, train, tell the loss; repeat ``budget`` times."""
        import optuna

        _check_budget(budget)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=self.seed,
                                             n_startup_trials=max(1, min(10, budget // 2)))
        study = optuna.create_study(direction="minimize", sampler=sampler)
        trials: list[Trial] = []
        for _ in range(budget):
            trial = study.ask()
            lr = trial.suggest_float("lr", self.low, self.high, log=True)
            _run(objective, [lr], trials)
            study.tell(trial, trials[-1].loss)
        return _result(self.name, budget, trials, widened=0, scale=self.scale)


TUNERS: dict[str, type] = {"grid": GridTuner, "tpe": TPETuner}


def make_tuner(name: str, seed: int = 0, scale: float = 1.0, max_extra: int = 0
               ) -> GridTuner | TPETuner:
    """The tuner registered under ``name`` with its defaults, placed at ``scale`` times the default
    lrs (``seed`` drives TPE only; ``max_extra`` is the grid's widening beyond the budget)."""
    if name not in TUNERS:
        raise ValueError(f"unknown tuner {name!r}; choose from {', '.join(TUNERS)}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"tuning scale must be finite and > 0, got {scale!r}")
    if name == "tpe":
        return TPETuner(1e-5 * scale, 1.0 * scale, seed=seed, scale=scale)
    return GridTuner(DEFAULT_CENTER * scale, lr_min=LR_MIN * scale, lr_max=LR_MAX * scale,
                     max_extra=max_extra, scale=scale)

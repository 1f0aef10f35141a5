"""The `optuna` strategy: rules as a fixed number of statement slots, sampled define-by-run.

Optuna (Akiba et al. 2019, "Optuna: A Next-generation Hyperparameter Optimization Framework",
KDD 2019) samples one program per trial through its ask-and-tell interface. A program is
``slots`` statements. Slot ``k`` draws ``s{k}_op`` (categorical) from: ``skip``,
a curated unary primitive (``sign(x)``), an arithmetic operator (``x + y``, ``- * /``), a binary
primitive (``max(x, y)``), ``lerp`` (``lerp(x, y, c)``, ``c`` log-uniform in [1e-4, 1]), ``scale``
(``c * x``, ``c`` in [1e-4, 100]), ``shift`` (``x + c``, ``c`` in [1e-12, 0.1]: Adam's eps) and
``axpy`` (``x + c * y``, ``c`` in [1e-5, 1]: decoupled weight decay), constants log-uniform
(``s{k}_lerp``, ...). A used slot draws its target ``s{k}_target`` from a pool of names (m, v, a,
b), its first operand ``s{k}_x`` from g, the pool and ``prev`` (what the last used slot assigned,
g before any), and a second operand ``s{k}_y`` from those and the other inputs (w by default).
A pool name read before it is assigned is optimizer state, so momentum is ``m = lerp(m, g, 0.1)``;
a pool name that no slot assigns reads as g (zero state that is never written would be a dead
constant). The last slot always assigns ``update`` (its ops drop ``skip`` and add ``copy``:
``update = x``). Keeping w out of first operands makes the first operand carry the gradient almost
always: about 85% of uniform samples are valid. Constants are rounded to three significant digits
so the text stays readable; every parameter name has one fixed distribution, as TPE needs.

A sampled program is dead-code eliminated, then must pass `dsl.parser.validate`, have an
``update`` that depends on ``g``, and print to text that parses back to an equal program. One that
does not is never handed out: its trial is told ``FAIL`` at once (user attr ``rejected``) and the
strategy samples again, at most `MAX_TRIES` times per candidate; `ask` may then return fewer.

Samplers: TPE (Bergstra et al. 2011, "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011)
(multivariate over the parameters every trial has, ``constant_liar=True`` because the driver asks
several candidates before telling any); NSGA-II (Deb et al. 2002, "A fast and elitist
multiobjective genetic algorithm: NSGA-II", IEEE TEVC) by default when there are several
objectives; uniform random as a control. CMA-ES is refused: it has no categorical parameters.

``tell``: status ``invalid`` fails the trial; anything else tells the objectives (fitness, and
``state_bytes``/``wall_time_s`` per objective; a missing state size counts as `MISSING_STATE_BYTES`,
non-finite values as the worst). Candidates this strategy did not ask (seeds, another strategy's,
no ``trial`` in meta) are ignored: a seed rule has no encoding in the slot space. Telling an already
finished trial again (journal replay on resume) is a no-op.

Pruning (the funnel's promotion, Optuna's way): with ``pruner="successive_halving"`` (Jamieson &
Talwalkar 2016, as asynchronous SHA: Li et al. 2020) or ``"hyperband"`` (Li et al. 2018,
"Hyperband: A Novel Bandit-Based Approach to Hyperparameter Optimization", JMLR) the driver asks
this strategy, after each funnel stage of one of its candidates, whether the rule goes on:
the stage's fitness is reported as the trial's intermediate value at step ``eta ** depth`` (the
rungs of a reduction factor ``eta``) and the pruner answers. Seeds, and trials no longer running
(after a resume), fall back to the stage's own promotion rule. One objective only: Optuna does
not prune multi-objective studies.

Storage: a path gives Optuna's journal file storage (resumable, viewable in optuna-dashboard),
loaded if it exists. On construction every trial still RUNNING (asked, never told: the previous
process died) is told ``FAIL``; when the driver later re-submits that candidate and tells its real
outcome, the result is added as a new COMPLETE trial with the same parameters (user attr
``retold_from``), once. One strategy object per study at a time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dsl.analysis import eliminate_dead_code, update_depends_on
from dsl.ir import INPUTS, OUTPUT, Assign, BinOp, Call, Expr, Name, Num, Program, Route
from dsl.parser import parse, validate
from dsl.primitives import PRIMITIVES
from dsl.printer import to_text
from evaluators.fitness import WORST_FITNESS
from populations.candidate import Candidate, Outcome

NAMES: tuple[str, ...] = ("m", "v", "a", "b")
ARITH: tuple[str, ...] = ("+", "-", "*", "/")
DEFAULT_PRIMITIVES: tuple[str, ...] = tuple(name for name, prim in PRIMITIVES.items() if prim.slot)   # registry `slot`
CONST_RANGES: dict[str, tuple[float, float]] = {"lerp": (1e-4, 1.0), "scale": (1e-4, 100.0), "shift": (1e-12, 0.1),
                                                "axpy": (1e-5, 1.0)}
OBJECTIVES: tuple[str, ...] = ("fitness", "state_bytes", "wall_time_s")
SAMPLERS: tuple[str, ...] = ("auto", "tpe", "nsga2", "random")
PRUNERS: tuple[str, ...] = ("none", "successive_halving", "hyperband")
MISSING_STATE_BYTES = 1e6
WORST_VALUE = {"fitness": WORST_FITNESS, "state_bytes": MISSING_STATE_BYTES, "wall_time_s": 1e9}
MAX_TRIES = 50
MAX_SLOTS = 32


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's per-trial INFO logs and ExperimentalWarnings off, the caller's settings restored."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _round(c: float) -> float:
    return float(f"{c:.3g}")


class OptunaStrategy:
    """Ask/tell strategy over slot programs, backed by an Optuna study (see the module doc).

    ``seeds`` are kept (``self.seeds``) but not encoded: known rules do not fit the slot space, so
    telling them is a no-op. ``sampler="auto"`` is TPE for one objective, NSGA-II for several.
    """

    name = "optuna"

    def __init__(self, seeds: Sequence[Candidate] = (), *, slots: int = 6, sampler: str = "auto",
                 objectives: Sequence[str] = ("fitness",), seed: int = 0, storage: str | Path | None = None,
                 study_name: str = "optforge", primitives: Sequence[str] | None = None,
                 inputs: Sequence[str] = ("g", "w"), pruner: str = "none", reduction_factor: int = 3,
                 stages: int = 1):
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be an integer in [1, {MAX_SLOTS}], got {slots!r}")
        self.objectives = tuple(objectives)
        if not self.objectives or len(set(self.objectives)) != len(self.objectives) or \
                any(o not in OBJECTIVES for o in self.objectives):
            raise ValueError(f"objectives must be distinct names from {OBJECTIVES}, got {self.objectives}")
        if sampler not in SAMPLERS:
            why = " (CMA-ES has no categorical parameters)" if sampler == "cmaes" else ""
            raise ValueError(f"unknown sampler {sampler!r}{why}; choose from {', '.join(SAMPLERS)}")
        if pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {pruner!r}; choose from {', '.join(PRUNERS)}")
        if pruner != "none" and len(self.objectives) > 1:
            raise ValueError("a pruner needs a single objective (Optuna does not prune multi-objective studies)")
        if isinstance(reduction_factor, bool) or not isinstance(reduction_factor, int) or reduction_factor < 2:
            raise ValueError(f"reduction_factor must be an integer >= 2, got {reduction_factor!r}")
        self.pruner_name, self.eta = pruner, reduction_factor
        self.inputs = tuple(inputs)
        if "g" not in self.inputs or any(i not in INPUTS for i in self.inputs) or \
                len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"inputs must be distinct names from {INPUTS} including 'g', got {self.inputs}")
        self.seeds = list(seeds)
        self.slots = slots
        self.seed = seed
        self._unary: list[str] = []
        self._binary: list[str] = []
        self._lerp = False
        for p in DEFAULT_PRIMITIVES if primitives is None else primitives:
            prim = PRIMITIVES.get(p)
            if prim is None:
                raise ValueError(f"unknown primitive {p!r}")
            if p == "lerp":
                self._lerp = True
            elif prim.min_args <= 1:
                self._unary.append(p)
            elif prim.min_args <= 2 <= prim.max_args:
                self._binary.append(p)
            else:
                raise ValueError(f"primitive {p!r} takes {prim.min_args} arguments: no slot form for it")
        ops = [*dict.fromkeys(self._unary), *ARITH, *dict.fromkeys(self._binary),
               *(["lerp"] if self._lerp else []), "scale", "shift", "axpy"]
        self._ops = tuple(["skip", *ops])
        self._final_ops = tuple(["copy", *ops])
        self._firsts = ("g", "prev", *NAMES)  # no other input first: so most samples depend on g
        self._operands = (*self.inputs, "prev", *NAMES)
        if sampler == "auto":
            sampler = "tpe" if len(self.objectives) == 1 else "nsga2"
        self.sampler_name = sampler
        directions = ["minimize"] * len(self.objectives)
        with _quiet():
            if sampler == "tpe":
                smp: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
                    seed=seed, multivariate=True, constant_liar=True)
            elif sampler == "nsga2":
                smp = optuna.samplers.NSGAIISampler(seed=seed)
            else:
                smp = optuna.samplers.RandomSampler(seed=seed)
            if storage is not None:
                Path(storage).parent.mkdir(parents=True, exist_ok=True)
                storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage)))
            if pruner == "successive_halving":
                prn: optuna.pruners.BasePruner = optuna.pruners.SuccessiveHalvingPruner(
                    min_resource=1, reduction_factor=reduction_factor)
            elif pruner == "hyperband":
                top = reduction_factor ** max(stages - 1, 1)
                prn = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=top,
                                                     reduction_factor=reduction_factor)
            else:
                prn = optuna.pruners.NopPruner()
            self._study = optuna.create_study(storage=storage, sampler=smp, study_name=study_name,
                                              directions=directions, load_if_exists=True, pruner=prn)
            if len(self._study.directions) != len(directions):
                raise ValueError(f"study {study_name!r} has {len(self._study.directions)} objectives, "
                                 f"asked for {len(directions)}")
            for t in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                self._study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        self._retold = {t.user_attrs["retold_from"] for t in self._study.get_trials(deepcopy=False)
                        if "retold_from" in t.user_attrs}

    @property
    def study(self) -> optuna.Study:
        return self._study

    # -- ask -------------------------------------------------------------------------------
    def ask(self, n: int) -> list[Candidate]:
        out: list[Candidate] = []
        with _quiet():
            for _ in range(max(0, int(n))):
                for _ in range(MAX_TRIES):
                    cand = self._try_one()
                    if cand is not None:
                        out.append(cand)
                        break
        return out

    def _try_one(self) -> Candidate | None:
        try:
            trial = self._study.ask()
        except Exception:  # noqa: BLE001 - a storage problem: nothing to offer now
            return None
        try:
            program = self._sample(trial)
            text, reason = self._check(program)
        except Exception as exc:  # noqa: BLE001 - never raise on a strange sample
            text, reason = None, f"{type(exc).__name__}: {exc}"
        try:
            if text is None:
                trial.set_user_attr("rejected", reason)
                self._study.tell(trial, state=TrialState.FAIL)
                return None
            trial.set_user_attr("text", text)
        except Exception:  # noqa: BLE001 - a storage problem: fail the trial if possible, offer nothing
            with contextlib.suppress(Exception):
                self._study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return None
        return Candidate(text, "optuna", (), f"optuna trial {trial.number}", meta={"trial": trial.number})

    def _sample(self, trial: optuna.Trial) -> Program:
        spec: list[tuple[str, str, list[str], float | None]] = []  # target, op, operands, constant
        prev = "g"
        for k in range(self.slots):
            final = k == self.slots - 1
            op = trial.suggest_categorical(f"s{k}_op", self._final_ops if final else self._ops)
            if op == "skip":
                continue
            target = OUTPUT if final else trial.suggest_categorical(f"s{k}_target", NAMES)
            args = [self._operand(trial, f"s{k}_x", self._firsts, prev)]
            if op in ARITH or op in self._binary or op in ("lerp", "axpy"):
                args.append(self._operand(trial, f"s{k}_y", self._operands, prev))
            c = None
            if op in CONST_RANGES:
                c = _round(trial.suggest_float(f"s{k}_{op}", *CONST_RANGES[op], log=True))
            spec.append((target, op, args, c))
            prev = target
        assigned = {target for target, *_ in spec}
        body = []
        for target, op, args, c in spec:  # a pool name that no slot assigns reads the gradient
            x, *rest = (Name(a if a in assigned or a in INPUTS else "g") for a in args)
            expr: Expr
            if op == "copy":
                expr = x
            elif op in self._unary:
                expr = Call(op, (x,))
            elif op == "scale":
                expr = BinOp("*", Num(c), x)
            elif op == "shift":
                expr = BinOp("+", x, Num(c))
            elif op == "axpy":
                expr = BinOp("+", x, BinOp("*", Num(c), rest[0]))
            elif op in ARITH:
                expr = BinOp(op, x, rest[0])
            elif op == "lerp":
                expr = Call("lerp", (x, rest[0], Num(c)))
            else:
                expr = Call(op, (x, rest[0]))
            body.append(Assign(target, expr))
        return Program((), (Route("default", tuple(body)),))

    @staticmethod
    def _operand(trial: optuna.Trial, param: str, choices: tuple[str, ...], prev: str) -> str:
        choice = trial.suggest_categorical(param, choices)
        return prev if choice == "prev" else choice

    @staticmethod
    def _check(program: Program) -> tuple[str | None, str]:
        """(text, "") for a usable program, else (None, why not)."""
        program = eliminate_dead_code(program)
        validate(program)
        if not update_depends_on(program, "g"):
            return None, "update does not depend on g"
        text = to_text(program, doc=False)
        if parse(text) != program:
            return None, "text does not parse back to the same program"
        return text, ""

    # -- promote (the funnel's pruner) -----------------------------------------------------
    def promote(self, candidate: Candidate, depth: int, fitness: float) -> bool | None:
        """Whether the pruner lets ``candidate`` go on after funnel stage ``depth`` (None: not
        this strategy's to decide: no pruner, a seed, or a trial no longer running)."""
        number = candidate.meta.get("trial") if isinstance(candidate.meta, dict) else None
        if self.pruner_name == "none" or candidate.origin != "optuna" or not isinstance(number, int):
            return None
        with _quiet():
            try:
                frozen = self._study.get_trials(deepcopy=False)[number]
                if frozen.state != TrialState.RUNNING:
                    return None
                trial = optuna.Trial(self._study, frozen._trial_id)
                value = fitness if math.isfinite(fitness) else WORST_VALUE["fitness"]
                trial.report(min(value, WORST_VALUE["fitness"]), step=self.eta ** depth)
                return not trial.should_prune()
            except Exception:  # noqa: BLE001 - a strategy never raises: the stage's rule decides
                return None

    # -- tell ------------------------------------------------------------------------------
    def tell(self, candidate: Candidate, outcome: Outcome) -> None:
        number = candidate.meta.get("trial") if isinstance(candidate.meta, dict) else None
        if candidate.origin != "optuna" or isinstance(number, bool) or not isinstance(number, int) or number < 0:
            return  # not asked by this strategy (a seed, say): no encoding in the slot space
        with _quiet():
            try:
                trials = self._study.get_trials(deepcopy=False)
                if number >= len(trials) or trials[number].number != number:
                    return
                frozen = trials[number]
                if "text" not in frozen.user_attrs:
                    return  # a sample this strategy rejected, never handed out
                invalid = outcome.status == "invalid"
                if frozen.state == TrialState.RUNNING:
                    if invalid:
                        self._study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
                    else:
                        self._study.tell(number, self._values(outcome), skip_if_finished=True)
                elif frozen.state == TrialState.FAIL and not invalid and number not in self._retold:
                    self._retell(frozen, outcome)
            except Exception:  # noqa: BLE001 - a strategy never raises on a strange outcome
                return

    def _retell(self, frozen: FrozenTrial, outcome: Outcome) -> None:
        """A trial failed as stale on resume got its real outcome: add it as a new trial."""
        values = self._values(outcome)
        self._study.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE, params=frozen.params, distributions=frozen.distributions,
            values=values, user_attrs={**frozen.user_attrs, "retold_from": frozen.number}))
        self._retold.add(frozen.number)

    def _values(self, outcome: Outcome) -> list[float]:
        out = []
        for obj in self.objectives:
            raw: Any = outcome.state_bytes if obj == "state_bytes" else getattr(outcome, obj)
            try:
                v = float(raw)
            except (TypeError, ValueError):
                v = math.nan
            out.append(min(v, WORST_VALUE[obj]) if math.isfinite(v) else WORST_VALUE[obj])
        return out

"""The search engine as a library call: ``run_search(config, run_dir) -> Population``.

    from search.config import load_config
    from search.engine import run_search
    population = run_search(load_config("quickstart"), "runs/quickstart")
    best = population.leaderboard(1)[0]

One call does what ``optforge search`` does (the CLI is a thin shell over it, and the benches
call it directly): check the config against the suites and the run folder, write the resolved
config, open the journal, start the executor (serial in-process, or Ray), measure the AdamW
reference at every funnel stage, print the expected duration from it, drive the search to its
budget (``search.driver``), meta-validate the best rules on the held-out suite
(``search.validation``), simplify the winners (``search.simplify``, on the last funnel stage)
and write the report. ``resume=True`` goes on from the journal; a config
that changed in anything but how long or where the search runs is refused.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from populations.population import Population

from .funnel import FunnelPlan, Promotion, Stage
from .interrupts import sigterm_as_interrupt

# config keys a resumed search may change: how long it runs and where it runs
RESUMABLE_CHANGES = ("evaluations", "executor", "validation")


class SearchError(ValueError):
    """A problem with the config or the run folder, as one line (the CLI prints it, exit 2)."""


def _select(suite_name: str, tasks, preset: str, key: str):
    from evaluators.suites import load_suite

    try:
        suite = load_suite(suite_name)
    except (OSError, ValueError) as exc:
        raise SearchError(f"{key}.suite: {exc}") from None
    try:
        return suite.select(tasks, preset)
    except ValueError as exc:
        raise SearchError(f"{key}.tasks: {exc}") from None


def funnel_plan(cfg) -> FunnelPlan:
    """The funnel a config describes, its tasks resolved against their suites."""
    if cfg.funnel:
        stages = tuple(Stage(s.name, s.suite, _select(s.suite, s.tasks, s.preset, f"funnel[{i}]"),
                             s.preset, s.seeds, s.budget, s.tuner, s.max_extra,
                             Promotion(s.promote.hurdle, s.promote.top_fraction), cfg.device)
                       for i, s in enumerate(cfg.funnel))
    else:  # the proxy shorthand: the first task with the hurdle, then the whole proxy set
        p = cfg.proxy
        tasks = _select(p.suite, p.tasks, p.preset, "proxy")
        stage = Stage("proxy", p.suite, tasks, p.preset, 1, p.budget, p.tuner, 0, Promotion(),
                      cfg.device)
        stages = (stage,)
        if len(tasks) > 1:
            first = Stage("first", p.suite, tasks[:1], p.preset, 1, p.budget, p.tuner, 0,
                          Promotion(hurdle=p.hurdle), cfg.device)
            stages = (first, stage)
    return FunnelPlan(stages, cfg.reference.seeds, cfg.noise_z, cfg.remeasure.top_k,
                      cfg.remeasure.seeds)


def check_run_dir(cfg, run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a search, to resume a missing one, or to resume a changed config."""
    import yaml

    journal = run_dir / "journal.jsonl"
    if journal.exists() and not resume:
        raise SearchError(f"{run_dir} already holds a search; pass --resume to continue it, "
                          "or --out for a new folder")
    if resume and not journal.exists():
        raise SearchError(f"--resume: {journal} does not exist")
    if resume and (run_dir / "config.yaml").exists():
        old = yaml.safe_load((run_dir / "config.yaml").read_text())
        new = cfg.resolved()
        for unused in {"proxy", "funnel"} - set(new):  # a run folder written before resolved() left it out
            old.pop(unused, None)
        changed = sorted(k for k in set(old) | set(new)
                         if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k))
        if changed:
            raise SearchError(f"--resume: the config differs from the run's in {', '.join(changed)} "
                              f"(only {', '.join(RESUMABLE_CHANGES)} may change)")


def make_executor(cfg):
    from search.executors import make_executor as make

    e = cfg.executor
    if e.kind == "serial":
        return make("serial", timeout_s=e.timeout_s)
    return make(e.kind, address=e.address, num_cpus=e.num_cpus, num_gpus=e.num_gpus,
                max_retries=e.max_retries, timeout_s=e.timeout_s, max_in_flight=e.max_in_flight)


def expected_seconds(reference: dict, plan: FunnelPlan, rules: int, workers: int) -> tuple[float, float]:
    """(low, high) seconds for ``rules`` rules at AdamW's measured time per training run: low if
    every rule stops after stage 0, high if every rule goes through every stage (a top fraction
    promotes more than its share while the population is small, and the search keeps proposing
    rules that reach the top, so the fraction is no bound). Rules that cost more per step than
    AdamW (matrix preconditioners) take longer; `revised_estimate` corrects from measured time
    once the seeds are trained. Remeasurement and validation come on top."""
    cost = []
    for stage in plan.stages:
        runs = sum(m.get("trials", stage.budget) + len(m["losses"]) - 1 for m in reference[stage.name].values())
        wall = sum(m["wall_time_s"] for m in reference[stage.name].values())
        per_run = wall / max(runs, 1)
        fresh = stage.seeds if stage.seeds > 1 else 0
        cost.append(per_run * len(stage.tasks) * (stage.budget + fresh))
    scale = rules / max(workers, 1)
    return cost[0] * scale, sum(cost) * scale


def revised_estimate(done: int, elapsed_s: float, left: int) -> str:
    """The line printed once the first ``done`` rules of a session are trained: the remaining
    time at the rate measured so far (wall time, so Ray's overhead and idle workers count)."""
    rate = elapsed_s / max(done, 1)
    return (f"{done} rule{'s' * (done != 1)} trained in {_minutes(elapsed_s)} ({rate:.0f} s per rule "
            f"on this machine); at that rate the {left} left take about {_minutes(rate * left)}, "
            "plus validation")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run_search(cfg, run_dir: str | Path, *, resume: bool = False, executor=None,
               validate: bool = True, progress: bool = True,
               log: Callable[[str], None] = print) -> Population:
    """Run (or resume) the search ``cfg`` describes in ``run_dir``; returns the population.

    ``executor``: an open executor to use (default: the config's, opened and closed here);
    ``validate``: meta-validate the top rules on the held-out suite; ``progress``: a tqdm bar
    on stderr; ``log``: where progress lines go. Raises `SearchError` for a bad config or run
    folder, before anything is written."""
    import yaml
    from tqdm import tqdm

    from dsl.errors import RuleError
    from evaluators.results import code_version, write_text_atomic
    from populations.journal import Journal
    from search.driver import Driver, seed_candidates
    from search.report import write_report
    from search.strategies import make_strategy
    from search.validation import heldout_settings, meta_validate, simplify_winners

    run_dir = Path(run_dir)
    plan = funnel_plan(cfg)
    check_run_dir(cfg, run_dir, resume)
    validate = validate and cfg.validation.top_k > 0
    if validate:
        try:  # a bad validation section must fail now, not after the whole search
            heldout_settings(cfg)
        except (OSError, ValueError) as exc:
            raise SearchError(str(exc) if str(exc).startswith("validation.")
                              else f"validation.suite: {exc}") from None
    try:
        seeds, adamw_text = seed_candidates(cfg.seeds)
    except (RuleError, OSError) as exc:
        raise SearchError(f"seeds: {exc}") from None
    started, t0 = _dt.datetime.now(_dt.timezone.utc), time.perf_counter()
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.resolved(), sort_keys=False))
    journal = Journal(run_dir / "journal.jsonl")
    session = sum(1 for r in journal.records if r["event"] == "start")
    journal.append("start", code_version=code_version(), session=session,
                   evaluations=cfg.evaluations, executor=cfg.executor.kind)
    strategy = make_strategy(cfg, seeds, run_dir, session=session)
    stages = " -> ".join(f"{s.name} ({len(s.tasks)} task{'s' * (len(s.tasks) > 1)}, "
                         f"{s.seeds} seed{'s' * (s.seeds > 1)})" for s in plan.stages)
    log(f"search {cfg.name!r}: strategy {cfg.strategy}, {cfg.evaluations} rules, funnel "
        f"{stages}, run folder {run_dir}")
    own = executor is None
    signals = ExitStack()
    try:
        executor = make_executor(cfg).__enter__() if own else executor
        signals.enter_context(sigterm_as_interrupt())  # after ray.init, which sets its own
        with tqdm(total=cfg.evaluations, unit="rule", desc=f"search {cfg.name}", file=sys.stderr,
                  disable=not progress, dynamic_ncols=True) as bar:
            say = bar.write if progress else log

            revise = {"at": 0, "t0": 0.0, "done": 0}  # the revised estimate, once the seeds are in

            def on_outcome(cand, outcome, pop):
                if outcome.trained:
                    bar.update(1)
                    revise["done"] += 1
                    if revise["done"] == revise["at"]:
                        say(revised_estimate(revise["done"], time.perf_counter() - revise["t0"],
                                             left - revise["done"]))
                best = pop.leaderboard(1)
                if best:
                    o = best[0].outcome
                    bar.set_postfix_str(f"best {best[0].id} {o.fitness:.3f} at {o.stage}")

            driver = Driver(journal, strategy, executor, plan, seeds, cfg.evaluations,
                            on_outcome=on_outcome, log=say)
            bar.update(driver.population.trained_count)
            fresh_reference = driver.population.reference is None
            t_ref = time.perf_counter()
            reference = driver.ensure_reference(adamw_text)
            workers = max(1, int(getattr(executor, "capacity", 1)))
            left = cfg.evaluations - driver.population.trained_count
            low, high = expected_seconds(reference, plan, left, workers)
            measured = f"measured in {time.perf_counter() - t_ref:.1f} s" if fresh_reference else "from the journal"
            at = min(len(seeds), left - 1)  # the seeds: their rate is the first measured one
            revise.update(at=at, t0=time.perf_counter())
            then = f"; a measured figure after {at} rule{'s' * (at != 1)}" if at > 0 else ""
            say(f"AdamW reference {measured}; expected {_minutes(low)} to {_minutes(high)} for "
                f"{left} rules on {workers} worker{'s' * (workers > 1)} at AdamW's time per training "
                f"run on this machine, plus validation{then}")
            pop = driver.run(adamw_text)
        if validate:
            with tqdm(unit="job", desc="held-out validation", file=sys.stderr, disable=not progress,
                      dynamic_ncols=True) as vbar:
                meta_validate(pop, journal, cfg, log=vbar.write if progress else log, run_dir=run_dir,
                              progress=vbar.update, executor=executor)
            if cfg.simplify.max_calls > 0:
                simplify_winners(pop, cfg, plan, run_dir, log=log)
        journal.append("end", trained=pop.trained_count)
    except KeyboardInterrupt:
        journal.close()
        raise
    finally:
        if own and executor is not None:
            executor.__exit__(None, None, None)
        signals.close()
    journal.close()
    write_report(pop, run_dir, cfg, started, time.perf_counter() - t0)
    return pop


def summary_lines(pop: Population, wall_s: float) -> list[str]:
    """What ``optforge search`` prints at the end: counts, the top five, the winners."""
    from evaluators.fitness import WORST_FITNESS
    from search.report import counts

    c = counts(pop)
    lines = [f"trained {c['trained']} rules ({c['complete']} complete, {c['hurdle']} at the hurdle, "
             f"{c['failed']} failed); {c['duplicates']} duplicates and {c['invalid']} invalid not "
             f"trained; {wall_s:.1f} s"]
    for i, e in enumerate(pop.leaderboard(5), 1):
        o, held = e.outcome, e.validation
        se = f" ± {o.fitness * o.se:.3f}" if math.isfinite(o.se) else ""
        extra = "" if not held else (
            "; held-out: failed (diverged or non-finite)" if held["fitness"] >= WORST_FITNESS
            else f"; held-out {held['fitness']:.3f}{' WINNER' if held['winner'] else ''}")
        lines.append(f"  {i}. {e.id} fitness {o.fitness:.3f}{se} at {o.stage or '-'} "
                     f"({o.seeds} seed{'s' * (o.seeds != 1)}) [{o.status}, {e.candidate.origin}"
                     f"{': ' + e.candidate.change if e.candidate.change else ''}]{extra}")
    winners = [e.id for e in pop.entries.values() if e.validation and e.validation.get("winner")]
    lines.append(f"winners: {', '.join(winners) or 'none'}")
    return lines

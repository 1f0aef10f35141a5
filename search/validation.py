"""Meta-validation: is a rule that wins on the proxy suite still better on models it never saw?

The proxy fitness that guides a search is measured on one seed of cheap tasks, and a search
overfits it (Lion's paper names meta-overfitting as its main failure mode: Chen et al. 2023,
§2.4). So the top K candidates by proxy fitness are re-run with the full evaluation protocol
(``evaluators.evaluate``: every rule tuned with the same budget, fresh seeds, Welch tests) on the
held-out suite, against the baselines. A candidate is a **winner** only if

- its held-out fitness is lower than every baseline's, and
- against the best tuned baseline of each task it is significantly better (Welch p < 0.05 with at
  least 3 seeds) on at least one task and significantly worse on none.

Results are journaled (``validated``) one candidate at a time, so a resumed search does not
validate anything twice; the baselines' runs are shared across candidates through one cache.
Each candidate's whole evaluation (every rule, task and run, with loss curves: the schema of
``optforge evaluate``'s results.json) is written to ``RUN/validation/<id>/results.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from evaluators.evaluate import ALPHA, MIN_SEEDS, Report, Settings, TaskPlan, evaluate
from populations.journal import Journal
from populations.population import Entry, Population


def is_winner(report: Report) -> bool:
    """The winner rule above, applied to an evaluation report (candidate first)."""
    c = report.candidate.label
    fit = report.fitness
    if fit[c].failed or report.settings.seeds < MIN_SEEDS:
        return False
    if any(fit[c].value >= f.value for label, f in fit.items() if label != c):
        return False
    better = worse = 0
    for task in report.tasks:
        base = task.rules[task.best_baseline(c)]
        if base.welch_p < ALPHA:
            diff = task.rules[c].summary.mean - base.summary.mean
            better += diff < 0
            worse += diff > 0
    return better >= 1 and worse == 0


def summarize(report: Report) -> dict:
    """The journaled form of a validation: fitness of every rule, per-task comparison, verdict."""
    c = report.candidate.label
    tasks = {}
    for t in report.tasks:
        best = t.best_baseline(c)
        tasks[t.task] = {"mean": t.rules[c].summary.mean, "std": t.rules[c].summary.std,
                         "best_baseline": best, "baseline_mean": t.rules[best].summary.mean,
                         "welch_p": t.rules[best].welch_p,
                         "ratio_to_adamw": t.rules[c].vs_adamw.ratio}
    return {"fitness": report.fitness[c].value,
            "baseline_fitness": {k: f.value for k, f in report.fitness.items() if k != c},
            "winner": is_winner(report), "verdict": report.verdict(), "tasks": tasks,
            "seeds": report.settings.seeds, "suite": report.settings.suite,
            "wall_time_s": report.wall_time_s}


def heldout_settings(config) -> Settings:
    """The evaluation settings the config's ``validation`` section describes."""
    from evaluators.suites import load_suite

    v = config.validation
    suite = load_suite(v.suite)
    try:
        selected = suite.select(v.tasks, v.preset)
    except ValueError as exc:
        raise ValueError(f"validation.tasks: {exc}") from None
    tasks = tuple(TaskPlan(n, steps) for n, steps in selected)
    return Settings(suite=suite.name, suite_source=suite.source, tasks=tasks, seeds=v.seeds,
                    budget=v.budget, tuner=config.proxy.tuner, preset=v.preset,
                    device=config.device, profiles=True, max_extra=v.max_extra)


def candidates_to_validate(population: Population, top_k: int) -> list[Entry]:
    """The top ``top_k`` complete, non-seed candidates by proxy fitness."""
    rows = [e for e in population.leaderboard()
            if e.outcome.complete and e.candidate.origin != "seed"]
    return rows[:top_k]


def meta_validate(population: Population, journal: Journal, config,
                  progress: Callable[[int], None] | None = None,
                  log: Callable[[str], None] = print, run_dir: str | Path | None = None,
                  executor=None) -> list[Entry]:
    """Validate the top K (skipping those already validated); returns the validated entries.
    With an ``executor`` the training runs as one job per rule and task there first
    (``search.heldout_jobs``); the reports, built from those runs, are the same numbers."""
    from dsl.loader import load_rule
    from dsl.printer import to_text
    from evaluators.results import write_results

    from .heldout_jobs import prewarm

    chosen = [e for e in candidates_to_validate(population, config.validation.top_k) if e.validation is None]
    if not chosen:
        return []
    settings = heldout_settings(config)
    baselines = {name: load_rule(f"builtin:{name}") for name in config.validation.baselines}
    cache: dict = {}
    if executor is not None:
        rules = {name: to_text(rule, doc=False) for name, rule in baselines.items()}
        rules.update({e.id: e.candidate.text for e in chosen})
        log(f"validating {len(chosen)} rule(s) and {len(baselines)} baseline(s) on {settings.suite} "
            f"({len(settings.tasks)} tasks, {settings.seeds} seeds), one job per rule and task ...")
        prewarm(executor, rules, settings, rules.get("adamw") or to_text(load_rule("builtin:adamw"), doc=False),
                progress=progress, cache=cache)
    for entry in chosen:
        log(f"meta-validating {entry.id} (fitness {entry.outcome.fitness:.3f} at {entry.outcome.stage or 'proxy'}) "
            f"on {settings.suite} with {settings.seeds} seeds ...")
        report = evaluate(entry.candidate.program, baselines, settings,
                          progress=progress if executor is None else None,
                          candidate_source=f"search candidate {entry.id}", cache=cache)
        if run_dir is not None:
            write_results(report, Path(run_dir) / "validation" / entry.id / "results.json")
        record = journal.append("validated", id=entry.id, result=summarize(report))
        population.apply(record)
    return chosen


def simplify_winners(population: Population, config, plan, run_dir: str | Path,
                     log: Callable[[str], None] = print) -> list[str]:
    """Simplify every winner (``search.simplify``) on the funnel's last stage: its tasks, preset
    and budget, with at least ``config.simplify.seeds`` fresh seeds, so an edit is kept while
    the selection-stage fitness is not significantly worse. A rule the simplification changed is
    validated again on the held-out suite (``validation/ID-simplified/``), so the exported form
    carries its own held-out numbers. Winners simplified before (resume) are skipped; returns the
    ids simplified now."""
    from dsl.loader import load_rule
    from evaluators.results import write_results
    from search.report import write_simplified
    from search.report.leaderboard import simplified
    from search.rule_scoring import protocol_scorer
    from search.simplify import simplify

    last = plan.stages[-1]
    done = []
    for entry in population.leaderboard():
        if not (entry.validation and entry.validation.get("winner")) or simplified(run_dir, entry.id):
            continue
        log(f"simplifying winner {entry.id} on stage {last.name} ({config.simplify.max_calls} scorer calls "
            "at most) ...")
        scorer = protocol_scorer(last.suite, [t for t, _ in last.tasks], preset=last.preset,
                                 seeds=max(last.seeds, config.simplify.seeds), budget=last.budget,
                                 tuner=last.tuner, device=last.device)
        result = simplify(entry.candidate.program, scorer, max_calls=config.simplify.max_calls)
        write_simplified(run_dir, entry.id, result)
        if result.changed:
            settings = heldout_settings(config)
            baselines = {name: load_rule(f"builtin:{name}") for name in config.validation.baselines}
            report = evaluate(result.simplified, baselines, settings,
                              candidate_source=f"search candidate {entry.id}, simplified")
            write_results(report, Path(run_dir) / "validation" / f"{entry.id}-simplified" / "results.json")
            summary = summarize(report)
            log(f"  {entry.id} simplified: held-out fitness {summary['fitness']:.3f} "
                f"(winner: {'yes' if summary['winner'] else 'no'}); the original's "
                f"{entry.validation['fitness']:.3f}")
        done.append(entry.id)
    return done

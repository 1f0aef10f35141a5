"""Benchmark: how well each funnel stage predicts held-out fitness, and what it costs.

A fixed panel of rules (``bench/fidelity_panel.yaml``: every builtin plus mutants from good to
bad) is measured at every stage of a search config's funnel, each rule at each stage (no
promotion: the point is to see every stage's ordering), and on the config's held-out suite with
its meta-validation protocol (tuned lr, fresh seeds). Per stage it prints Spearman's rho and
Kendall's tau-b between the stage's fitness and held-out fitness over the panel
(`search.fidelity`), how many of the held-out top 5 the stage's top 5 recovers, the stage's
seed noise (the median standard error of ln fitness over the panel), and CPU seconds per
candidate (measured in the worker processes; training runs on one thread); then the final
stage's correlation with each held-out task alone (the held-out fitness is a geometric mean, so
the tasks on which rules differ most weigh most in it: this shows which). The last line is

    fidelity: spearman=S kendall=K rules=N stage=NAME cpu_s=C

for the funnel's final stage. ``--quick`` measures the 18 rules marked ``quick`` on a held-out
subset (``QUICK_HELDOUT``). Results are cached per (rule, protocol) in ``--cache`` so a second
run with a changed funnel re-measures only what changed. Nothing is asserted and no number is
written in advance.

    python bench/proxy_fidelity.py --quick                 # configs/discover.yaml
    python bench/proxy_fidelity.py --config quickstart --workers 2
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PANEL = HERE / "fidelity_panel.yaml"
QUICK_HELDOUT = 3  # the first tasks of the held-out suite that --quick measures
FAILED = 1e6


def load_panel(quick: bool) -> list[tuple[str, str]]:
    """(name, canonical text) of the panel's rules (the quick subset with ``quick``)."""
    from dsl.loader import load_rule
    from dsl.parser import parse
    from dsl.printer import to_text

    out = []
    for row in yaml.safe_load(PANEL.read_text())["rules"]:
        if quick and not row.get("quick"):
            continue
        program = load_rule(row["spec"]) if "spec" in row else parse(row["text"], name=row["name"])
        out.append((row["name"], to_text(program, doc=False)))
    return out


def _timed_stage_job(payload: dict) -> dict:
    from search.evaluation import stage_job

    t0 = time.process_time()
    result = stage_job(payload)
    return {**result, "cpu_s": time.process_time() - t0}


def _timed_heldout(args: tuple) -> dict:
    """One rule on one held-out task (``settings`` holds that task alone)."""
    from dsl.loader import load_rule
    from dsl.parser import parse
    from evaluators.evaluate import evaluate

    name, text, settings, cache = args
    t0 = time.process_time()
    report = evaluate(parse(text, name=name), {"adamw": load_rule("builtin:adamw")}, settings, cache=cache)
    ratio = report.tasks[0].rules[report.candidate.label].vs_adamw
    return {"ratio": ratio.ratio, "status": ratio.status, "cpu_s": time.process_time() - t0}


def heldout_fitness(per_task: list[dict]) -> float:
    """The held-out fitness from per-task results, as ``evaluators.fitness`` aggregates them."""
    from evaluators.fitness import TaskFitness, fitness

    return fitness({str(i): TaskFitness(r["ratio"] if r["ratio"] is not None else math.inf, 0, 0, r["status"])
                    for i, r in enumerate(per_task)}).value


class Cache:
    """A JSON file of results keyed by (what, rule text, protocol); written after every result."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data = json.loads(path.read_text()) if path and path.exists() else {}

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def put(self, key: str, value) -> None:
        self.data[key] = value
        if self.path:
            from evaluators.results import write_json

            write_json(self.data, self.path)


def run_jobs(pool, fn, jobs: dict, cache: Cache, label: str) -> dict:
    """Run the uncached ``jobs`` (key -> argument) in ``pool``; every result, cached or new."""
    from tqdm import tqdm

    todo = {k: a for k, a in jobs.items() if k not in cache.data}
    futures = {pool.submit(fn, a): k for k, a in todo.items()}
    for fut in tqdm(cf.as_completed(futures), total=len(futures), desc=label, file=sys.stderr,
                    unit="job", dynamic_ncols=True):
        cache.put(futures[fut], fut.result())
    return {k: cache.data[k] for k in jobs}


def main() -> None:
    from dsl.loader import load_rule
    from dsl.printer import to_text
    from evaluators.evaluate import evaluate
    from search.config import load_config
    from search.engine import funnel_plan
    from search.evaluation import assemble_reference, reference_payloads
    from search.fidelity import kendall, spearman, top_k_recovery
    from search.funnel import score
    from search.validation import heldout_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="discover", help="search config whose funnel and held-out "
                        "protocol are measured (default: discover)")
    parser.add_argument("--quick", action="store_true", help=f"the quick panel and the first {QUICK_HELDOUT} "
                        "held-out tasks")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--cache", type=Path, help="JSON file that keeps results between runs")
    parser.add_argument("--out", type=Path, help="write the per-rule table and the summary as JSON here")
    args = parser.parse_args()

    t_start = time.perf_counter()
    cfg = load_config(args.config)
    plan = funnel_plan(cfg)
    held = heldout_settings(cfg)
    if args.quick:
        held = type(held)(**{**held.__dict__, "tasks": held.tasks[:QUICK_HELDOUT]})
    panel = load_panel(args.quick)
    cache = Cache(args.cache)
    adamw_text = to_text(load_rule("builtin:adamw"), doc=False)
    print(f"panel: {len(panel)} rules; funnel {' -> '.join(s.name for s in plan.stages)}; held-out "
          f"{', '.join(t.name for t in held.tasks)} ({held.seeds} seeds, budget {held.budget}); "
          f"{args.workers} workers", flush=True)

    with cf.ProcessPoolExecutor(max_workers=args.workers) as pool:
        payloads = reference_payloads(plan, adamw_text)
        ref_results = run_jobs(pool, _timed_stage_job, {Cache.key("ref", p): p for p in payloads.values()},
                               cache, "AdamW reference")
        by_task_key = {k: ref_results[Cache.key("ref", p)] for k, p in payloads.items()}
        reference, _ = assemble_reference(plan, by_task_key)

        stage_jobs = {}
        for name, text in panel:
            for stage in plan.stages:
                payload = {"id": name, "text": text, "stage": stage.to_dict(),
                           "reference": reference[stage.name]}
                stage_jobs[(name, stage.name)] = (Cache.key("stage", text, stage.to_dict(), reference[stage.name]),
                                                  payload)
        done = run_jobs(pool, _timed_stage_job, dict(stage_jobs.values()), cache, "funnel stages")
        stage_results = {k: done[key] for k, (key, _) in stage_jobs.items()}

        # per rule and task (so --quick's tasks are shared with a full run's); AdamW's runs once,
        # then shared with every rule's evaluation through its cache
        singles = [dataclasses.replace(held, tasks=(t,)) for t in held.tasks]
        adamw_cache: dict = {}
        for single in singles:
            if any(Cache.key("heldout", text, single.to_dict()) not in cache.data for _, text in panel):
                evaluate(load_rule("builtin:adamw"), {"adamw": load_rule("builtin:adamw")}, single,
                         cache=adamw_cache)
        held_jobs = {Cache.key("heldout", text, single.to_dict()): (name, text, single, adamw_cache)
                     for name, text in panel for single in singles}
        held_done = run_jobs(pool, _timed_heldout, held_jobs, cache, "held-out")
    heldout = {}
    for name, text in panel:
        parts = [held_done[Cache.key("heldout", text, single.to_dict())] for single in singles]
        heldout[name] = {"fitness": heldout_fitness(parts), "cpu_s": sum(p["cpu_s"] for p in parts),
                         "tasks": {t.name: p["ratio"] for t, p in zip(held.tasks, parts)}}

    truth = [heldout[n]["fitness"] for n, _ in panel]
    rows, summary = [], []
    for stage in plan.stages:
        scores = {n: score(stage_results[(n, stage.name)]["tasks"], reference[stage.name]) for n, _ in panel}
        for n, _ in panel:
            if stage_results[(n, stage.name)].get("error"):
                scores[n] = type(scores[n])(FAILED, math.nan, 0, {}, "failed")
        fits = [scores[n].fitness for n, _ in panel]
        ses = [scores[n].se for n, _ in panel if math.isfinite(scores[n].se)]
        cpu = statistics.mean(stage_results[(n, stage.name)]["cpu_s"] for n, _ in panel)
        summary.append({"stage": stage.name, "tasks": len(stage.tasks), "seeds": stage.seeds,
                        "spearman": spearman(fits, truth), "kendall": kendall(fits, truth),
                        "top5": top_k_recovery(fits, truth, 5), "noise_se": statistics.median(ses) if ses else math.nan,
                        "cpu_s": cpu})
        rows.append({n: scores[n].fitness for n, _ in panel})
    held_cpu = statistics.mean(heldout[n]["cpu_s"] for n, _ in panel)

    width = max(len(n) for n, _ in panel)
    head = " ".join(f"{s.name:>10}" for s in plan.stages)
    print(f"\n{'rule':<{width}} {head} {'held-out':>10}")
    for n, _ in sorted(panel, key=lambda r: heldout[r[0]]["fitness"]):
        cells = " ".join(_fmt(rows[k][n]) for k in range(len(plan.stages)))
        print(f"{n:<{width}} {cells} {_fmt(heldout[n]['fitness'])}")
    print(f"\n{'stage':<12} {'tasks':>5} {'seeds':>5} {'spearman':>9} {'kendall':>8} {'top5':>5} "
          f"{'noise se':>8} {'cpu s/rule':>10}")
    for s in summary:
        print(f"{s['stage']:<12} {s['tasks']:>5} {s['seeds']:>5} {s['spearman']:>9.3f} {s['kendall']:>8.3f} "
              f"{s['top5'] * 5:>3.0f}/5 {s['noise_se']:>8.3f} {s['cpu_s']:>10.1f}")
    print(f"{'held-out':<12} {len(held.tasks):>5} {held.seeds:>5} {'':>9} {'':>8} {'':>5} {'':>8} {held_cpu:>10.1f}")
    final = rows[-1]
    per_task = {t.name: spearman([final[n] for n, _ in panel], [heldout[n]["tasks"][t.name] for n, _ in panel])
                for t in held.tasks}
    print("final stage vs each held-out task (Spearman): "
          + ", ".join(f"{t} {v:.3f}" for t, v in per_task.items()))
    print(f"wall time {time.perf_counter() - t_start:.0f} s with {args.workers} workers")
    if args.out:
        from evaluators.results import write_json

        write_json({"panel": [n for n, _ in panel], "stages": summary, "fitness": rows, "per_task": per_task,
                    "heldout": heldout, "quick": args.quick, "config": args.config}, args.out)
    last = summary[-1]
    print(f"fidelity: spearman={last['spearman']:.3f} kendall={last['kendall']:.3f} rules={len(panel)} "
          f"stage={last['stage']} cpu_s={last['cpu_s']:.1f}")


def _fmt(x: float) -> str:
    return f"{'failed':>10}" if x >= FAILED else f"{x:>10.3f}"


if __name__ == "__main__":
    main()

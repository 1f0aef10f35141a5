"""Benchmark: from SGD alone, does a search find rules that hold up on models it never saw?

Runs ``configs/rediscovery.yaml`` (seeds: SGD with momentum only) with each strategy
(evolution, optuna, random) and ``--search-seeds`` random seeds, the same number of trained
rules each (`search.engine.run_search`, serial, two searches at a time). At checkpoints of the
budget it takes each run's best rule so far (the search's own ranking: deepest stage, then
fitness discounted by one standard error) and measures it on the held-out suite with fresh seeds
and tuned lr (`evaluators.evaluate`, AdamW as the normaliser), so the curve is **held-out**
fitness against evaluations, not the proxy the search optimised. Printed beside it: AdamW's
held-out fitness (1 by definition) and the seed rule's (SGD). A rule that diverges held out has
the failure sentinel (1e6) as its fitness, so the per-checkpoint figure is the median over
search seeds with the number that diverged, and the final best held-out fitness of evolution and
optuna is compared with random search's by a one-sided exact Mann-Whitney test over the search
seeds (`evaluators.stats.mann_whitney_less`; a mean or a Welch test would average the sentinel).
Writes a plot (``--plot``) and the numbers (``--out``). Nothing is asserted and
no number is written in advance.

    python bench/rediscovery.py                       # 3 strategies x 3 seeds, 120 rules each
    python bench/rediscovery.py --evaluations 40 --search-seeds 2 --strategies evolution random
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STRATEGIES = ("evolution", "optuna", "random")


def _search(args: tuple) -> dict:
    """One search in a worker process; returns its run folder and wall time."""
    from search.config import load_config
    from search.engine import run_search

    config, strategy, seed, evaluations, run_dir = args
    cfg = load_config(config)
    cfg.strategy, cfg.seed, cfg.evaluations = strategy, seed, evaluations
    cfg.name = f"rediscovery-{strategy}-{seed}"
    t0 = time.perf_counter()
    run_search(cfg, run_dir, validate=False, progress=False, log=lambda s: None)
    return {"run_dir": str(run_dir), "wall_s": time.perf_counter() - t0}


def best_by_checkpoint(run_dir: Path, checkpoints: list[int], z: float) -> dict[int, tuple[str, str]]:
    """For each checkpoint e: (id, text) of the best rule after e trained rules."""
    from populations.journal import read_records
    from populations.population import Population

    pop, out, todo = Population(), {}, sorted(checkpoints)
    for record in read_records(Path(run_dir) / "journal.jsonl"):
        pop.apply(record)
        while todo and record["event"] == "finished" and pop.trained_count >= todo[0]:
            best = pop.leaderboard(1, z=z)
            if best:
                out[todo[0]] = (best[0].id, best[0].candidate.text)
            todo.pop(0)
    for e in todo:  # the search ended early (a strategy that only repeated itself)
        best = pop.leaderboard(1, z=z)
        if best:
            out[e] = (best[0].id, best[0].candidate.text)
    return out


def _heldout(args: tuple) -> dict:
    from dsl.loader import load_rule
    from dsl.parser import parse
    from evaluators.evaluate import evaluate

    text, settings, cache = args
    report = evaluate(parse(text, name="best"), {"adamw": load_rule("builtin:adamw")}, settings, cache=cache)
    return {"fitness": report.fitness[report.candidate.label].value,
            "tasks": {t.task: t.rules[report.candidate.label].summary.mean for t in report.tasks}}


def plot(curves: dict, checkpoints: list[int], sgd: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, (strategy, runs) in enumerate(curves.items()):
        color = f"C{k}"
        ys = [[min(run[e], 5.0) for e in checkpoints] for run in runs]     # a divergence drawn at 5
        for y in ys:                                                          # each search seed
            ax.plot(checkpoints, y, color=color, lw=0.8, alpha=0.35)
        median = [statistics.median(col) for col in zip(*ys)]
        ax.plot(checkpoints, median, color=color, marker="o", lw=2,
                label=f"{strategy} (median of {len(runs)} search seeds; thin: each)")
    ax.set_yscale("log")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="AdamW (tuned)")
    ax.axhline(min(sgd, 5.0), color="gray", ls=":", lw=1, label="SGD, the seed")
    ax.set_xlabel("trained rules")
    ax.set_ylabel("held-out fitness of the best rule so far\n(val loss / AdamW's, lower is better; 5 = diverged)")
    ax.set_title("Rediscovery from SGD: held-out fitness, fresh seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    from dsl.loader import load_rule
    from dsl.printer import to_text
    from evaluators.evaluate import evaluate
    from evaluators.fitness import WORST_FITNESS as FAILED
    from evaluators.results import write_json
    from evaluators.stats import mann_whitney_less
    from search.config import load_config
    from search.validation import heldout_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="rediscovery")
    parser.add_argument("--evaluations", type=int, default=120)
    parser.add_argument("--search-seeds", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--checkpoints", type=int, default=4, help="points along the budget (default 4)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--plot", type=Path, default=HERE / "results" / "rediscovery.png")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "rediscovery.json")
    parser.add_argument("--replot", type=Path, metavar="JSON", help="only draw the plot again from a run's numbers")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(args.replot.read_text())
        curves = {s: [{int(e): v for e, v in r.items()} for r in runs] for s, runs in saved["curves"].items()}
        plot(curves, saved["checkpoints"], saved["sgd"], args.plot)
        print(f"plot {args.plot}")
        return

    t_start = time.perf_counter()
    cfg = load_config(args.config)
    held = heldout_settings(cfg)
    checkpoints = sorted({max(1, round(args.evaluations * (k + 1) / args.checkpoints))
                          for k in range(args.checkpoints)})
    root = args.runs or Path(tempfile.mkdtemp(prefix="rediscovery-"))
    jobs = [(args.config, s, seed, args.evaluations, root / f"{s}-{seed}")
            for seed in range(args.search_seeds) for s in args.strategies]
    print(f"{len(jobs)} searches of {args.evaluations} rules ({', '.join(args.strategies)} x "
          f"{args.search_seeds} seeds) in {root}; held-out: {', '.join(t.name for t in held.tasks)} "
          f"({held.seeds} seeds, budget {held.budget})", flush=True)
    from tqdm import tqdm

    with cf.ProcessPoolExecutor(max_workers=args.workers) as pool:
        searches = {}
        futures = {pool.submit(_search, j): j for j in jobs}
        for fut in tqdm(cf.as_completed(futures), total=len(futures), desc="searches", file=sys.stderr):
            j = futures[fut]
            searches[(j[1], j[2])] = fut.result()
        adamw_cache: dict = {}
        evaluate(load_rule("builtin:adamw"), {"adamw": load_rule("builtin:adamw")}, held, cache=adamw_cache)
        bests = {k: best_by_checkpoint(Path(v["run_dir"]), checkpoints, cfg.noise_z) for k, v in searches.items()}
        sgd_text = to_text(load_rule("builtin:sgd"), doc=False)
        texts = sorted({t for b in bests.values() for _, t in b.values()} | {sgd_text})
        held_futures = {pool.submit(_heldout, (t, held, adamw_cache)): t for t in texts}
        measured = {}
        for fut in tqdm(cf.as_completed(held_futures), total=len(held_futures), desc="held-out", file=sys.stderr):
            measured[held_futures[fut]] = fut.result()

    sgd = measured[sgd_text]["fitness"]
    curves = {s: [] for s in args.strategies}
    for (strategy, _), best in sorted(bests.items()):
        curves[strategy].append({e: measured[best[e][1]]["fitness"] if e in best else math.inf for e in checkpoints})
    finals = {s: [run[checkpoints[-1]] for run in runs] for s, runs in curves.items()}
    print(f"\nheld-out fitness of the best rule so far (AdamW = 1; SGD, the seed: {sgd:.3f}); median over "
          "search seeds, (k) = k of them diverged held out")
    print(f"{'strategy':<10} " + " ".join(f"{e:>11}" for e in checkpoints) + "   final, per search seed")

    def cell(values: list[float]) -> str:
        failed = sum(v >= FAILED for v in values)
        return f"{statistics.median(values):.3f}" + (f" ({failed})" if failed else "    ")

    for s, runs in curves.items():
        print(f"{s:<10} " + " ".join(f"{cell([r[e] for r in runs]):>11}" for e in checkpoints)
              + "   " + ", ".join("diverged" if x >= FAILED else f"{x:.3f}" for x in finals[s]))
    tests = {}
    if "random" in finals:
        for s in finals:
            if s == "random":
                continue
            p = mann_whitney_less(finals[s], finals["random"])
            tests[s] = {"mann_whitney_p_one_sided": p}
            print(f"{s} better than random: one-sided exact Mann-Whitney p = {p:.4f} "
                  f"({len(finals[s])} vs {len(finals['random'])} search seeds)")
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(curves, checkpoints, sgd, args.plot)
    write_json({"config": args.config, "evaluations": args.evaluations, "checkpoints": checkpoints,
                "curves": {s: [{str(e): v for e, v in r.items()} for r in runs] for s, runs in curves.items()},
                "best_texts": {f"{s}-{seed}": {str(e): b for e, b in best.items()}
                               for (s, seed), best in bests.items()},
                "sgd": sgd, "tests": tests, "heldout": {"tasks": [t.name for t in held.tasks], "seeds": held.seeds},
                "search_wall_s": {f"{s}-{seed}": v["wall_s"] for (s, seed), v in searches.items()},
                "wall_s": time.perf_counter() - t_start}, args.out)
    print(f"plot {args.plot}; numbers {args.out}; wall time {time.perf_counter() - t_start:.0f} s")
    print(json.dumps({s: round(statistics.median(v), 4) for s, v in finals.items()}))


if __name__ == "__main__":
    main()

"""Benchmark: seed noise of a suite's tasks, and the smallest effect each can detect.

For each task of a suite at a preset, AdamW is tuned with the default grid tuner on the tuning
seed and trained at the tuned lr on N fresh seeds, exactly as `optforge evaluate` does it
(`evaluators.evaluate.evaluate`, AdamW as its own reference). Per task it prints the validation
loss mean, std, std/mean, the tuned lr and whether it sat at the grid's edge, the minimum
detectable effect of a two-sided Welch test at p < 0.05 with 80% power and N seeds per arm
(`evaluators.stats.minimum_detectable_effect`, as a % of the mean) and the task's wall time for
one rule. With `--rules adamw,sgd,lion` the other rules are tuned and trained the same way and
each one's difference from AdamW is printed as a % of AdamW's mean with its Welch p and whether
it exceeds the MDE ("separates").

A reference figure is measured in the same run, before and after the tasks: one AdamW run on
`digits_mlp` at the `cpu` preset (the machine's speed; other work on a shared machine slows
both alike, so the ratio to it travels better than seconds). Nothing is asserted and no number
is written in advance. The last line is the suite's total for one rule.

    python bench/heldout_noise.py --suite heldout --preset cpu --seeds 5
    python bench/heldout_noise.py --suite selection --seeds 3 --rules adamw,sgd,lion
    python bench/heldout_noise.py --suite heldout --tasks digits_cnn --seeds 8 --budget 6
"""

from __future__ import annotations

import argparse
import math
import time

from dsl import load_rule
from evaluators.evaluate import REFERENCE, Settings, TaskPlan, evaluate
from evaluators.results import write_json
from evaluators.stats import minimum_detectable_effect, welch_t_test
from evaluators.suites import load_suite
from evaluators.train import run_training
from evaluators.tuning import DEFAULT_BUDGET

NOISE_GOAL = 0.05  # issue 8: seed std at most 5% of AdamW's mean loss


def reference_seconds() -> float:
    """Wall seconds of one AdamW run on digits_mlp at the cpu preset (lr 3e-3, seed 0), after a
    short warm-up run (imports, data loading and the rule's compilation are not counted)."""
    run_training("digits_mlp", "builtin:adamw", 3e-3, seed=0, preset="cpu", steps=5)
    start = time.perf_counter()
    run_training("digits_mlp", "builtin:adamw", 3e-3, seed=0, preset="cpu")
    return time.perf_counter() - start


def measure_task(plan: TaskPlan, rules: dict, args, cache: dict) -> dict:
    """Every rule on one task (AdamW first): losses, tuned lr, edge flag and wall time each."""
    out = {}
    for label, rule in rules.items():
        settings = Settings(suite=args.suite, tasks=(plan,), seeds=args.seeds, budget=args.budget,
                            preset=args.preset, tune_seed=args.tune_seed)
        report = evaluate(rule, {REFERENCE: rules[REFERENCE]}, settings, cache=cache)
        task = report.tasks[0]
        mine = task.rules[report.candidate.label]
        out[label] = {"losses": mine.losses, "mean": mine.summary.mean, "std": mine.summary.std,
                      "lr": mine.tuning.best_lr, "edge": mine.tuning.at_edge,
                      "wall_s": task.usage.wall_time_s,
                      "steps_to_target": mine.steps_to_target,
                      "val_curves": [r.val_curve for r in mine.runs]}
    return out


def task_lines(name: str, per_rule: dict, seeds: int) -> tuple[list[str], bool, float]:
    """Printed lines for one task, whether AdamW met the noise goal, and AdamW's wall time."""
    ref = per_rule[REFERENCE]
    mean, std = ref["mean"], ref["std"]
    rel = std / mean if mean else math.nan
    mde = minimum_detectable_effect(std, seeds)
    ok = rel <= NOISE_GOAL
    lines = [f"{name:18s} adamw {mean:.4f} +- {std:.4f} ({seeds} seeds)  std/mean "
             f"{100 * rel:5.2f}% {'ok' if ok else 'OVER 5%'}  MDE {mde:.4f} = "
             f"{100 * mde / mean:5.1f}% of mean  lr {ref['lr']:.3g}"
             f"{' (grid edge)' if ref['edge'] else ''}  {ref['wall_s']:.1f} s/rule"]
    for label, r in per_rule.items():
        if label == REFERENCE:
            continue
        diff = r["mean"] - mean
        p = welch_t_test(r["losses"], ref["losses"]).p_value
        lines.append(f"{'':18s} {label:6s}{r['mean']:.4f} +- {r['std']:.4f}  vs adamw "
                     f"{100 * diff / mean:+6.1f}%  Welch p {p:.3g}  "
                     f"{'separates' if abs(diff) > mde else 'within MDE'}  lr {r['lr']:.3g}"
                     f"{' (grid edge)' if r['edge'] else ''}  {r['wall_s']:.1f} s")
    return lines, ok, ref["wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="heldout", help="suite name or YAML (default heldout)")
    parser.add_argument("--preset", default="cpu", help="size preset (default cpu)")
    parser.add_argument("--seeds", type=int, default=5, help="fresh seeds per rule (default 5)")
    parser.add_argument("--budget", type=int, default=6,
                        help=f"lr trials per rule and task (default 6; evaluate's is "
                        f"{DEFAULT_BUDGET})")
    parser.add_argument("--tasks", help="comma-separated subset of the suite's tasks")
    parser.add_argument("--rules", default=REFERENCE,
                        help="comma-separated builtins; adamw is always first (default adamw)")
    parser.add_argument("--tune-seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write every figure and curve here")
    args = parser.parse_args()
    suite = load_suite(args.suite)
    args.suite = suite.name
    names = [REFERENCE] + [n for n in args.rules.split(",") if n.strip() and n != REFERENCE]
    rules = {n.strip(): load_rule(f"builtin:{n.strip()}") for n in names}
    plans = [TaskPlan(n, s) for n, s in suite.select(args.tasks and args.tasks.split(","),
                                                      args.preset)]
    before = reference_seconds()
    print(f"reference: one AdamW run on digits_mlp (cpu preset) took {before:.2f} s here",
          flush=True)
    total, met, cache, record = 0.0, 0, {}, {"settings": vars(args)}
    for plan in plans:
        record[plan.name] = measure_task(plan, rules, args, cache)
        lines, ok, wall = task_lines(plan.name, record[plan.name], args.seeds)
        print("\n".join(lines), flush=True)
        total, met = total + wall, met + ok
        if args.json:
            write_json(record, args.json)
    after = reference_seconds()
    ref = (before + after) / 2
    record["reference_s"] = [before, after]
    if args.json:
        write_json(record, args.json)
    print(f"reference again: {after:.2f} s (mean {ref:.2f} s)")
    print(f"{suite.name} suite, {args.preset} preset: std/mean <= {100 * NOISE_GOAL:.0f}% on "
          f"{met}/{len(plans)} tasks with {args.seeds} seeds; one rule (budget {args.budget} + "
          f"{args.seeds} seeds) {total:.1f} s wall = {total / ref:.0f} x the reference run")


if __name__ == "__main__":
    main()

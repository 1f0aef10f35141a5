"""`optforge evaluate RULE`: tune a rule and the baselines fairly, train on seeds, compare, report.

A thin shell around `evaluators.evaluate`: it resolves names (rule, baselines, suite, preset,
device) into objects, turning every user mistake into one line and exit code 2, drives a progress
bar, prints a table per task and a one-line verdict, and leaves `results.json` and PNG plots in
the output folder.
"""

from __future__ import annotations

import datetime as _dt
import re
import sys
from pathlib import Path

HELP = "evaluate a rule against tuned baselines on a task suite (tables, results.json, plots)"

DESCRIPTION = """\
Evaluate an update rule against tuned baselines, fairly and with statistics.

Protocol, per task of the suite and per rule (the candidate and every baseline alike):
  1. tune the learning rate on seed 0 with the same budget of training runs (--budget):
     a log grid that widens when the best lr sits at an edge (--tuner grid), or Optuna TPE
     with as many trials (--tuner tpe); every rule's grid is placed at its own update scale
     (its update RMS at the initial weights against AdamW's), so a rule and the same rule
     times a constant get the same fitness; while the best lr is still at an edge after the
     budget, the grid widens up to --max-extra more trials (the same rule for every rule);
  2. train at the tuned lr on --seeds fresh seeds (1..N);
  3. report the validation loss mean +- std, the ratio to tuned AdamW, and a Welch t-test
     p-value of the candidate against each baseline. A significance claim needs >= 3 seeds.
     Under each table: AdamW's seed std as a % of its mean, and the smallest difference a
     Welch test with these seeds detects (p < 0.05, power 0.8), as a % of AdamW's mean.

Fitness = geometric mean over tasks of (rule's val loss / AdamW's): below 1 beats AdamW; a
diverged or non-finite run gives the worst fitness (1e6). AdamW is always evaluated (it is the
normaliser). The held-out suite also gets AlgoPerf performance profiles (r_max = 4).

Writes OUT/results.json (settings, code version, every run with its curves, per-task statistics,
top-level `fitness`, `seed_noise` per task), OUT/loss_<task>.png (plus performance_profile.png for
held-out) and OUT/report.html (all of it, and each run's diagnostics, on one self-contained page).

example:
  optforge evaluate builtin:lion --suite proxy --baselines adamw,sgd --seeds 3
  optforge evaluate my_rule.opt --preset tiny --budget 3 --seeds 2 --out runs/try
"""

DEFAULT_BASELINES = "adamw,lion,muon,sgd"
DEVICES = ("cpu", "cuda")


def add_arguments(parser) -> None:
    from evaluators.tuning import DEFAULT_BUDGET, TUNERS

    parser.add_argument("rule", metavar="RULE", help="a rule file (.opt) or builtin:NAME")
    parser.add_argument("--suite", default="proxy",
                        help="proxy, heldout, or a suite YAML file (default: proxy)")
    parser.add_argument("--baselines", default=DEFAULT_BASELINES,
                        help=f"comma-separated builtin names (default: {DEFAULT_BASELINES}); "
                        "adamw is always added")
    parser.add_argument("--seeds", default="3", metavar="N",
                        help="evaluation seeds per rule and task (default: 3; >= 3 for "
                        "significance)")
    parser.add_argument("--budget", default=str(DEFAULT_BUDGET), metavar="N",
                        help=f"lr tuning trials per rule and task (default: {DEFAULT_BUDGET})")
    parser.add_argument("--max-extra", default="4", metavar="N",
                        help="extra grid points allowed past the budget while a rule's best lr is at "
                        "an edge (default 4; 0: exactly --budget trials)")
    parser.add_argument("--tuner", default="grid",
                        help=f"{' or '.join(TUNERS)} (default: grid)")
    parser.add_argument("--preset", default="cpu", help="size preset: tiny, cpu or gpu "
                        "(default: cpu)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default: runs/evaluate-<rule>-<timestamp>)")
    parser.add_argument("--profiles", action="store_true",
                        help="also compute performance profiles (always on for heldout)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _positive_int(value: str, flag: str, allow_zero: bool = False) -> int:
    from search.cli import UserError

    what = "an integer >= 0" if allow_zero else "a positive integer"
    try:
        n = int(value)
    except ValueError:
        raise UserError(f"{flag} must be {what}, got {value!r}") from None
    if n < (0 if allow_zero else 1):
        raise UserError(f"{flag} must be {what}, got {value!r}")
    return n


def _load_baselines(spec: str) -> dict:
    from dsl import RuleError, load_rule
    from search.cli import UserError

    names = [n.strip() for n in spec.split(",") if n.strip()]
    if "adamw" not in names:
        names.insert(0, "adamw")
    out = {}
    for name in dict.fromkeys(names):
        try:
            out[name] = load_rule(f"builtin:{name}")
        except RuleError as exc:
            raise UserError(f"baseline {name!r}: {exc}") from None
    return out


def _resolve(args):
    """Turn the arguments into (candidate, baselines, Settings, out dir) or raise UserError."""
    from dsl import load_rule
    from evaluators import suites
    from evaluators.evaluate import Settings, TaskPlan
    from evaluators.tuning import TUNERS
    from search.cli import UserError

    seeds = _positive_int(args.seeds, "--seeds")
    budget = _positive_int(args.budget, "--budget")
    max_extra = _positive_int(args.max_extra, "--max-extra", allow_zero=True)
    if args.tuner not in TUNERS:
        raise UserError(f"unknown tuner {args.tuner!r}; choose from {', '.join(TUNERS)}")
    if args.preset not in suites.PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; choose from {', '.join(suites.PRESETS)}")
    if args.device not in DEVICES:
        raise UserError(f"unknown device {args.device!r}; choose from {', '.join(DEVICES)}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA GPU is available here")
    try:
        suite = suites.load_suite(args.suite)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"suite {args.suite!r}: {exc}") from None
    candidate = load_rule(args.rule)  # a dsl.RuleError is the CLI's one-line exit 2
    baselines = _load_baselines(args.baselines)
    tasks = tuple(TaskPlan(n, steps) for n, steps in suite.select(None, args.preset))
    settings = Settings(suite=suite.name, suite_source=suite.source, tasks=tasks, seeds=seeds,
                        budget=budget, tuner=args.tuner, preset=args.preset, device=args.device,
                        profiles=args.profiles or suite.name == "heldout", max_extra=max_extra)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", candidate.name or Path(args.rule).stem)
    out = Path(args.out) if args.out else Path("runs") / f"evaluate-{slug}-{stamp}"
    return candidate, baselines, settings, out


def _fmt(x: float, spec: str = ".4f") -> str:
    return "-" if x != x else ("inf" if x == float("inf") else format(x, spec))


def format_task(task, candidate: str, seeds: int) -> str:
    """The table of one task: tuned lr, val loss mean +- std, ratio to AdamW, p vs candidate."""
    head = (f"{task.task}  (val loss over {seeds} seed(s); p: Welch t-test vs {candidate}; "
            f"{task.usage.wall_time_s:.1f} s)")
    rows = [("rule", "tuned lr", "val loss mean +- std", "/ adamw", "p (Welch)", "note")]
    for label, r in task.rules.items():
        notes = []
        if r.tuning.at_edge:
            notes.append("lr at grid edge")
        if any(x.diverged for x in r.runs):
            notes.append(f"{sum(x.diverged for x in r.runs)} diverged")
        rows.append((label, f"{r.tuning.best_lr:.3g}",
                     f"{_fmt(r.summary.mean)} +- {_fmt(r.summary.std)}",
                     _fmt(r.vs_adamw.ratio, ".3f") if r.vs_adamw.status == "ok"
                     else r.vs_adamw.status,
                     "" if label == candidate else _fmt(r.welch_p, ".3g"), ", ".join(notes)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join([head, *("  " + line for line in lines), format_noise(task)])


def reference_noise(task):
    """AdamW's seed noise on one task and the smallest effect its seeds can detect."""
    from evaluators.evaluate import REFERENCE
    from evaluators.stats import seed_noise

    return seed_noise(task.rules[REFERENCE].losses)


def format_noise(task) -> str:
    """One line: AdamW's seed std and the minimum detectable effect, as % of AdamW's mean."""
    from evaluators.stats import ALPHA_DEFAULT, DEFAULT_POWER

    n = reference_noise(task)
    return (f"  adamw seed std {_fmt(100 * n.rel_std, '.1f')}% of its mean; smallest "
            f"detectable effect (Welch p < {ALPHA_DEFAULT:g}, power {DEFAULT_POWER:g}, {n.n} "
            f"seeds per rule) {_fmt(100 * n.rel_mde, '.1f')}% of it")


def run(args) -> int:
    from tqdm import tqdm

    from evaluators.evaluate import evaluate, label_rules
    from evaluators.plots import plot_report
    from evaluators.resources import format_bytes
    from evaluators.results import write_json

    candidate, baselines, settings, out = _resolve(args)
    n_rules = len(label_rules(candidate, baselines))
    bar = tqdm(total=settings.total_runs(n_rules), unit="run", desc="evaluate",
               disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)
    def advance(n: int) -> None:  # the grid's extra widening trials come on top of the planned runs
        if bar.total is not None and bar.n + n > bar.total:
            bar.total = bar.n + n
        bar.update(n)

    with bar:
        report = evaluate(candidate, baselines, settings, progress=advance, candidate_source=args.rule)
    report.plots = plot_report(report, out)
    noise = {t.task: reference_noise(t).to_dict() for t in report.tasks}
    path = write_json({**report.to_dict(), "seed_noise": noise}, out / "results.json")
    from search.report import write_evaluate_report

    page = write_evaluate_report(out)
    for task in report.tasks:
        print(format_task(task, report.candidate.label, settings.seeds))
        print()
    fit = report.fitness
    print("fitness (geometric mean of val loss / AdamW's): "
          + ", ".join(f"{k} {v.value:.3f}" for k, v in fit.items()))
    if report.profiles:
        print("performance profile scores (AlgoPerf, r_max = 4): "
              + ", ".join(f"{k} {v:.3f}" for k, v in report.profiles["scores"].items()))
    print(report.verdict())
    u = report.usage
    print(f"time {u.wall_time_s:.1f} s on {args.device} ({u.device_name}); peak memory "
          f"{format_bytes(u.peak_memory_bytes)} ({u.memory_kind})"
          + (f", {format_bytes(u.reserved_memory_bytes)} reserved" if u.reserved_memory_bytes else ""))
    print(f"wrote {path}, {page} and {len(report.plots)} plot(s)")
    return 0

"""`optforge ablate RULE`: remove or neutralise each part of a rule and measure what it costs."""

from __future__ import annotations

import datetime as _dt
import math
import sys
import time

MIN_SEEDS = 2  # a Welch test needs two samples per rule
HELP = "ablate a rule: remove each statement, neutralise each constant, measure the change"

DESCRIPTION = """\
Which parts of a rule carry it? Each part is removed or neutralised in turn and the variant is
evaluated with the protocol of `optforge evaluate` against tuned AdamW (lr tuned for every
variant with the same budget, then --seeds fresh seeds):

  statement   removed: the name keeps its earlier value in the step (zero for state), i.e.
              replaced by its identity; dead code is listed with no effect and not trained
  constant    set to the identity of its operation (0 for +, 1 for * and the right of / and **),
              else 0 (the term switched off)
  hparam      set to 0 (no momentum for a beta, no decay for wd)

For each part: the variant's fitness, the factor by which the rule's fitness changes without it
(exp of the mean change in per-seed log fitness), a two-sided Welch p-value over the seeds, and
a verdict: carries the rule (significantly worse without it), better without it, no significant
effect. A variant that cannot run (its update no longer depends on g) or diverges is the largest
effect there is. Variants that compute exactly what another computed are not trained again.

Writes DIR/results.json, DIR/ablation.png and DIR/report.html.

examples:
  optforge ablate builtin:lion --suite proxy --tasks quadratic,digits_mlp --seeds 3
  optforge ablate my_rule.opt --preset tiny --budget 3 --seeds 3 --out runs/ablate-try
"""


def add_arguments(parser) -> None:
    from .protocol_options import add_protocol_arguments

    parser.add_argument("rule", metavar="RULE", help="a rule file (.opt) or builtin:NAME")
    parser.add_argument("--suite", default="proxy",
                        help="proxy, heldout, or a suite YAML file (default: proxy)")
    parser.add_argument("--tasks", metavar="A,B", help="comma-separated tasks of the suite "
                        "(default: all of them)")
    add_protocol_arguments(parser, "ablate", "variant", MIN_SEEDS)


def resolve(args):
    """(rule, scorer settings as keyword arguments, out dir), or UserError / RuleError."""
    from dsl import load_rule
    from evaluators import suites
    from search.cli import UserError

    from .protocol_options import check_protocol_arguments, out_dir

    seeds, budget = check_protocol_arguments(args, MIN_SEEDS)
    try:
        suite = suites.load_suite(args.suite)
    except (OSError, ValueError) as exc:
        raise UserError(f"suite {args.suite!r}: {exc}") from None
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    try:
        suite.select(tasks, args.preset)
    except ValueError as exc:
        raise UserError(f"--tasks: {exc}") from None
    rule = load_rule(args.rule)  # a RuleError is the CLI's one-line exit 2
    return rule, {"suite": args.suite, "tasks": tasks, "preset": args.preset, "seeds": seeds,
                  "budget": budget}, out_dir(args.out, "ablate", rule, args.rule)


def _row_fitness(scorer, row) -> tuple[float | None, dict]:
    report = scorer.report(row.measurement.key) if row.measurement.key else None
    if report is None:
        return None, {}
    fit = report.fitness[report.candidate.label]
    return fit.value, {t: f.ratio for t, f in fit.tasks.items()}


def run(args) -> int:
    from tqdm import tqdm

    from evaluators.results import provenance, write_json
    from search.ablation import ablate, variants
    from search.report import write_ablation_report
    from search.report.ablation_page import plot_ablation
    from search.rule_scoring import Measurer, protocol_scorer

    rule, options, out = resolve(args)
    started, t0 = _dt.datetime.now(_dt.timezone.utc), time.perf_counter()
    parts = variants(rule)
    bar = tqdm(unit="run", desc="ablate", disable=args.no_progress, file=sys.stderr,
               dynamic_ncols=True)
    scorer = protocol_scorer(**options, progress=bar.update)
    bar.total = scorer.runs_per_rule * (1 + sum(v is not None for _, v in parts))

    def on_row(row):
        if row.measurement.reused or row.measurement.status == "invalid":
            bar.total -= scorer.runs_per_rule  # nothing was trained for it
            bar.refresh()

    with bar:
        try:
            result = ablate(rule, Measurer(scorer), on_row=on_row)
        except ValueError as exc:
            from search.cli import UserError

            raise UserError(str(exc)) from None
    data = result.to_dict()
    base_report = scorer.report(result.base.key)
    data["fitness"] = base_report.fitness[base_report.candidate.label].value
    for entry, row in zip(data["rows"], result.rows):
        entry["fitness"], entry["tasks"] = _row_fitness(scorer, row) if not row.part.dead \
            else (data["fitness"], {})
    data.update(settings=scorer.settings.to_dict(), provenance=provenance(started),
                wall_time_s=time.perf_counter() - t0)
    data["plot"] = plot_ablation(data, out / "ablation.png")
    path = write_json(data, out / "results.json")
    write_ablation_report(out, data)
    print(f"rule fitness {data['fitness']:.4f} over {options['seeds']} seeds "
          f"(per-seed ln fitness {', '.join(f'{x:.3f}' for x in result.base.samples)})")
    for entry in data["rows"]:
        factor = entry["fitness_factor"]
        shown = "inf" if factor is None or not math.isfinite(factor) else f"x{factor:.3f}"
        p = entry["p_value"]
        print(f"  {entry['part']['kind']:9} {entry['part']['text'][:48]:48} {shown:>8}  "
              f"p {'-' if p is None or p != p else f'{p:.3g}':>6}  {entry['verdict']}")
    print(f"wrote {path}, {out / 'ablation.png'} and {out / 'report.html'}")
    return 0

"""`optforge regimes RULE`: a map of where a rule works and where it fails, vs the baselines."""

from __future__ import annotations

import datetime as _dt
import sys
import time


def _axes_help() -> str:
    from evaluators.regimes import AXES

    return "\n".join(f"  {a.name:10} {a.help}; levels {', '.join(f'{x:g}' for x in a.levels)}; "
                     f"on {', '.join(a.tasks)}" for a in AXES.values())


HELP = "map where a rule works and fails: batch size, conditioning, noise, lr, training length"


def _description() -> str:
    return f"""\
A regime map: the rule and the baselines measured across axes a user cares about, each cell
with the protocol of `optforge evaluate` (lr tuned with the same budget for every rule, then
--seeds fresh seeds) and reported as the rule's validation loss over AdamW's under the same
regime (below 1 beats AdamW; geometric mean over the axis's tasks). Axes (--axes):
{_axes_help()}

The lr axis trains every rule at level x its own lr tuned at the task's default settings, so it
shows how forgiving a rule is to a mistuned lr. --levels AXIS=V1,V2 measures other levels.

Writes DIR/results.json (every cell: ratio, losses, lr), DIR/regimes.png (the heat map: rules
x regimes, blue better than AdamW, red worse) and DIR/report.html.

examples:
  optforge regimes builtin:lion --baselines adamw,sgd --axes batch,condition --seeds 3
  optforge regimes my_rule.opt --axes steps --levels steps=0.5,1,2 --preset tiny --out runs/map
"""


DESCRIPTION = _description()


def add_arguments(parser) -> None:
    from evaluators.regimes import AXES

    from .protocol_options import add_protocol_arguments

    parser.add_argument("rule", metavar="RULE", help="a rule file (.opt) or builtin:NAME")
    parser.add_argument("--baselines", default="adamw,sgd",
                        help="comma-separated builtin names (default: adamw,sgd); adamw is always "
                        "added")
    parser.add_argument("--axes", default=",".join(AXES),
                        help=f"comma-separated axes (default: all: {', '.join(AXES)})")
    parser.add_argument("--levels", action="append", default=[], metavar="AXIS=V1,V2",
                        help="levels to measure on an axis instead of its own (repeatable)")
    add_protocol_arguments(parser, "regimes", "rule and regime")


def _levels(specs: list[str]) -> dict[str, list[float]]:
    from search.cli import UserError

    out = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        try:
            out[name.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"--levels {spec!r}: expected AXIS=V1,V2 with numbers") from None
        if not values.strip():
            raise UserError(f"--levels {spec!r}: expected AXIS=V1,V2 with numbers")
    return out


def resolve(args):
    """(rule, baselines, Settings, axes, out dir), or UserError / RuleError."""
    from dsl import load_rule
    from evaluators.evaluate import Settings
    from evaluators.regimes import parse_axes
    from search.cli import UserError
    from search.commands.evaluate import _load_baselines

    from .protocol_options import check_protocol_arguments, out_dir

    seeds, budget = check_protocol_arguments(args)
    names = [a.strip() for a in args.axes.split(",") if a.strip()]
    if not names:
        raise UserError("--axes: name at least one axis")
    try:
        axes = parse_axes(names, _levels(args.levels))
    except ValueError as exc:
        raise UserError(f"--axes: {exc}") from None
    rule = load_rule(args.rule)  # a RuleError is the CLI's one-line exit 2
    baselines = _load_baselines(args.baselines)
    settings = Settings(suite="regimes", tasks=(), seeds=seeds, budget=budget, preset=args.preset)
    return rule, baselines, settings, axes, out_dir(args.out, "regimes", rule, args.rule)


def run(args) -> int:
    from tqdm import tqdm

    from evaluators.evaluate import label_rules
    from evaluators.regimes import regime_map, total_runs
    from evaluators.results import provenance, write_json
    from search.report import write_regimes_report
    from search.report.regimes_page import plot_regimes

    rule, baselines, settings, axes, out = resolve(args)
    started, t0 = _dt.datetime.now(_dt.timezone.utc), time.perf_counter()
    n_rules = len(label_rules(rule, baselines))
    with tqdm(total=total_runs(axes, settings, n_rules), unit="run", desc="regimes",
              disable=args.no_progress, file=sys.stderr, dynamic_ncols=True) as bar:
        result = regime_map(rule, baselines, settings, axes, progress=bar.update)
    data = result.to_dict()
    data.update(provenance=provenance(started), wall_time_s=time.perf_counter() - t0)
    data["plot"] = plot_regimes(data, out / "regimes.png")
    path = write_json(data, out / "results.json")
    write_regimes_report(out, data)
    columns = list(next(iter(data["table"].values())).keys())
    width = max(len(c) for c in columns)
    print(f"fitness vs AdamW per regime ({settings.seeds} seeds; below 1 beats AdamW):")
    print(" " * (width + 2) + "".join(f"{r[:10]:>11}" for r in data["rules"]))
    for c in columns:
        values = (data["table"][r][c] for r in data["rules"])
        print(f"  {c:{width}}" + "".join(f"{'fail' if v is None or v >= 1e6 else f'{v:.3f}':>11}"
                                         for v in values))
    print(f"wrote {path}, {out / 'regimes.png'} and {out / 'report.html'}")
    return 0

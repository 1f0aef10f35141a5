"""Options that `optforge ablate` and `optforge regimes` share with `optforge evaluate`'s
protocol: size preset, seeds, tuning budget, output folder, progress bar; and their checks."""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path


def add_protocol_arguments(parser, command: str, per: str, min_seeds: int = 1) -> None:
    """--preset, --seeds, --budget, --out and --no-progress; ``per`` names what one measurement
    is of ("variant", "rule and cell")."""
    from evaluators.tuning import DEFAULT_BUDGET

    at_least = f"; at least {min_seeds}" if min_seeds > 1 else ""
    parser.add_argument("--preset", default="cpu", help="size preset: tiny, cpu or gpu (default: cpu)")
    parser.add_argument("--seeds", default="3", metavar="N",
                        help=f"evaluation seeds per {per} (default: 3{at_least})")
    parser.add_argument("--budget", default=str(DEFAULT_BUDGET), metavar="N",
                        help=f"lr tuning trials per {per}, on each task (default: {DEFAULT_BUDGET})")
    parser.add_argument("--out", metavar="DIR",
                        help=f"output folder (default: runs/{command}-<rule>-<timestamp>)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def check_protocol_arguments(args, min_seeds: int = 1) -> tuple[int, int]:
    """(seeds, budget) from the arguments, or a one-line UserError naming the option."""
    from evaluators import suites
    from search.cli import UserError
    from search.commands.evaluate import _positive_int

    seeds = _positive_int(args.seeds, "--seeds")
    if seeds < min_seeds:
        raise UserError(f"--seeds must be at least {min_seeds} (a Welch test needs two samples), "
                        f"got {seeds}")
    budget = _positive_int(args.budget, "--budget")
    if args.preset not in suites.PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; choose from {', '.join(suites.PRESETS)}")
    return seeds, budget


def out_dir(arg: str | None, command: str, rule, spec: str) -> Path:
    """--out, or runs/<command>-<rule>-<timestamp>."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", rule.name or Path(spec).stem)
    return Path(arg) if arg else Path("runs") / f"{command}-{slug}-{stamp}"

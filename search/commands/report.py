"""`optforge report FOLDER`: write the self-contained report.html of a run folder again."""

from __future__ import annotations

from pathlib import Path

HELP = "write report.html (and leaderboard.md for a search) of a run folder again"

DESCRIPTION = """\
Render the report of a folder that optforge wrote, from the files in it (nothing is trained):

  a search run folder (journal.jsonl)    leaderboard.md, results.json, the plots, winners/ and
                                         report.html: the run (config, machine, time, counts of
                                         evaluations, cache hits and failures by kind), search
                                         progress per funnel stage, proxy vs held-out fitness
                                         over search time, held-out loss curves of the validated
                                         rules vs the baselines, the Pareto front, the lineage of
                                         the best rules, and every validated rule's text, hash,
                                         statistics, diagnostics and simplified form;
  an `optforge evaluate --out` folder    report.html: settings, fitness and verdict, per-task
  (or a search's validation/ID folder)   tables, loss curves, profiles and diagnostics;
  an `optforge ablate` or `regimes`      their report.html again.
  folder

report.html is one file with its images inlined: it reads the same when moved alone.
A search writes its report at the end, and `optforge evaluate` too; use this command on a
search that is still running, or after changing the report code.

examples:
  optforge report runs/quickstart
  optforge report runs/evaluate-lion-20250101-120000
"""


def add_arguments(parser) -> None:
    parser.add_argument("folder", metavar="FOLDER", help="a search run folder, or the output "
                        "folder of optforge evaluate, ablate or regimes")


def run(args) -> int:
    from search.cli import UserError
    from search.report import render

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UserError(f"FOLDER {str(folder)!r} is not a folder")
    try:
        kind, path = render(folder)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {path} ({kind} report)")
    return 0

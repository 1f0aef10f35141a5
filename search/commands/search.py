"""`optforge search CONFIG`: run a symbolic optimizer search, resumable, and report its winners.

A thin shell around `search.engine.run_search`: it loads the config, applies the command line's
overrides, runs the search (resumable; see the engine and `search.driver`) and prints a summary.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HELP = "run a symbolic optimizer search from a YAML config (resumable; writes runs/NAME/)"

DESCRIPTION = """\
Search for optimizer update rules, starting from known ones.

A strategy (evolution, optuna or random; set in the config) proposes rules. Each is
canonicalised, deduplicated (structural hash, then functional fingerprint: equivalent rules are
trained once), checked by the validity gate, and sent through the funnel: stages from cheap to
expensive (one task on one seed, the proxy suite, a selection suite on 3 seeds, ...), each
tuning every rule's lr with the same budget as AdamW around the rule's own update scale
(fitness = geometric mean of val loss / AdamW's on the same seeds, with a standard error from
the seed noise), and a promotion rule (a hurdle, or the top fraction so far) between stages.
Rules are ranked by the deepest stage they reached; the top ones of the last stage are
re-measured on fresh seeds. The best rules are then re-run on the held-out suite with several
seeds against the baselines; only those that beat every baseline there, significantly, are
winners, and are exported. The expected duration is printed at the start, from AdamW's measured
time on this machine, and again from the measured rate once the seeds are trained.

Every event is appended to RUN/journal.jsonl as it happens: stop it at any time (Ctrl-C, or
`kill PID`: SIGTERM stops it the same way, exit 143; even kill -9 loses nothing) and continue
with --resume; nothing finished is evaluated twice.

Writes RUN/config.yaml, journal.jsonl, leaderboard.md, results.json, report.html, progress.png,
pareto.png, proxy_vs_heldout.png and winners/*.opt + winners/*.py.

examples:
  optforge search quickstart                       # configs/quickstart.yaml, a few minutes on a laptop
  optforge search my.yaml --out runs/try --evaluations 100
  optforge search my.yaml --out runs/try --resume  # go on after an interruption (or extend)
  optforge search my.yaml --executor ray --address auto   # on a running Ray cluster
"""

def add_arguments(parser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="a search YAML file, or a shipped name "
                        "(quickstart)")
    parser.add_argument("--out", metavar="DIR", help="run folder (default: runs/NAME)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the search in the run folder from its journal")
    parser.add_argument("--evaluations", metavar="N", type=int,
                        help="override the config's number of candidates to train")
    parser.add_argument("--executor", choices=("serial", "ray"),
                        help="override executor.kind (serial: in-process; ray: Ray tasks)")
    parser.add_argument("--address", metavar="ADDR",
                        help="Ray cluster to join: auto or HOST:PORT (default: start a local Ray)")
    parser.add_argument("--no-validate", action="store_true",
                        help="skip the held-out meta-validation of the top candidates")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load(args):
    from search.cli import UserError
    from search.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if args.evaluations is not None:
        if args.evaluations < 1:
            raise UserError("--evaluations must be >= 1")
        cfg.evaluations = args.evaluations
    if args.executor:
        cfg.executor.kind = args.executor
    if args.address:
        cfg.executor.kind, cfg.executor.address = "ray", args.address
    return cfg, Path(args.out) if args.out else Path("runs") / cfg.name


def run(args) -> int:
    from search.cli import UserError
    from search.engine import SearchError, run_search, summary_lines
    from search.interrupts import Terminated

    cfg, run_dir = _load(args)
    t0 = time.perf_counter()
    try:
        pop = run_search(cfg, run_dir, resume=args.resume, validate=not args.no_validate,
                         progress=not args.no_progress)
    except SearchError as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt as exc:
        why = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"\n{why}; the journal is intact. Continue with: optforge search {args.config} "
              f"--out {run_dir} --resume", file=sys.stderr)
        return exc.exit_code if isinstance(exc, Terminated) else 130
    for line in summary_lines(pop, time.perf_counter() - t0):
        print(line)
    print(f"wrote {run_dir}/leaderboard.md, results.json, report.html")
    return 0

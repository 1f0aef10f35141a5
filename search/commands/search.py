"""`optforge search CONFIG`: run a symbolic optimizer search, resumable, and report its winners.

A thin shell around `search.driver`: it loads and checks the config, opens the run folder and its
journal, starts the executor (serial in-process by default, Ray with `--executor ray`), drives a
progress bar, meta-validates the best rules on the held-out suite, and writes the report.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from pathlib import Path

HELP = "run a symbolic optimizer search from a YAML config (resumable; writes runs/NAME/)"

DESCRIPTION = """\
Search for optimizer update rules, starting from known ones.

A strategy (evolution, optuna or random; set in the config) proposes rules. Each is
canonicalised, deduplicated (structural hash, then functional fingerprint: equivalent rules are
trained once), checked by the validity gate, and scored on the proxy suite: lr tuned with the
same budget as AdamW, fitness = geometric mean of (val loss / AdamW's), a cheap first task with
a hurdle before the rest. The best rules are then re-run on the held-out suite with several
seeds against the baselines; only those that beat every baseline there, significantly, are
winners, and are exported.

Every event is appended to RUN/journal.jsonl as it happens: interrupt at any time and continue
with --resume; nothing finished is evaluated twice.

Writes RUN/config.yaml, journal.jsonl, leaderboard.md, results.json, report.html, progress.png,
pareto.png, proxy_vs_heldout.png and winners/*.opt + winners/*.py.

examples:
  optforge search quickstart                       # configs/quickstart.yaml, a few minutes on a laptop
  optforge search my.yaml --out runs/try --evaluations 100
  optforge search my.yaml --out runs/try --resume  # go on after an interruption (or extend)
  optforge search my.yaml --executor ray --address auto   # on a running Ray cluster
"""

# config keys a resumed search may change: how long it runs and where it runs
RESUMABLE_CHANGES = ("evaluations", "executor", "validation")


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
    import yaml

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
    run_dir = Path(args.out) if args.out else Path("runs") / cfg.name
    journal = run_dir / "journal.jsonl"
    if journal.exists() and not args.resume:
        raise UserError(f"{run_dir} already holds a search; pass --resume to continue it, "
                        "or --out for a new folder")
    if args.resume and not journal.exists():
        raise UserError(f"--resume: {journal} does not exist")
    if args.resume and (run_dir / "config.yaml").exists():
        old = yaml.safe_load((run_dir / "config.yaml").read_text())
        new = cfg.resolved()
        changed = sorted(k for k in set(old) | set(new)
                         if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k))
        if changed:
            raise UserError(f"--resume: the config differs from the run's in {', '.join(changed)} "
                            f"(only {', '.join(RESUMABLE_CHANGES)} may change)")
    return cfg, run_dir


def _proxy_settings(cfg):
    from evaluators.suites import load_suite
    from search.cli import UserError
    from search.evaluation import ProxySettings

    try:
        suite = load_suite(cfg.proxy.suite)
    except (OSError, ValueError) as exc:
        raise UserError(f"proxy.suite: {exc}") from None
    try:
        tasks = suite.select(cfg.proxy.tasks, cfg.proxy.preset)
    except ValueError as exc:
        raise UserError(f"proxy.tasks: {exc}") from None
    return ProxySettings(tasks, cfg.proxy.preset, cfg.device, cfg.proxy.budget, cfg.proxy.tuner, 0,
                         cfg.proxy.hurdle)


def _executor(cfg):
    from search.executors import make_executor

    e = cfg.executor
    if e.kind == "serial":
        return make_executor("serial", timeout_s=e.timeout_s)
    return make_executor(e.kind, address=e.address, num_cpus=e.num_cpus, num_gpus=e.num_gpus,
                         max_retries=e.max_retries, timeout_s=e.timeout_s,
                         max_in_flight=e.max_in_flight)


def run(args) -> int:
    import yaml
    from tqdm import tqdm

    from dsl.errors import RuleError
    from evaluators.fitness import WORST_FITNESS
    from evaluators.results import code_version, write_text_atomic
    from populations.journal import Journal
    from search.cli import UserError
    from search.driver import Driver, seed_candidates
    from search.report import counts, write_report
    from search.strategies import make_strategy
    from search.validation import heldout_settings, meta_validate

    cfg, run_dir = _load(args)
    proxy = _proxy_settings(cfg)
    validate = not args.no_validate and cfg.validation.top_k > 0
    if validate:
        try:  # a bad validation section must fail now, not after the whole search
            heldout_settings(cfg)
        except (OSError, ValueError) as exc:
            raise UserError(str(exc) if str(exc).startswith("validation.") else f"validation.suite: {exc}") from None
    try:
        seeds, adamw_text = seed_candidates(cfg.seeds)
    except (RuleError, OSError) as exc:
        raise UserError(f"seeds: {exc}") from None
    started, t0 = _dt.datetime.now(_dt.timezone.utc), time.perf_counter()
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.resolved(), sort_keys=False))
    journal = Journal(run_dir / "journal.jsonl")
    session = sum(1 for r in journal.records if r["event"] == "start")
    journal.append("start", code_version=code_version(), session=session,
                   evaluations=cfg.evaluations, executor=cfg.executor.kind)
    strategy = make_strategy(cfg, seeds, run_dir, session=session)
    print(f"search {cfg.name!r}: strategy {cfg.strategy}, {cfg.evaluations} rules to train on "
          f"{', '.join(t for t, _ in proxy.tasks)} (preset {proxy.preset}), run folder {run_dir}")
    bar = tqdm(total=cfg.evaluations, unit="rule", desc=f"search {cfg.name}", file=sys.stderr,
               disable=args.no_progress, dynamic_ncols=True)

    def on_outcome(cand, outcome, pop):
        if outcome.trained:
            bar.update(1)
        best = pop.leaderboard(1)
        if best:
            bar.set_postfix_str(f"best {best[0].id} {best[0].outcome.fitness:.3f}")

    try:
        with _executor(cfg) as executor, bar:
            driver = Driver(journal, strategy, executor, proxy, seeds, cfg.evaluations,
                            on_outcome=on_outcome, log=bar.write)
            bar.update(driver.population.trained_count)
            pop = driver.run(adamw_text)
        if validate:
            meta_validate(pop, journal, cfg)
        journal.append("end", trained=pop.trained_count)
    except KeyboardInterrupt:
        journal.close()
        print(f"\ninterrupted; the journal is intact. Continue with: optforge search {args.config} "
              f"--out {run_dir} --resume", file=sys.stderr)
        return 130
    journal.close()
    data = write_report(pop, run_dir, cfg, started, time.perf_counter() - t0)
    c = counts(pop)
    print(f"trained {c['trained']} rules ({c['complete']} complete, {c['hurdle']} at the hurdle, "
          f"{c['failed']} failed); {c['duplicates']} duplicates and {c['invalid']} invalid not "
          f"trained; {time.perf_counter() - t0:.1f} s")
    for i, row in enumerate(data["leaderboard"][:5], 1):
        held = row["heldout"]
        extra = "" if not held else (
            "; held-out: failed (diverged or non-finite)" if held["fitness"] >= WORST_FITNESS
            else f"; held-out {held['fitness']:.3f}{' WINNER' if held['winner'] else ''}")
        print(f"  {i}. {row['id']} fitness {row['fitness']:.3f} [{row['status']}, "
              f"{row['origin']}{': ' + row['change'] if row['change'] else ''}]{extra}")
    print(f"winners: {', '.join(data['winners']) or 'none'}")
    print(f"wrote {run_dir}/leaderboard.md, results.json, report.html"
          + (f", {', '.join(data['exported'])}" if data["exported"] else ""))
    return 0

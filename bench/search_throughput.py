"""Benchmark: search throughput, serial in-process vs Ray workers, on the same config.

Runs the search engine (`search.engine.run_search`, what ``optforge search CONFIG --evaluations N
--no-validate`` runs) once per executor into fresh temporary folders and prints, from each run's
own journal: wall time from the first to the last journaled outcome (so Ray's start-up and the
AdamW reference are outside it, and reported apart), trained rules per minute, duplicates and
invalid rules skipped, and the largest relative gap between the seed rules' proxy fitness on the
two executors (the same jobs: any gap is numerics).
Nothing is asserted and no number is written in advance.

    python bench/search_throughput.py                  # quickstart, 30 rules
    python bench/search_throughput.py quickstart 60
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import tempfile
import time
from pathlib import Path

from populations.journal import read_records
from search.config import load_config
from search.engine import run_search


def _seconds(a: str, b: str) -> float:
    return (_dt.datetime.fromisoformat(b) - _dt.datetime.fromisoformat(a)).total_seconds()


def run_once(config: str, evaluations: int, executor: str, root: Path) -> dict:
    out = root / executor
    cfg = load_config(config)
    cfg.evaluations, cfg.executor.kind = evaluations, executor
    t0 = time.perf_counter()
    run_search(cfg, out, validate=False, progress=False, log=lambda line: None)
    total = time.perf_counter() - t0
    records = read_records(out / "journal.jsonl")
    ref = next(r for r in records if r["event"] == "reference")
    finished = [r for r in records if r["event"] == "finished"]
    trained = [r for r in finished if not r["outcome"]["same_as"] and r["outcome"]["status"] != "invalid"]
    loop = _seconds(ref["time"], finished[-1]["time"])
    data = json.loads((out / "results.json").read_text())
    seeds = {r["change"]: r["fitness"] for r in data["leaderboard"] if r["origin"] == "seed"}
    return {"executor": executor, "total_s": total, "loop_s": loop, "trained": len(trained),
            "per_min": 60 * len(trained) / loop, "skipped": len(finished) - len(trained),
            "seeds": seeds, "busy_s": sum(r["outcome"]["wall_time_s"] for r in trained)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="quickstart")
    parser.add_argument("evaluations", nargs="?", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="optforge-bench-") as tmp:
        rows = [run_once(args.config, args.evaluations, ex, Path(tmp)) for ex in ("serial", "ray")]
    print(f"{'executor':8} {'total s':>8} {'loop s':>8} {'trained':>8} {'rules/min':>10} "
          f"{'skipped':>8} {'job s sum':>10}")
    for r in rows:
        print(f"{r['executor']:8} {r['total_s']:8.1f} {r['loop_s']:8.1f} {r['trained']:8d} "
              f"{r['per_min']:10.1f} {r['skipped']:8d} {r['busy_s']:10.1f}")
    serial, ray = rows
    print(f"ray / serial throughput: {ray['per_min'] / serial['per_min']:.2f}x "
          "(loop time: first outcome after the reference to the last)")
    gap = max(abs(serial["seeds"][k] / ray["seeds"][k] - 1) for k in serial["seeds"])
    print(f"seed rules' proxy fitness, serial: {serial['seeds']}")
    print(f"largest relative gap between executors: {gap:.2g} (Ray starts workers with "
          "OMP_NUM_THREADS=1, which puts MKL on another code path than set_num_threads(1))")


if __name__ == "__main__":
    main()

"""Benchmark: optimizer step time of torch's AdamW, ProgramOptimizer and the exported AdamW class,
and of the frontier builtins against their reference packages.

On one ~1M-parameter model in 20 float32 tensors on the CPU, measures in ONE process the time of
`opt.step()` for:

    torch.optim.AdamW(foreach=False)       torch's for-loop implementation (the CPU default)
    torch.optim.AdamW(fused=True)          torch's fused kernel
    ProgramOptimizer(builtin:adamw)        the rule interpreter
    exported AdamW                         `optforge export builtin:adamw` (eager)
    exported AdamW, fused=True             the same class, step run through torch.compile

and prints each median time, the ratios the issue sets targets for (ProgramOptimizer /
foreach=False <= 1.5, exported eager / foreach=False <= 1.2, exported fused / fused=True <= 1.3),
and a markdown table for the README.

A second section (`--section frontier`; both run by default) times, on the same model, each
frontier builtin (AdEMAMix, ADOPT, Cautious AdamW/Lion, MARS, Shampoo, SOAP, Schedule-Free AdamW,
Prodigy, Moonlight's Muon) through ProgramOptimizer and its exported class (eager) against its
reference's own step: the per-parameter path (foreach=False, the one
tests/dsl/test_zoo_frontier.py checks numerically) and the reference's default (foreach=None:
batched on the CPU where the package has such a path; SOAP, Prodigy and the transcriptions have
one path only, so both columns time the same class). Rule, hparams and reference come from that
test's table (tests/dsl/frontier_references.py: its first benchable case per rule; Shampoo's
AlgoPerf form and Moonlight's Muon are its float64-faithful transcriptions, run here in
float32), so it needs the `test` extra (pytorch-optimizer, schedulefree, prodigyopt). Shampoo and
SOAP run with the table's hparams: a preconditioner refresh every 5 steps, far more often than
their defaults (100 and 10), so their times are dominated by eigh / QR.

Every optimizer gets the same parameters and gradients;
warm-up steps (which include the fast path's compilation) are not timed; the optimizers take turns
within each repeat, so drift in the machine's speed hits them alike. The thread count is fixed
(`--threads`, default 1) and printed. Nothing is asserted and no number is written in advance.

    python bench/step_overhead.py
    python bench/step_overhead.py --repeats 15 --steps 20 --threads 2 --json out.json
    python bench/step_overhead.py --section frontier
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsl import ProgramOptimizer, load_rule  # noqa: E402
from dsl.export import export_source  # noqa: E402

# nine 320x320 layers with biases and a 400x200 head: 1,004,880 parameters in 20 tensors
SHAPES = [(320, 320), (320,)] * 9 + [(400, 200), (400,)]
TARGETS = {"ProgramOptimizer / foreach=False": 1.5, "exported eager / foreach=False": 1.2,
           "exported fused / fused=True": 1.3}


def exported(rule: str, class_name: str):
    """The class `optforge export builtin:RULE --class-name NAME` writes, imported from a temporary file."""
    source = export_source(load_rule(f"builtin:{rule}"), class_name, {"source": f"builtin:{rule}"})
    path = Path(tempfile.mkdtemp(prefix="optforge-bench-")) / f"exported_{rule}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"exported_{rule}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.05) for s in SHAPES]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 0.01
    return params


def contenders(lr: float, wd: float) -> dict[str, object]:
    AdamW = exported("adamw", "AdamW")
    return {
        "torch AdamW foreach=False": lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=wd, foreach=False),
        "torch AdamW fused=True": lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=wd, fused=True),
        "ProgramOptimizer builtin:adamw": lambda ps: ProgramOptimizer(ps, "builtin:adamw", lr=lr, wd=wd),
        "exported AdamW (eager)": lambda ps: AdamW(ps, lr=lr, wd=wd),
        "exported AdamW fused=True": lambda ps: AdamW(ps, lr=lr, wd=wd, fused=True),
    }


def frontier_contenders() -> dict[str, dict[str, object]]:
    """rule -> contender name -> factory, for the first case of each rule in the frontier table."""
    sys.path.insert(0, str(ROOT / "tests" / "dsl"))
    from frontier_references import FRONTIER_CASES

    out: dict[str, dict[str, object]] = {}
    for case in FRONTIER_CASES:
        if case.rule in out or not case.bench:
            continue
        cls, spec = exported(case.rule, "Exported"), f"builtin:{case.rule}"
        out[case.rule] = {
            "reference foreach=False": lambda ps, c=case: c.reference(ps, c.lr, foreach=False),
            "reference default": lambda ps, c=case: c.reference(ps, c.lr, foreach=None),
            "ProgramOptimizer": lambda ps, c=case, s=spec: ProgramOptimizer(c.groups(ps, c.lr), s, lr=c.lr,
                                                                            **c.hparams),
            "exported (eager)": lambda ps, c=case, k=cls: k(c.groups(ps, c.lr), lr=c.lr, **c.hparams),
        }
    return out


def measure(repeats: int, steps: int, warmup: int, factories: dict[str, object] | None = None,
            ) -> dict[str, list[float]]:
    """Per-step seconds of each contender, one entry per repeat."""
    factories = factories or contenders(1e-3, 1e-2)
    opts = {name: factory(make_params()) for name, factory in factories.items()}
    for name, opt in opts.items():
        t0 = time.perf_counter()
        for _ in range(warmup):
            opt.step()
        print(f"  warm-up {name}: {time.perf_counter() - t0:.2f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in opts}
    for _ in range(repeats):
        for name, opt in opts.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            times[name].append((time.perf_counter() - t0) / steps)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=11, help="timed repeats per optimizer (median reported)")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation included)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--section", choices=("all", "adamw", "frontier"), default="all",
                        help="the AdamW overhead section, the frontier builtins, or both (default)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_params = sum(torch.Size(s).numel() for s in SHAPES)
    print(f"torch {torch.__version__}, {platform.machine()}, torch.get_num_threads() = {torch.get_num_threads()}")
    print(f"model: {n_params:,} float32 parameters in {len(SHAPES)} tensors; "
          f"median of {args.repeats} repeats x {args.steps} steps, {args.warmup} warm-up steps")
    report: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__, "params": n_params,
                    "tensors": len(SHAPES)}
    if args.section in ("all", "adamw"):
        report.update(adamw_section(args))
    if args.section in ("all", "frontier"):
        report["frontier"] = frontier_section(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def adamw_section(args) -> dict:
    times = measure(args.repeats, args.steps, args.warmup)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    ratios = {
        "ProgramOptimizer / foreach=False": med["ProgramOptimizer builtin:adamw"] / med["torch AdamW foreach=False"],
        "exported eager / foreach=False": med["exported AdamW (eager)"] / med["torch AdamW foreach=False"],
        "exported fused / fused=True": med["exported AdamW fused=True"] / med["torch AdamW fused=True"],
    }
    print()
    print("| optimizer step (AdamW, 1M params, CPU) | median ms | min ms | max ms |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {1e3 * med[name]:.3f} | {1e3 * min(ts):.3f} | {1e3 * max(ts):.3f} |")
    print()
    print("| ratio | measured | target |")
    print("|---|---:|---:|")
    for name, r in ratios.items():
        print(f"| {name} | {r:.2f} | <= {TARGETS[name]} |")
    return {"seconds": times, "median_seconds": med, "ratios": ratios}


def frontier_section(args) -> dict:
    """Each frontier rule: its four contenders measured together (they take turns per repeat)."""
    results: dict[str, dict] = {}
    for rule, factories in frontier_contenders().items():
        print(f"{rule}:", flush=True)
        times = measure(args.repeats, args.steps, args.warmup, factories)
        results[rule] = {"seconds": times, "median_seconds": {n: statistics.median(ts) for n, ts in times.items()}}
    print()
    versions = ", ".join(f"{pkg} {importlib.metadata.version(pkg)}" for pkg in ("pytorch-optimizer", "schedulefree",
                                                                             "prodigyopt"))
    print(f"| rule (references: {versions}; shampoo, muon_moonlight: transcriptions) | reference foreach=False ms "
          "| reference default ms | ProgramOptimizer ms | exported ms "
          "| ProgramOptimizer / ref foreach=False | exported / ref foreach=False "
          "| ProgramOptimizer / ref default | exported / ref default |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rule, r in results.items():
        med = r["median_seconds"]
        loop, default = med["reference foreach=False"], med["reference default"]
        ours, exp = med["ProgramOptimizer"], med["exported (eager)"]
        r["ratios"] = {"ProgramOptimizer / ref foreach=False": ours / loop, "exported / ref foreach=False": exp / loop,
                       "ProgramOptimizer / ref default": ours / default, "exported / ref default": exp / default}
        print(f"| {rule} | {1e3 * loop:.3f} | {1e3 * default:.3f} | {1e3 * ours:.3f} | {1e3 * exp:.3f} | "
              + " | ".join(f"{x:.2f}" for x in r["ratios"].values()) + " |")
    return results


if __name__ == "__main__":
    sys.exit(main())

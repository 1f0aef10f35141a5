"""A small search run folder for the report tests, written the way a search writes one.

The journal has every kind of event with the funnel's fields (two stages, a remeasured incumbent,
a duplicate, an invalid and a failed rule, a validated winner); ``validation/ID/results.json`` is
a real evaluation (signum-like rule vs AdamW and SGD on the tiny quadratic, 3 seeds, so its runs
carry loss curves and diagnostics) and ``simplified/ID.json`` a real simplification. Building it
trains 15 tiny runs (a few seconds). `old_journal` writes a journal from before the funnel.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from fake_scorers import function_scorer

from dsl.loader import load_rule
from dsl.parser import parse
from dsl.printer import to_text
from evaluators.evaluate import Settings, TaskPlan, evaluate
from evaluators.results import write_results
from populations.candidate import Candidate, Outcome
from populations.journal import Journal
from search.report import write_simplified
from search.simplify import simplify
from search.validation import summarize

SEED_TEXT = {"adamw": load_rule("builtin:adamw"), "signum": load_rule("builtin:signum")}
FOUND = "hparams beta=0.9\nm = lerp(m, g, 1 - beta)\nupdate = sign(m) * 1\n"
CHILD = "hparams beta=0.9\nm = lerp(m, g, 1 - beta)\nupdate = sign(m) * g * 100\n"
INVALID = "hparams beta=0.9\nupdate = beta * w\n"
CONFIG = {"name": "fixture", "strategy": "evolution", "evaluations": 4, "seed": 1,
          "seeds": ["adamw", "signum"], "device": "cpu",
          "proxy": {"suite": "proxy", "tasks": ["quadratic", "digits_logreg"], "preset": "tiny",
                    "budget": 3, "hurdle": 1.5},
          "executor": {"kind": "serial"},
          "validation": {"top_k": 1, "suite": "proxy", "tasks": ["quadratic"], "preset": "tiny",
                         "seeds": 3, "budget": 2, "baselines": ["adamw", "sgd"]}}


def _stage(fitness: float, status: str = "ok", promoted: bool = True) -> dict:
    return {"fitness": fitness, "se": 0.05, "seeds": 1, "tasks": {"quadratic": fitness},
            "promoted": promoted, "wall_time_s": 0.5, "status": status}


def _outcome(fitness: float, status: str, stages: dict, **kw) -> Outcome:
    depth = len(stages) - 1
    return Outcome(fitness, status, {"quadratic": fitness}, 4.0, 1.0, stage=list(stages)[-1],
                   depth=depth, se=0.05, seeds=1, stages=stages, **kw)


def _propose(journal: Journal, cid: str, text: str, origin: str, parents=(), change=""):
    cand = Candidate(text, origin, tuple(parents), change).with_id(cid)
    journal.append("proposed", candidate=cand.to_dict(), hash=parse(text).structural_hash,
                   fingerprint=f"fp-{cid}")
    return cand


def _staged(journal: Journal, cid: str, stage: str, depth: int, fitness: float, status="ok",
            promoted=True):
    journal.append("staged", id=cid, stage=stage, depth=depth,
                   tasks={"quadratic": {"losses": {"0": fitness * 1e-3}}},
                   score={"fitness": fitness, "se": 0.05, "seeds": 1,
                          "ratios": {"quadratic": fitness}, "status": status, "error": ""},
                   promoted=promoted, remeasure=False, wall_time_s=0.5, state_bytes=4.0)


def validation_report():
    """A real held-out evaluation of FOUND (named like a search candidate) vs AdamW and SGD."""
    settings = Settings(suite="proxy", tasks=(TaskPlan("quadratic"),), seeds=3, budget=2,
                        preset="tiny")
    baselines = {"adamw": load_rule("builtin:adamw"), "sgd": load_rule("builtin:sgd")}
    return evaluate(parse(FOUND, name="c000003"), baselines, settings,
                    candidate_source="search candidate c000003")


def build_run(run: Path, validated: bool = True, winner: bool = True) -> Path:
    """Write the fixture run into ``run`` (a new folder); returns it."""
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    with Journal(run / "journal.jsonl") as j:
        j.append("start", code_version="test", session=0, evaluations=4, executor="serial")
        ref = {"quadratic": {"losses": {"0": 1e-3}, "cv": 0.1, "n": 5, "wall_time_s": 1.0}}
        j.append("reference", stages={"first": ref, "proxy": ref}, wall_time_s=2.0, seeds=5)
        two = {"first": _stage(1.0), "proxy": _stage(1.0, promoted=False)}
        for cid, name in (("c000001", "adamw"), ("c000002", "signum")):
            _propose(j, cid, to_text(SEED_TEXT[name], doc=False), "seed", change=name)
            _staged(j, cid, "first", 0, 1.0 if name == "adamw" else 0.95)
            _staged(j, cid, "proxy", 1, 1.0 if name == "adamw" else 0.97, promoted=False)
            j.append("finished", id=cid, outcome=_outcome(1.0 if name == "adamw" else 0.97, "ok",
                                                          two).to_dict())
        _propose(j, "c000003", FOUND, "mutation", ["c000002"], "replace: momentum -> lerp")
        _staged(j, "c000003", "first", 0, 0.9)
        _staged(j, "c000003", "proxy", 1, 0.92, promoted=False)
        found = _outcome(0.93, "ok", {"first": _stage(0.9), "proxy": _stage(0.93, promoted=False)})
        j.append("remeasured", id="c000003", stage="proxy", tasks={}, wall_time_s=0.4,
                 score={"fitness": 0.93, "se": 0.03, "seeds": 3, "ratios": {"quadratic": 0.93},
                        "status": "ok", "error": ""})
        j.append("finished", id="c000003", outcome=found.to_dict())
        _propose(j, "c000004", CHILD, "mutation", ["c000003"], "argument: 1 -> g * 100 in update")
        _staged(j, "c000004", "first", 0, 1e6, status="failed", promoted=False)
        j.append("finished", id="c000004", outcome=_outcome(
            1e6, "failed", {"first": _stage(1e6, "failed", False)},
            error="diverged or non-finite on quadratic").to_dict())
        _propose(j, "c000005", FOUND + "\n", "mutation", ["c000001"], "insert: x = g")
        j.append("finished", id="c000005", outcome=found.reused_by("c000003").to_dict())
        _propose(j, "c000006", INVALID, "mutation", ["c000001"], "delete: m = ...")
        j.append("finished", id="c000006", outcome=Outcome(
            1e6, "invalid", error="'update' does not depend on the gradient g").to_dict())
        if validated:
            report = validation_report()
            write_results(report, run / "validation" / "c000003" / "results.json")
            result = summarize(report)
            result["winner"] = winner  # the tiny fixture decides nothing; the report must show it
            j.append("validated", id="c000003", result=result)
            simple = simplify(parse(FOUND), function_scorer(FOUND))
            write_simplified(run, "c000003", simple)
        j.append("end", trained=4)
    return run


def old_journal(run: Path) -> Path:
    """A run folder from before the funnel: one stage, the reference as losses per task, no
    stage records, outcomes without stage, depth, se, seeds and stages."""
    run.mkdir(parents=True)
    with Journal(run / "journal.jsonl") as j:
        j.append("start")
        j.append("reference", tasks={"quadratic": 1e-3})
        for k, (name, fit) in enumerate((("adamw", 1.0), ("signum", 1.2)), start=1):
            cand = Candidate(to_text(SEED_TEXT[name], doc=False), "seed", (), name).with_id(f"c{k:06d}")
            j.append("proposed", candidate=cand.to_dict(), hash=f"h{k}")
            j.append("finished", id=cand.id, outcome={"fitness": fit, "status": "ok",
                                                      "tasks": {"quadratic": fit},
                                                      "state_bytes": 4.0 * k, "wall_time_s": 1.0,
                                                      "error": "", "same_as": ""})
        j.append("end")
    return run

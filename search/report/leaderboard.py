"""What a search's population says, as data: counts, the leaderboard, winners and their exports.

Everything here is rebuilt from the population (and so from the journal), so ``optforge report``
or ``optforge search --resume`` on a finished search rewrite the same files:

- `counts`: proposed, trained, complete, hurdle, failed, duplicates (cache hits: same structure
  or same function as an evaluated rule), invalid; `failure_kinds` and `cache_hits` break them
  down;
- `leaderboard_md`: the best rules ranked by funnel depth then fitness, with noise, seeds and the
  held-out verdicts, and the canonical text of the first five;
- `export_winners`: ``winners/ID.opt`` and ``winners/ID.py`` for every validated winner, in its
  simplified form when ``simplified/ID.json`` exists (``search.simplify``), else as found.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

from dsl.analysis import eliminate_dead_code
from dsl.printer import to_text
from evaluators.fitness import WORST_FITNESS
from evaluators.results import write_text_atomic
from populations.population import Entry, Population


def canonical_text(entry: Entry) -> str:
    return to_text(eliminate_dead_code(entry.candidate.program), doc=False).strip()


def row(entry: Entry) -> dict:
    """One leaderboard row of results.json."""
    out, val = entry.outcome, entry.validation
    return {"id": entry.id, "origin": entry.candidate.origin, "parents": list(entry.candidate.parents),
            "change": entry.candidate.change, "fitness": out.fitness, "status": out.status,
            "tasks": out.tasks, "state_bytes": out.state_bytes, "wall_time_s": out.wall_time_s,
            "stage": out.stage, "depth": out.depth, "se": out.se, "seeds": out.seeds,
            "stages": out.stages, "remeasured": entry.remeasured is not None,
            "hash": entry.hash, "text": canonical_text(entry), "heldout": val}


def counts(pop: Population) -> dict:
    done = [e.outcome for e in pop.entries.values() if e.outcome is not None]
    return {"proposed": len(pop.entries), "trained": pop.trained_count,
            "duplicates": sum(1 for o in done if o.same_as),
            "invalid": sum(1 for o in done if o.status == "invalid"),
            "hurdle": sum(1 for o in done if o.status == "hurdle" and not o.same_as),
            "failed": sum(1 for o in done if o.status == "failed" and not o.same_as),
            "complete": sum(1 for o in done if o.status == "ok" and not o.same_as)}


def cache_hits(pop: Population) -> dict[str, int]:
    """Duplicates by how they were found: the same structural hash, or the same function."""
    hits: Counter = Counter()
    for e in pop.entries.values():
        if e.outcome is None or not e.outcome.same_as:
            continue
        twin = pop.entries.get(e.outcome.same_as)
        hits["same structure" if twin is not None and twin.hash == e.hash else "same function"] += 1
    return dict(hits)


def _kind(error: str) -> str:
    """A failure's kind: one of the known ones, or the message without its rule location
    ("LINE:COL: ") and its parenthesised detail."""
    text = re.sub(r"^\d+:\d+:\s*", "", (error or "").lower())
    for words, kind in ((("non-finite parameters",), "non-finite on the gate's fixed problem"),
                        (("diverged", "non-finite", "nan"), "diverged or non-finite"),
                        (("timeout", "timed out"), "timeout"), (("worker", "died"), "lost worker"),
                        (("depend",), "update does not depend on g"), (("shape",), "shapes")):
        if any(w in text for w in words):
            return kind
    return text.split(" (")[0][:60].strip() or "unknown"


def failure_kinds(pop: Population) -> dict[str, dict[str, int]]:
    """{"failed": {kind: n}, "invalid": {kind: n}} over rules that were not duplicates."""
    out: dict[str, Counter] = {"failed": Counter(), "invalid": Counter()}
    for e in pop.entries.values():
        o = e.outcome
        if o is not None and not o.same_as and o.status in out:
            out[o.status][_kind(o.error)] += 1
    return {k: dict(v) for k, v in out.items()}


def winners(pop: Population) -> list[Entry]:
    return [e for e in pop.leaderboard() if e.validation and e.validation.get("winner")]


def write_simplified(run_dir: Path, cid: str, simplification) -> Path:
    """Record a winner's simplification (``search.simplify.simplify``'s result) where the report
    and `export_winners` find it: ``RUN/simplified/ID.json``."""
    from evaluators.results import write_json

    return write_json(simplification.to_dict(), Path(run_dir) / "simplified" / f"{cid}.json")


def simplified(run_dir: Path, cid: str) -> dict | None:
    """``simplified/ID.json`` (`write_simplified`), if it was written."""
    path = Path(run_dir) / "simplified" / f"{cid}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def export_winners(pop: Population, run_dir: Path, config_name: str) -> list[str]:
    """Write winners/ID.opt and winners/ID.py; returns the file names written."""
    from dsl.export import export_source
    from dsl.parser import parse

    written = []
    for e in winners(pop):
        simple = simplified(run_dir, e.id)
        text = simple["simplified"].strip() if simple else canonical_text(e)
        form = "simplified (search.simplify)" if simple and simple.get("changed") else "as found"
        header = (f"# {e.id}: found by optforge search {config_name!r}, {form}\n"
                  f"# proxy fitness {e.outcome.fitness:.4f}; held-out fitness "
                  f"{e.validation['fitness']:.4f} ({e.validation['verdict']})\n")
        write_text_atomic(run_dir / "winners" / f"{e.id}.opt", header + text + "\n")
        source = export_source(parse(text, name=e.id),
                               class_name=f"Found{e.id[1:].lstrip('0') or '0'}",
                               provenance={"search": config_name, "candidate": e.id,
                                           "proxy_fitness": e.outcome.fitness,
                                           "heldout_fitness": e.validation["fitness"],
                                           "form": form})
        write_text_atomic(run_dir / "winners" / f"{e.id}.py", source)
        written += [f"winners/{e.id}.opt", f"winners/{e.id}.py"]
    return written


def fmt(x) -> str:
    return "-" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


def fitness_text(entry: Entry) -> str:
    """``0.9623 ± 0.021`` (the standard error of ln fitness as a relative error) or the value."""
    o = entry.outcome
    if o.fitness >= WORST_FITNESS:
        return "failed"
    se = o.se if isinstance(o.se, float) and math.isfinite(o.se) else None
    return fmt(o.fitness) + (f" ± {o.fitness * se:.3f}" if se is not None else "")


def heldout_text(validation: dict | None) -> str:
    """A validated rule's held-out fitness, ``failed`` where a run diverged (WORST_FITNESS), ``-``
    for a rule not validated."""
    if not validation:
        return "-"
    return "failed" if validation["fitness"] >= WORST_FITNESS else fmt(validation["fitness"])


def leaderboard_md(pop: Population, config_name: str, top: int = 20) -> str:
    seeds = [e for e in pop.leaderboard() if e.candidate.origin == "seed"]
    rows = pop.leaderboard(top)
    c = counts(pop)
    lines = [f"# Leaderboard: {config_name}", "",
             f"{c['trained']} rules trained ({c['complete']} complete, {c['hurdle']} stopped at "
             f"the hurdle, {c['failed']} failed); {c['duplicates']} duplicates and {c['invalid']} "
             "invalid rules were not trained. Fitness: tuned validation loss / tuned AdamW's, "
             "geometric mean over the tasks of the deepest funnel stage a rule reached (lower is "
             "better; AdamW = 1), ± one standard error from seed noise; rules that went deeper "
             "rank first.", "",
             "| rank | id | origin | stage | fitness | seeds | status | state B/param | "
             "held-out fitness | winner |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, e in enumerate(rows, 1):
        v = e.validation or {}
        lines.append(f"| {i} | {e.id} | {e.candidate.origin} | {e.outcome.stage or '-'} | "
                     f"{fitness_text(e)} | {e.outcome.seeds} | {e.outcome.status} | "
                     f"{fmt(e.outcome.state_bytes)} | {heldout_text(v)} | "
                     f"{'yes' if v.get('winner') else ('no' if v else '-')} |")
    if seeds:
        lines += ["", "Seed rules: " + ", ".join(f"{e.candidate.change} {fmt(e.outcome.fitness)}"
                                                 for e in seeds)]
    for e in rows[:5]:
        lines += ["", f"## {e.id} ({e.candidate.origin}: {e.candidate.change or '-'})", "",
                  "```", canonical_text(e), "```"]
        if e.validation:
            lines += ["", e.validation["verdict"]]
    return "\n".join(lines) + "\n"

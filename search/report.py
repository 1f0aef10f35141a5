"""What a search leaves behind in its run folder (DESIGN.md §7).

- ``leaderboard.md``: the best rules by proxy fitness with their canonical (dead-code-free) text,
  the seed rules' own fitness for scale, and the held-out verdicts;
- ``results.json``: counts, the reference, the leaderboard, the Pareto front, the validations,
  the winners and the run's provenance;
- ``progress.png``, ``pareto.png`` and ``proxy_vs_heldout.png`` (when validated);
- ``winners/NAME.opt`` and ``winners/NAME.py`` (a standalone torch.optim class) for every winner;
- ``report.html`` that shows all of the above on one page.

Everything is rebuilt from the population (and so from the journal): ``optforge search --resume``
on a finished search only rewrites the report.
"""

from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path

from dsl.analysis import eliminate_dead_code
from dsl.printer import to_text
from evaluators.results import provenance, write_json, write_text_atomic
from populations.population import Entry, Population

from .report_plots import plot_pareto, plot_progress, plot_proxy_vs_heldout

SCHEMA = "optforge.search/1"


def canonical_text(entry: Entry) -> str:
    return to_text(eliminate_dead_code(entry.candidate.program), doc=False).strip()


def _row(entry: Entry) -> dict:
    out, val = entry.outcome, entry.validation
    return {"id": entry.id, "origin": entry.candidate.origin, "parents": list(entry.candidate.parents),
            "change": entry.candidate.change, "fitness": out.fitness, "status": out.status,
            "tasks": out.tasks, "state_bytes": out.state_bytes, "wall_time_s": out.wall_time_s,
            "stage": out.stage, "depth": out.depth, "se": out.se, "seeds": out.seeds,
            "stages": out.stages, "hash": entry.hash, "text": canonical_text(entry),
            "heldout": val}


def counts(pop: Population) -> dict:
    done = [e.outcome for e in pop.entries.values() if e.outcome is not None]
    return {"proposed": len(pop.entries), "trained": pop.trained_count,
            "duplicates": sum(1 for o in done if o.same_as),
            "invalid": sum(1 for o in done if o.status == "invalid"),
            "hurdle": sum(1 for o in done if o.status == "hurdle" and not o.same_as),
            "failed": sum(1 for o in done if o.status == "failed" and not o.same_as),
            "complete": sum(1 for o in done if o.status == "ok" and not o.same_as)}


def winners(pop: Population) -> list[Entry]:
    return [e for e in pop.leaderboard() if e.validation and e.validation.get("winner")]


def export_winners(pop: Population, run_dir: Path, config_name: str) -> list[str]:
    """Write winners/ID.opt and winners/ID.py; returns the file names written."""
    from dsl.export import export_source

    written = []
    for e in winners(pop):
        text = f"# {e.id}: found by optforge search {config_name!r}\n" \
               f"# proxy fitness {e.outcome.fitness:.4f}; held-out fitness " \
               f"{e.validation['fitness']:.4f} ({e.validation['verdict']})\n" + canonical_text(e) + "\n"
        write_text_atomic(run_dir / "winners" / f"{e.id}.opt", text)
        source = export_source(eliminate_dead_code(e.candidate.program),
                               class_name=f"Found{e.id[1:].lstrip('0') or '0'}",
                               provenance={"search": config_name, "candidate": e.id,
                                           "proxy_fitness": e.outcome.fitness,
                                           "heldout_fitness": e.validation["fitness"]})
        write_text_atomic(run_dir / "winners" / f"{e.id}.py", source)
        written += [f"winners/{e.id}.opt", f"winners/{e.id}.py"]
    return written


def _fmt(x) -> str:
    return "-" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


def leaderboard_md(pop: Population, config_name: str, top: int = 20) -> str:
    seeds = [e for e in pop.leaderboard() if e.candidate.origin == "seed"]
    rows = pop.leaderboard(top)
    c = counts(pop)
    lines = [f"# Leaderboard: {config_name}", "",
             f"{c['trained']} rules trained ({c['complete']} complete, {c['hurdle']} stopped at "
             f"the hurdle, {c['failed']} failed); {c['duplicates']} duplicates and {c['invalid']} "
             f"invalid rules were not trained. Fitness: tuned proxy validation loss / tuned AdamW's, "
             "geometric mean over tasks, one seed (lower is better; AdamW = 1).", "",
             "| rank | id | origin | fitness | status | state B/param | held-out fitness | winner |",
             "|---|---|---|---|---|---|---|---|"]
    for i, e in enumerate(rows, 1):
        v = e.validation or {}
        lines.append(f"| {i} | {e.id} | {e.candidate.origin} | {_fmt(e.outcome.fitness)} | "
                     f"{e.outcome.status} | {_fmt(e.outcome.state_bytes)} | {_fmt(v.get('fitness'))} | "
                     f"{'yes' if v.get('winner') else ('no' if v else '-')} |")
    if seeds:
        lines += ["", "Seed rules: " + ", ".join(f"{e.candidate.change} {_fmt(e.outcome.fitness)}"
                                                 for e in seeds)]
    for e in rows[:5]:
        lines += ["", f"## {e.id} ({e.candidate.origin}: {e.candidate.change or '-'})", "",
                  "```", canonical_text(e), "```"]
        if e.validation:
            lines += ["", e.validation["verdict"]]
    return "\n".join(lines) + "\n"


def report_html(pop: Population, config_name: str, plots: list[str], md: str) -> str:
    imgs = "\n".join(f'<p><img src="{html.escape(p)}" style="max-width:100%"></p>' for p in plots)
    return (f"<!doctype html><meta charset='utf-8'><title>optforge search {html.escape(config_name)}"
            f"</title><body style='font-family:sans-serif;max-width:60em;margin:auto'>"
            f"<h1>optforge search: {html.escape(config_name)}</h1>{imgs}"
            f"<pre>{html.escape(md)}</pre></body>")


def write_report(pop: Population, run_dir: Path, config, started: _dt.datetime,
                 wall_time_s: float) -> dict:
    """Write every artefact; returns results.json's content."""
    run_dir = Path(run_dir)
    plots = [p for p in (plot_progress(pop, run_dir / "progress.png"),
                         plot_pareto(pop, run_dir / "pareto.png"),
                         plot_proxy_vs_heldout(pop, run_dir / "proxy_vs_heldout.png")) if p]
    exported = export_winners(pop, run_dir, config.name)
    md = leaderboard_md(pop, config.name)
    write_text_atomic(run_dir / "leaderboard.md", md)
    write_text_atomic(run_dir / "report.html", report_html(pop, config.name, plots, md))
    data = {"schema": SCHEMA, "name": config.name, "config": config.resolved(),
            "counts": counts(pop), "reference": pop.reference,
            "leaderboard": [_row(e) for e in pop.leaderboard()],
            "pareto_front": [e.id for e in pop.pareto_front()],
            "winners": [e.id for e in winners(pop)], "exported": exported, "plots": plots,
            "wall_time_s": wall_time_s, "provenance": provenance(started)}
    write_json(data, run_dir / "results.json")
    return data

"""What a search leaves behind in its run folder, and its HTML page.

`write_report(population, run_dir, config, started, wall_time_s)` writes

- ``leaderboard.md`` and ``results.json`` (counts, the reference, the leaderboard, the Pareto
  front, the validations, the winners, the run's provenance);
- ``progress.png``, ``proxy_vs_heldout.png``, ``pareto.png``, ``lineage.png`` and
  ``heldout_curves.png`` (those there is something to draw for);
- ``winners/ID.opt`` and ``winners/ID.py`` for every winner;
- ``report.html``: one self-contained page (``search.report.html``) with the sections ``run``
  (config, machine, time, evaluations, cache hits and failures by kind), ``progress``,
  ``meta-overfitting``, ``curves`` (validated rules vs baselines on each held-out task, read from
  ``validation/ID/results.json``), ``pareto``, ``lineage`` and ``validated`` (every validated
  rule's canonical text, hash, statistics, diagnostics, simplified form and exported file).

Everything is rebuilt from the population (and so from the journal) and the files beside it.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import yaml

from evaluators.fitness import WORST_FITNESS
from evaluators.results import provenance, write_json, write_text_atomic
from populations.population import Entry, Population

from . import evaluation_data as ed
from . import html as h
from .leaderboard import (
    cache_hits,
    canonical_text,
    counts,
    export_winners,
    failure_kinds,
    fitness_text,
    heldout_text,
    leaderboard_md,
    row,
    simplified,
    winners,
)
from .lineage import plot_lineage
from .search_plots import plot_heldout_curves, plot_meta_overfitting, plot_pareto, plot_progress

SCHEMA = "optforge.search/1"
SECTIONS = (("run", "The run"), ("progress", "Search progress"),
            ("meta-overfitting", "Proxy vs held-out"), ("curves", "Held-out loss curves"),
            ("pareto", "Pareto front"), ("lineage", "Lineage"), ("validated", "Validated rules"))


def validations(pop: Population, run_dir: Path) -> dict[str, dict]:
    """id -> the validation's full results.json, for every validated rule that has one."""
    out = {}
    for e in pop.entries.values():
        if e.validation:
            data = ed.load(run_dir / "validation" / e.id / "results.json")
            if data:
                out[e.id] = data
    return out


def heldout_curves(found: dict[str, dict]) -> tuple[dict, list[str]]:
    """task -> label -> runs for the validated rules (each from its own file) and the baselines
    (from the first file: every validation trains them on the same seeds, cached)."""
    curves: dict[str, dict] = {}
    labels = []
    for k, data in enumerate(found.values()):
        label = data["rule"]["label"]
        labels.append(label)
        for task, by_label in ed.eval_runs(data).items():
            for lb, runs in by_label.items():
                if lb == label or k == 0:
                    curves.setdefault(task, {})[lb] = runs
    return curves, labels


def write_report(pop: Population, run_dir: Path, config, started: _dt.datetime,
                 wall_time_s: float) -> dict:
    """Write every artefact; returns results.json's content."""
    run_dir = Path(run_dir)
    found = validations(pop, run_dir)
    curves, labels = heldout_curves(found)
    plots = {"progress": plot_progress(pop, run_dir / "progress.png"),
             "meta-overfitting": plot_meta_overfitting(pop, run_dir / "proxy_vs_heldout.png"),
             "curves": plot_heldout_curves(curves, labels, run_dir / "heldout_curves.png"),
             "pareto": plot_pareto(pop, run_dir / "pareto.png"),
             "lineage": plot_lineage(pop, run_dir / "lineage.png")}
    exported = export_winners(pop, run_dir, config.name)
    md = leaderboard_md(pop, config.name)
    write_text_atomic(run_dir / "leaderboard.md", md)
    data = {"schema": SCHEMA, "name": config.name, "config": config.resolved(),
            "counts": counts(pop), "cache_hits": cache_hits(pop),
            "failures": failure_kinds(pop), "reference": pop.reference,
            "leaderboard": [row(e) for e in pop.leaderboard()],
            "pareto_front": [e.id for e in pop.pareto_front()],
            "winners": [e.id for e in winners(pop)], "exported": exported,
            "simplified": {e.id: s for e in pop.entries.values()
                           if e.validation and (s := simplified(run_dir, e.id))},
            "plots": [p for p in plots.values() if p], "wall_time_s": wall_time_s,
            "provenance": provenance(started)}
    write_json(data, run_dir / "results.json")
    write_text_atomic(run_dir / "report.html", report_html(pop, run_dir, data, plots, found))
    return data


def _img(run_dir: Path, name: str | None, alt: str, empty: str) -> str:
    return h.image(run_dir / name, alt) if name else h.para(empty, "note")


def _config_items(pop: Population, cfg: dict) -> list[tuple[str, object]]:
    """The config summary; a folder without config.yaml says so."""
    measured = pop.reference or {}  # the stages the search ran, with their tasks
    stages = " -> ".join(f"{name} ({', '.join(tasks)})" for name, tasks in measured.items()) or "-"
    if not cfg:
        return [("funnel stages", stages), ("config", "no config.yaml in this folder")]
    proxy, val = cfg.get("proxy") or {}, cfg.get("validation") or {}
    settings = "; ".join(f"{f.get('name')}: {f.get('preset')} preset, {f.get('seeds')} seed(s), "
                         f"budget {f.get('budget')}" for f in cfg.get("funnel") or []) or \
        f"proxy shorthand: {proxy.get('preset')} preset, budget {proxy.get('budget')}, hurdle " \
        f"{proxy.get('hurdle')}"
    return [("strategy", cfg.get("strategy")), ("rules to train", cfg.get("evaluations")),
            ("seed rules", ", ".join(cfg.get("seeds") or [])), ("funnel stages", stages),
            ("stage settings", settings),
            ("validation", f"top {val.get('top_k')} on {val.get('suite')} "
                           f"({', '.join(val.get('tasks') or ['all tasks'])}), {val.get('seeds')} "
                           f"seeds, baselines {', '.join(val.get('baselines') or [])}"),
            ("executor", (cfg.get("executor") or {}).get("kind")), ("device", cfg.get("device"))]


def _run_section(pop: Population, data: dict) -> str:
    cfg, c, prov = data["config"], data["counts"], data["provenance"]
    items = [("search", data["name"]), *_config_items(pop, cfg),
             ("machine", f"{prov.get('platform')}, {os.cpu_count()} CPU cores, Python "
                         f"{prov.get('python')}, torch {prov.get('torch')}"),
             ("code version", prov.get("code_version")), ("started", prov.get("created")),
             ("wall time", f"{data['wall_time_s']:.1f} s"), ("driver sessions", pop.starts)]
    counts_rows = [("proposed", c["proposed"]), ("trained", c["trained"]),
                   ("complete", c["complete"]), ("stopped by a promotion rule", c["hurdle"]),
                   ("failed", c["failed"]), ("cache hits (not trained)", c["duplicates"]),
                   *((f"  cache hit: {k}", v) for k, v in sorted(data["cache_hits"].items())),
                   ("invalid (not trained)", c["invalid"]),
                   *((f"  failed: {k}", v) for k, v in sorted(data["failures"]["failed"].items())),
                   *((f"  invalid: {k}", v) for k, v in sorted(data["failures"]["invalid"].items()))]
    return h.section("run", "The run", h.definitions(items),
                     h.table(["evaluations", "count"], counts_rows),
                     h.details("resolved config (config.yaml)",
                               h.code(yaml.safe_dump(cfg, sort_keys=False))) if cfg else "")


def _leaderboard_table(pop: Population, top: int = 20) -> str:
    rows, classes = [], []
    for i, e in enumerate(pop.leaderboard(top), 1):
        v = e.validation or {}
        rows.append((i, e.id, e.candidate.origin, e.outcome.stage or "-", fitness_text(e),
                     e.outcome.seeds, e.outcome.status, e.outcome.state_bytes,
                     "yes" if e.remeasured else "", heldout_text(v),
                     "yes" if v.get("winner") else ("no" if v else "-"),
                     e.candidate.change or "-"))
        classes.append("good" if v.get("winner") else ("bad" if e.outcome.status == "failed" else ""))
    return h.table(["rank", "id", "origin", "stage", "fitness ± se", "seeds", "status",
                    "state B/param", "remeasured", "held-out", "winner", "change"], rows, classes,
                   numeric=[True, False, False, False, True, True, False, True, False, True,
                            False, False])


def _validated_section(pop: Population, run_dir: Path, found: dict[str, dict]) -> str:
    validated = [e for e in pop.leaderboard() if e.validation]
    if not validated:
        return h.section("validated", "Validated rules", h.para(
            "No rule was validated in this run: meta-validation was off (validation.top_k = 0), "
            "the search stopped before it, or no candidate completed the funnel.", "note"))
    parts = [h.para(f"{len(winners(pop))} winner(s) among {len(validated)} validated rule(s). "
                    "A winner beats every baseline's held-out fitness and is significantly better "
                    "(Welch p < 0.05, >= 3 seeds) than the best baseline on at least one task and "
                    "significantly worse on none.")]
    for e in validated:
        parts.append(_one_validated(e, run_dir, found.get(e.id)))
    return h.section("validated", "Validated rules", *parts)


def _one_validated(e: Entry, run_dir: Path, results: dict | None) -> str:
    v = e.validation
    held = "failed (diverged)" if v["fitness"] >= WORST_FITNESS else f"{v['fitness']:.4f}"
    out = [f"<h3 id='rule-{h.esc(e.id)}'>{h.esc(e.id)} ({h.esc(e.candidate.origin)}"
           f"{': ' + h.esc(e.candidate.change) if e.candidate.change else ''})</h3>",
           h.definitions([("structural hash", e.hash), ("proxy fitness", fitness_text(e)),
                          ("held-out fitness", held), ("seeds", v.get("seeds")),
                          ("winner", bool(v.get("winner")))]),
           f"<p class='verdict'>{h.esc(v['verdict'])}</p>", h.code(canonical_text(e))]
    rows = [(t, x["mean"], x["std"], x["best_baseline"], x["baseline_mean"], x["welch_p"],
             x["ratio_to_adamw"]) for t, x in v.get("tasks", {}).items()]
    out.append(h.table(["task", "val loss mean", "std", "best baseline", "its mean",
                        "Welch p", "ratio to AdamW"], rows))
    simple = simplified(run_dir, e.id)
    if simple:
        note = (f"simplified in {simple['calls']} scorer calls, keeping "
                f"{len(simple['kept'])} edit(s): {'; '.join(simple['kept']) or 'none'}")
        out += [h.para("Simplified form (search.simplify): " + note), h.code(simple["simplified"])]
    else:
        out.append(h.para("No simplified form was recorded for this rule.", "note"))
    export = run_dir / "winners" / f"{e.id}.py"
    if export.is_file():
        out.append(h.details(f"exported optimizer winners/{e.id}.py (winners only)",
                             f"<p>{h.link(f'winners/{e.id}.py', f'winners/{e.id}.py')} (beside "
                             f"this report)</p>" + h.code(export.read_text())))
    if results:
        out += [h.para("Diagnostics on the held-out tasks (medians over seeds):", "note"),
                h.table(ed.DIAGNOSTIC_HEADERS, ed.diagnostics_rows(results))]
    return "".join(out)


def report_html(pop: Population, run_dir: Path, data: dict, plots: dict, found: dict) -> str:
    validated = [e for e in pop.leaderboard() if e.validation]
    order = {e.id: i for i, e in enumerate((e for e in pop.finished() if e.outcome.trained), 1)}
    body = [h.nav(SECTIONS), _run_section(pop, data),
            h.section("progress", "Search progress",
                      _img(run_dir, plots["progress"], "search progress", "Nothing trained yet."),
                      _leaderboard_table(pop)),
            h.section("meta-overfitting", "Proxy vs held-out fitness",
                      _img(run_dir, plots["meta-overfitting"], "proxy vs held-out",
                           "No rule was validated, so there is no held-out fitness to compare."),
                      h.table(["id", "found as trained rule no.", "proxy fitness",
                               "held-out fitness", "winner"],
                              [(e.id, order.get(e.id), e.outcome.fitness, heldout_text(e.validation),
                                bool(e.validation.get("winner"))) for e in validated])
                      if validated else ""),
            h.section("curves", "Held-out loss curves",
                      _img(run_dir, plots["curves"], "held-out loss curves",
                           "No validation results (validation/ID/results.json) in this folder.")),
            h.section("pareto", "Pareto front: fitness vs optimizer memory",
                      _img(run_dir, plots["pareto"], "Pareto front", "No complete rule yet."),
                      h.table(["id", "fitness", "state B/param", "stage"],
                              [(e.id, e.outcome.fitness, e.outcome.state_bytes, e.outcome.stage)
                               for e in pop.pareto_front()])),
            h.section("lineage", "Lineage of the best rules",
                      _img(run_dir, plots["lineage"], "lineage", "No candidates yet.")),
            _validated_section(pop, run_dir, found)]
    c = data["counts"]
    return h.page(f"optforge search: {data['name']}", body,
                  f"{c['trained']} rules trained, {len(validated)} validated, "
                  f"{len(data['winners'])} winner(s); {data['wall_time_s']:.0f} s")

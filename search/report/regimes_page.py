"""The heat map and the HTML page of ``optforge regimes`` (``evaluators.regimes``).

``regimes.png``: rules (rows) by regime (columns: each level of each axis), the colour the
rule's fitness against AdamW under that regime on a log scale centred at 1 (blue: better than
AdamW, red: worse; from x0.25 to x4 the full scale), the value written in the cell, failed cells
grey. The page (sections ``run``, ``map``, ``table``, ``cells``) adds the same numbers as a
table and every cell's per-task ratio, tuned lr and losses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from evaluators.fitness import WORST_FITNESS
from evaluators.results import write_text_atomic

from . import html as h
from .search_plots import save


def plot_regimes(results: dict, path: Path) -> str | None:
    table = results["table"]
    rules = [r for r in results["rules"] if r != "adamw"] or list(results["rules"])
    columns = list(next(iter(table.values())).keys()) if table else []
    if not columns or not rules:
        return None
    values = np.array([[table[r][c] if table[r][c] is not None else WORST_FITNESS
                        for c in columns] for r in rules], dtype=float)
    failed = values >= WORST_FITNESS
    logs = np.where(failed, 0.0, np.log2(np.clip(values, 1e-6, None)))
    fig = Figure(figsize=(max(6.5, 1.6 + 0.95 * len(columns)), 1.4 + 0.55 * len(rules)))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_where(failed, logs), cmap="RdBu_r", vmin=-2, vmax=2,
                      aspect="auto")
    ax.imshow(np.ma.masked_where(~failed, np.ones_like(logs)), cmap="Greys", vmin=0, vmax=3,
              aspect="auto")
    for i in range(len(rules)):
        for j in range(len(columns)):
            text = "fail" if failed[i, j] else f"{values[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if not failed[i, j] and abs(logs[i, j]) > 1.3 else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rules)), rules, fontsize=8)
    axis_of = [c.split(" ")[0] for c in columns]
    for j in range(1, len(columns)):
        if axis_of[j] != axis_of[j - 1]:
            ax.axvline(j - 0.5, color="black", lw=1.2)
    bar = fig.colorbar(image, ax=ax, ticks=[-2, -1, 0, 1, 2])
    bar.ax.set_yticklabels(["x0.25", "x0.5", "1 (AdamW)", "x2", "x4"], fontsize=7)
    ax.set_title("fitness vs AdamW per regime (geometric mean over the axis's tasks; "
                 "blue = better than AdamW)", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def regimes_html(results: dict, out: Path) -> str:
    s = results["settings"]
    axes = [(a["name"], ", ".join(f"{x:g}" for x in a["levels"]), ", ".join(a["tasks"]), a["help"])
            for a in results["axes"]]
    run = h.section("run", "Rules and protocol", h.definitions([
        ("rules", ", ".join(results["rules"])), ("preset", s["preset"]),
        ("seeds", f"{s['seeds']} evaluation seeds {s.get('eval_seeds')}"),
        ("tuning", f"{s['tuner']}, {s['budget']} trials per rule, task and regime (the lr axis "
                   "reuses the lr tuned at the task's own settings)"),
        ("code version", results["provenance"].get("code_version")),
        ("wall time", f"{results.get('wall_time_s', 0):.1f} s")]),
        h.table(["axis", "levels", "tasks", "what it changes"], axes))
    plot = results.get("plot")
    heat = h.section("map", "Where the rule works and where it fails",
                     h.image(out / plot, "regime map") if plot else h.para("Nothing measured.", "note"))
    columns = list(next(iter(results["table"].values())).keys()) if results["table"] else []
    table = h.section("table", "Fitness vs AdamW per regime", h.table(
        ["rule", *columns], [(r, *(results["table"][r][c] for c in columns))
                             for r in results["rules"]],
        numeric=[False, *[True] * len(columns)]))
    cells = h.section("cells", "Every cell", h.table(
        ["axis", "level", "task", "rule", "ratio to AdamW", "status", "val loss mean", "lr"],
        [(c["axis"], c["level"], c["task"], c["rule"], c["ratio"], c["status"], c["loss_mean"],
          c["lr"]) for c in results["cells"]], numeric=[False, True, False, False, True, False,
                                                         True, True]))
    body = [h.nav((("run", "Protocol"), ("map", "Map"), ("table", "Table"), ("cells", "Cells"))),
            run, heat, table, cells]
    return h.page(f"optforge regimes: {results['rules'][0]}", body,
                  f"{len(columns)} regimes x {len(results['rules'])} rules")


def write_regimes_report(out_dir: str | Path, results: dict) -> Path:
    out = Path(out_dir)
    return write_text_atomic(out / "report.html", regimes_html(results, out))

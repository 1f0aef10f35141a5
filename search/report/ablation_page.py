"""The PNG and the HTML page of ``optforge ablate`` (``search.ablation``), from its results.json.

``ablation.png``: one bar per part, the factor by which the rule's fitness changes without it
(exp of the mean change in per-seed log fitness; right of 1 = worse without it), with a 95%
interval (±1.96 standard errors), parts the rule cannot do without drawn to the edge. The page
(sections ``run``, ``effects``, ``parts``) shows the plot, the rule, and a table of every part
with its change, fitness, factor, p-value, verdict and the variant's per-task ratios to AdamW.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from evaluators.results import write_text_atomic

from . import html as h
from .search_plots import save

VERDICT_COLOURS = (("carries", "tab:red"), ("better", "tab:green"), ("dead", "lightgray"),
                   ("no effect", "lightgray"), ("no significant", "tab:gray"))


def _colour(verdict: str) -> str:
    return next((c for key, c in VERDICT_COLOURS if key in verdict), "tab:gray")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def plot_ablation(results: dict, path: Path) -> str | None:
    rows = results["rows"]
    if not rows:
        return None
    finite = [math.log(r["fitness_factor"]) for r in rows if _finite(r["fitness_factor"])]
    edge = max([abs(x) for x in finite] + [math.log(2.0)]) * 1.25
    fig = Figure(figsize=(8.5, 0.9 + 0.42 * len(rows)))
    ax = fig.add_subplot()
    for k, r in enumerate(reversed(rows)):
        factor, se = r["fitness_factor"], r.get("se")
        known = _finite(factor)
        value = math.log(factor) if known else edge
        err = 1.96 * se if known and _finite(se) and se > 0 else 0.0
        ax.barh(k, value, xerr=err or None, color=_colour(r["verdict"]), capsize=3,
                hatch=None if known else "//", edgecolor="black", linewidth=0.4)
        if not known:
            ax.text(edge, k, " cannot do without", va="center", fontsize=7)
    labels = [f"{r['part']['kind']}: {r['part']['text']}"[:60] for r in reversed(rows)]
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ticks = [2.0 ** k for k in range(-8, 9) if abs(k * math.log(2.0)) <= edge]
    if len(ticks) > 9:
        ticks = [t for t in ticks if round(math.log2(t)) % 2 == 0]
    ax.set_xticks([math.log(t) for t in ticks], [f"x{t:g}" for t in ticks])
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_xlim(-edge, edge * 1.35)
    ax.set_xlabel("fitness without the part / the rule's (right: worse without it; 95% interval)")
    ax.set_title(f"ablation over {len(results['base']['samples'])} seeds "
                 "(red: carries the rule, green: better without it)", fontsize=9)
    return save(fig, path)


def ablation_html(results: dict, out: Path) -> str:
    s = results["settings"]
    base = results["base"]
    run = h.section("run", "The rule and the protocol", h.code(results["rule"]), h.definitions([
        ("suite", f"{s['suite']} ({', '.join(t['name'] for t in s['tasks'])})"),
        ("preset", s["preset"]), ("seeds", f"{s['seeds']} evaluation seeds {s.get('eval_seeds')}"),
        ("tuning", f"{s['tuner']}, {s['budget']} trials per variant and task"),
        ("rule's fitness", results.get("fitness")),
        ("per-seed ln fitness", ", ".join(f"{x:.4f}" for x in base["samples"])),
        ("significance", f"two-sided Welch test, alpha = {results['alpha']}"),
        ("code version", results["provenance"].get("code_version")),
        ("wall time", f"{results.get('wall_time_s', 0):.1f} s")]))
    effects = h.section("effects", "What each part contributes",
                        h.image(out / results["plot"], "ablation") if results.get("plot") else "")
    tasks = [t["name"] for t in s["tasks"]]
    rows, classes = [], []
    for r in results["rows"]:
        ratios = r.get("tasks") or {}
        broken = r["measurement"]["status"] in ("invalid", "failed")  # strict JSON: inf is null
        rows.append((r["part"]["kind"], r["part"]["text"], r["part"]["change"],
                     r.get("fitness"), math.inf if broken else r["fitness_factor"],
                     math.inf if broken else r["effect"], r["p_value"],
                     r["verdict"], *(ratios.get(t) for t in tasks)))
        classes.append("bad" if "carries" in r["verdict"] else
                       ("good" if "better" in r["verdict"] else ""))
    parts = h.section("parts", "Every part", h.para(
        "factor = exp(mean change in per-seed ln fitness); effect = that change; a part whose "
        "variant cannot run or diverges has an infinite effect. Per-task columns: the variant's "
        "ratio to AdamW.", "note"),
        h.table(["kind", "part", "change", "fitness", "factor", "effect (ln)", "Welch p",
                 "verdict", *tasks], rows, classes,
                numeric=[False, False, False, True, True, True, True, False,
                         *[True] * len(tasks)]))
    return h.page("optforge ablate", [h.nav((("run", "Rule"), ("effects", "Effects"),
                                              ("parts", "Parts"))), run, effects, parts],
                  f"{len(results['rows'])} parts ablated")


def write_ablation_report(out_dir: str | Path, results: dict) -> Path:
    out = Path(out_dir)
    return write_text_atomic(out / "report.html", ablation_html(results, out))

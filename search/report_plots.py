"""PNG plots of a search: progress, the Pareto front, proxy vs held-out fitness.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display). Each function
returns the file name it wrote, or None when there is nothing to plot yet.

- :func:`plot_progress`: every trained candidate's proxy fitness in evaluation order (failed and
  hurdle-stopped ones marked apart), the best complete fitness so far, and AdamW = 1;
- :func:`plot_pareto`: fitness against optimizer state bytes per parameter, the non-dominated
  front joined (Deb et al. 2002);
- :func:`plot_proxy_vs_heldout`: for validated candidates, proxy fitness against held-out
  fitness, so meta-overfitting (good proxy, bad held-out: Chen et al. 2023) shows.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evaluators.fitness import WORST_FITNESS
from populations.population import Population


def _save(fig: Figure, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path.name


def plot_progress(pop: Population, path: Path) -> str | None:
    rows = pop.progress()
    if not rows:
        return None
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    entries = [e for e in pop.finished() if e.outcome.trained]
    ok = [(n, f) for (n, f, _), e in zip(rows, entries) if e.outcome.status == "ok"]
    hurdle = [(n, f) for (n, f, _), e in zip(rows, entries) if e.outcome.status == "hurdle"]
    failed = [n for (n, _, _), e in zip(rows, entries) if e.outcome.status == "failed"]
    if ok:
        ax.scatter(*zip(*ok), s=14, label="complete", color="tab:blue")
    if hurdle:
        ax.scatter(*zip(*hurdle), s=14, marker="x", label="stopped at hurdle", color="tab:orange")
    top = max([f for _, f in ok + hurdle if f < WORST_FITNESS] or [2.0])
    if failed:
        ax.scatter(failed, [top * 1.1] * len(failed), s=14, marker="v", color="tab:red",
                   label="failed (drawn at top)")
    best = [(n, b) for n, _, b in rows if math.isfinite(b)]
    if best:
        ax.step(*zip(*best), where="post", color="black", label="best so far")
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="AdamW")
    ax.set_yscale("log")
    ax.set_xlabel("trained candidate")
    ax.set_ylabel("proxy fitness (loss / AdamW's)")
    ax.set_title("search progress")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_pareto(pop: Population, path: Path) -> str | None:
    pts = [e for e in pop.leaderboard() if e.outcome.complete and e.outcome.state_bytes is not None]
    if not pts:
        return None
    front = pop.pareto_front()
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.scatter([e.outcome.state_bytes for e in pts], [e.outcome.fitness for e in pts], s=14,
               color="tab:gray", label="complete candidates")
    fb = sorted((e.outcome.state_bytes, e.outcome.fitness) for e in front)
    ax.plot(*zip(*fb), marker="o", color="tab:red", label="Pareto front")
    for e in front:
        ax.annotate(e.candidate.change if e.candidate.origin == "seed" else e.id,
                    (e.outcome.state_bytes, e.outcome.fitness), fontsize=7)
    ax.set_xlabel("optimizer state, bytes per parameter")
    ax.set_ylabel("proxy fitness")
    ax.set_title("fitness vs memory")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_proxy_vs_heldout(pop: Population, path: Path) -> str | None:
    pts = [e for e in pop.entries.values() if e.validation]
    if not pts:
        return None
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for e in pts:
        win = e.validation.get("winner")
        ax.scatter(e.outcome.fitness, e.validation["fitness"], s=30,
                   color="tab:green" if win else "tab:gray")
        ax.annotate(e.id, (e.outcome.fitness, e.validation["fitness"]), fontsize=7)
    lo = min(min(e.outcome.fitness, e.validation["fitness"]) for e in pts)
    hi = max(max(e.outcome.fitness, e.validation["fitness"]) for e in pts)
    ax.plot([lo, hi], [lo, hi], color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("proxy fitness (search)")
    ax.set_ylabel("held-out fitness (meta-validation)")
    ax.set_title("proxy vs held-out (green: winner)")
    return _save(fig, path)

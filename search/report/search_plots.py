"""PNG plots of a search: progress per funnel stage, meta-overfitting, the Pareto front, and the
loss curves of the validated rules against the baselines.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display). Each function
writes one PNG and returns its file name, or None when there is nothing to plot yet.

- :func:`plot_progress`: for each funnel stage, every rule's fitness at that stage in the order
  the stage measured it, with the best and the median so far (AdamW = 1);
- :func:`plot_meta_overfitting`: for the validated rules, proxy (search) fitness and held-out
  fitness against the time in the search they were found, and held-out against proxy: a rule
  that is good on the proxy and bad on held-out tasks is meta-overfitting, the failure mode
  Lion's authors name (Chen et al. 2023, §2.4);
- :func:`plot_pareto`: fitness against optimizer state bytes per parameter at the deepest stage,
  the non-dominated front joined (Deb et al. 2002);
- :func:`plot_heldout_curves`: per held-out task, validation loss of each validated rule and of
  each tuned baseline against steps, mean over the evaluation seeds with a min..max band.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evaluators.fitness import WORST_FITNESS
from evaluators.plots import mean_curve
from populations.population import Population

COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
           "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]
CANDIDATE_COLOURS = ["black", "tab:red", "tab:purple", "tab:brown", "tab:olive"]


def plain_log_axis(ax) -> None:
    """Log scale on y with plain numbers on the ticks (0.5, 1, 2) instead of powers of ten; the
    minor ticks are labelled only when the axis spans less than about a decade. Call it after
    plotting."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    narrow = lo > 0 and hi / lo < 12
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g") if narrow else NullFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=6)


def save(fig: Figure, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path.name


def stage_series(pop: Population) -> dict[str, list[tuple[int, float, str]]]:
    """Per stage, in the order measured: (rules measured so far at any stage, fitness, status).
    A journal from before the funnel has no stage records: its outcomes form one series."""
    records = sorted((rec for e in pop.entries.values() for rec in e.stages),
                     key=lambda r: r.get("seq", 0))
    out: dict[str, list[tuple[int, float, str]]] = {}
    if not records:
        for n, fit, _ in pop.progress():
            out.setdefault("proxy", []).append((n, fit, "ok" if fit < WORST_FITNESS else "failed"))
        return out
    seen: set[str] = set()
    for rec in records:
        seen.add(rec["id"])
        score = rec.get("score") or {}
        out.setdefault(rec["stage"], []).append((len(seen), score.get("fitness", WORST_FITNESS),
                                                 score.get("status", "failed")))
    return out


def plot_progress(pop: Population, path: Path) -> str | None:
    series = stage_series(pop)
    if not series:
        return None
    fig = Figure(figsize=(8, 4.2))
    ax = fig.add_subplot()
    top = max([f for s in series.values() for _, f, st in s if st == "ok"] or [2.0])
    for k, (stage, points) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        ok = [(n, f) for n, f, st in points if st == "ok" and f < WORST_FITNESS]
        bad = [n for n, f, st in points if st != "ok" or f >= WORST_FITNESS]
        if ok:
            ax.scatter(*zip(*ok), s=12, color=colour, alpha=0.55, label=f"{stage}: each rule")
            best, median, seen = [], [], []
            for n, f in ok:
                seen.append(f)
                best.append((n, min(seen)))
                median.append((n, statistics.median(seen)))
            ax.step(*zip(*best), where="post", color=colour, lw=2, label=f"{stage}: best so far")
            ax.plot(*zip(*median), color=colour, lw=1.2, ls="--", label=f"{stage}: median so far")
        if bad:
            ax.scatter(bad, [top * 1.15] * len(bad), s=14, marker="v", color=colour,
                       label=f"{stage}: failed (drawn at top)")
    ax.axhline(1.0, color="gray", linestyle=":", linewidth=1, label="AdamW")
    plain_log_axis(ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("rules measured so far")
    ax.set_ylabel("stage fitness (loss / AdamW's)")
    ax.set_title("search progress per funnel stage")
    ax.legend(fontsize=7, ncol=2)
    return save(fig, path)


def _drawn(value: float, top: float) -> float:
    return top * 1.2 if value >= WORST_FITNESS or not math.isfinite(value) else value


def plot_meta_overfitting(pop: Population, path: Path) -> str | None:
    trained = [e for e in pop.finished() if e.outcome.trained]
    order = {e.id: i + 1 for i, e in enumerate(trained)}
    pts = sorted((e for e in pop.entries.values() if e.validation and e.outcome is not None),
                 key=lambda e: order.get(e.id, 0))
    if not pts:
        return None
    finite = [v for e in pts for v in (e.outcome.fitness, e.validation["fitness"])
              if v < WORST_FITNESS]
    top = max(finite or [2.0])
    fig = Figure(figsize=(10, 4.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    xs = [order.get(e.id, 0) for e in pts]
    proxy = [_drawn(e.outcome.fitness, top) for e in pts]
    held = [_drawn(e.validation["fitness"], top) for e in pts]
    for x, p, h in zip(xs, proxy, held):
        left.plot([x, x], [p, h], color="lightgray", lw=1, zorder=1)
    left.scatter(xs, proxy, color="tab:blue", label="proxy fitness (search)", zorder=2)
    left.scatter(xs, held, color="tab:red", marker="s", label="held-out fitness", zorder=2)
    base = min(min(e.validation.get("baseline_fitness", {}).values(), default=1.0) for e in pts)
    left.axhline(1.0, color="gray", ls=":", lw=1, label="AdamW")
    if base < 1.0:
        left.axhline(base, color="tab:green", ls="--", lw=1, label="best baseline (held-out)")
    for e, x, h in zip(pts, xs, held):
        left.annotate(e.id, (x, h), fontsize=7, xytext=(3, 3), textcoords="offset points")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("found after this many trained rules")
    left.set_ylabel("fitness (loss / AdamW's)")
    left.set_title("proxy vs held-out over search time")
    left.legend(fontsize=7)
    for e, p, h in zip(pts, proxy, held):
        win = e.validation.get("winner")
        right.scatter(p, h, s=34, color="tab:green" if win else "tab:gray")
        right.annotate(e.id, (p, h), fontsize=7, xytext=(3, 3), textcoords="offset points")
    lo, hi = min(proxy + held), max(proxy + held)
    right.plot([lo, hi], [lo, hi], color="gray", ls="--", lw=1)
    right.set_xlabel("proxy fitness")
    right.set_ylabel("held-out fitness")
    right.set_title("above the diagonal: worse held-out (green: winner)")
    if top * 1.2 in proxy + held:
        fig.text(0.5, -0.02, "failed (diverged) values are drawn at the top", ha="center", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_pareto(pop: Population, path: Path) -> str | None:
    front = pop.pareto_front()
    if not front:
        return None
    depth = front[0].outcome.depth
    pts = [e for e in pop.leaderboard() if e.outcome.complete and e.outcome.depth == depth
           and e.outcome.state_bytes is not None and e.outcome.fitness < WORST_FITNESS]
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    ax.scatter([e.outcome.state_bytes for e in pts], [e.outcome.fitness for e in pts], s=14,
               color="tab:gray", label=f"complete at stage {front[0].outcome.stage or depth}")
    fb = sorted((e.outcome.state_bytes, e.outcome.fitness) for e in front)
    ax.plot(*zip(*fb), marker="o", color="tab:red", label="Pareto front")
    for e in front:
        ax.annotate(e.candidate.change if e.candidate.origin == "seed" else e.id,
                    (e.outcome.state_bytes, e.outcome.fitness), fontsize=7)
    ax.set_xlabel("optimizer state, bytes per parameter")
    ax.set_ylabel("fitness")
    ax.set_title("fitness vs memory")
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_heldout_curves(curves: Mapping[str, Mapping[str, Sequence]], candidates: Sequence[str],
                        path: Path) -> str | None:
    """``curves[task][label]``: that rule's evaluation runs (with ``val_curve``) on the task."""
    tasks = [t for t in curves if curves[t]]
    if not tasks:
        return None
    cols = min(2, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig = Figure(figsize=(6 * cols, 3.6 * rows))
    for k, task in enumerate(tasks):
        ax = fig.add_subplot(rows, cols, k + 1)
        positive = True
        baselines = [lb for lb in curves[task] if lb not in candidates]
        for label in [*baselines, *[c for c in candidates if c in curves[task]]]:
            runs = curves[task][label]
            mine = label in candidates
            colour = CANDIDATE_COLOURS[candidates.index(label) % len(CANDIDATE_COLOURS)] if mine \
                else COLOURS[baselines.index(label) % len(COLOURS)]
            steps, mean, lo, hi = mean_curve([r.val_curve for r in runs])
            if not steps.size:
                continue
            diverged = sum(r.diverged for r in runs)
            name = label + (f" ({diverged} diverged)" if diverged else "")
            ax.plot(steps, mean, color=colour, lw=2.2 if mine else 1.2, ls="-" if mine else "--",
                    label=name, zorder=3 if mine else 2)
            ax.fill_between(steps, lo, hi, color=colour, alpha=0.15, lw=0)
            positive &= bool((lo > 0).all())
        if positive:
            plain_log_axis(ax)
        n = max((len(v) for v in curves[task].values()), default=0)
        ax.set_title(f"{task} ({n} seeds)", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("validation loss")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("validated rules (solid) vs tuned baselines (dashed): mean, band = min..max "
                 "over seeds", fontsize=10)
    fig.tight_layout()
    return save(fig, path)

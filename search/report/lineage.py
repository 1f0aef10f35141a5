"""The lineage of the best rules: their ancestry as a layered graph, each edge labelled with the
mutation that made the child.

The whole lineage of a search (``Population.lineage()``, a networkx DiGraph parent -> child) has
hundreds of nodes and reads as a hairball; what a person wants is how the *best* rules came
about. So the drawing keeps the top rules of the leaderboard (and every validated one) and their
ancestors only, nearest generations first up to ``max_nodes``, lays them out in layers by
generation (networkx ``multipartite_layout``: seeds at the top, each child one layer below its
deepest parent) and draws it with matplotlib: node colour by status, the best rules outlined,
the change of each edge written on it (shortened).
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
from matplotlib.figure import Figure

from evaluators.fitness import WORST_FITNESS
from populations.population import Population

from .search_plots import save

STATUS_COLOURS = {"ok": "#8fc3e8", "hurdle": "#f3c27a", "failed": "#e89a9a", "invalid": "#cccccc"}
EDGE_TEXT = 34  # characters of a mutation's description drawn on its edge


def best_ids(pop: Population, top: int = 3) -> list[str]:
    """The rules whose ancestry is drawn: the top of the leaderboard and every validated rule."""
    ids = [e.id for e in pop.leaderboard(top)]
    ids += [e.id for e in pop.entries.values() if e.validation and e.id not in ids]
    return ids


def ancestry(pop: Population, roots: list[str], max_nodes: int = 28) -> nx.DiGraph:
    """The subgraph of ``roots`` and their ancestors, nearest generations first."""
    graph = pop.lineage()
    keep, frontier = [r for r in roots if r in graph], [r for r in roots if r in graph]
    while frontier and len(keep) < max_nodes:
        parents = []
        for node in frontier:
            parents += [p for p in graph.predecessors(node) if p not in keep and p not in parents]
        parents = parents[:max_nodes - len(keep)]
        keep += parents
        frontier = parents
    return graph.subgraph(keep).copy()


def _layers(graph: nx.DiGraph) -> None:
    for node in nx.topological_sort(graph):
        parents = list(graph.predecessors(node))
        graph.nodes[node]["layer"] = 1 + max(graph.nodes[p]["layer"] for p in parents) if parents else 0


def _short(text: str) -> str:
    text = (text or "").replace("$", "\\$")
    return text if len(text) <= EDGE_TEXT else text[:EDGE_TEXT - 1] + "…"


def plot_lineage(pop: Population, path: Path, top: int = 3) -> str | None:
    roots = best_ids(pop, top)
    graph = ancestry(pop, roots)
    if graph.number_of_nodes() == 0:
        return None
    _layers(graph)
    layers = max(nx.get_node_attributes(graph, "layer").values()) + 1
    widest = max(sum(1 for _, d in graph.nodes(data=True) if d["layer"] == k) for k in range(layers))
    pos = nx.multipartite_layout(graph, subset_key="layer", align="horizontal", scale=1.0)
    pos = {n: (x, -y) for n, (x, y) in pos.items()}  # seeds on top
    fig = Figure(figsize=(min(16.0, 2.5 + 2.8 * widest), 1.0 + 1.25 * layers))
    ax = fig.add_subplot()
    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=True, arrowsize=9, node_size=1400,
                           edge_color="#777777")
    edge_labels = {(u, v): _short(d.get("change", "")) for u, v, d in graph.edges(data=True)}
    nx.draw_networkx_edge_labels(graph, pos, edge_labels, font_size=6, ax=ax, rotate=False,
                                 bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                       "alpha": 0.9})
    for n in graph.nodes:
        attrs = graph.nodes[n]
        fit = attrs.get("fitness")
        shown = "-" if fit is None else ("failed" if fit >= WORST_FITNESS else f"{fit:.3g}")
        name = f"{n} ({attrs.get('change')})" if attrs.get("origin") == "seed" else n
        ax.text(*pos[n], f"{name}\n{shown}", ha="center", va="center", fontsize=7,
                fontweight="bold" if n in roots else "normal", zorder=4,
                bbox={"boxstyle": "round,pad=0.35",
                      "fc": STATUS_COLOURS.get(attrs.get("status") or "", "#eeeeee"),
                      "ec": "black" if n in roots else "#999999",
                      "lw": 1.8 if n in roots else 0.6})
    xs, ys = zip(*pos.values())
    ax.set_xlim(min(xs) - 0.25, max(xs) + 0.25)
    ax.set_ylim(min(ys) - 0.15, max(ys) + 0.15)
    ax.set_title("lineage of the best rules (outlined): id and fitness per rule, the mutation "
                 "on each edge; blue ok, orange stopped early, red failed", fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    return save(fig, path)

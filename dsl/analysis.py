"""Static analysis of rules on their dataflow graph (networkx).

The graph of a route has one node per statement and an edge from each statement to every later
statement that reads what it assigned. State adds *carry* edges: the last assignment of a state
variable feeds the reads of that variable on the next step. Then:
- live statements are the outputs' ancestors (`update` or `next_w`, and `eval_w`; carry edges
  included): everything else is dead code;
- state is every name read before it is assigned (and not an input or hparam);
- the structural hash is a hash of the canonical graph: temporaries are inlined, commutative
  operands sorted, state variables renamed by position, statement order and names forgotten.
  Programs that differ only in names, order of independent statements or dead code share it
  (the trick behind hero's duplicate check; AutoML-Zero's functional equivalence checking is the
  fingerprint in `fingerprint.py`).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import networkx as nx

from .ir import (
    EVAL_W,
    INPUTS,
    NEXT_W,
    OUTPUT,
    OUTPUTS,
    BinOp,
    Call,
    Expr,
    Name,
    Neg,
    Num,
    Program,
    Route,
    children,
    names_read,
    primary_output,
)
from .primitives import PRIMITIVES

_COMMUTATIVE_OPS = {"+", "*"}
_COMMUTATIVE_CALLS = frozenset(name for name, prim in PRIMITIVES.items() if prim.commutative)


def dataflow_graph(route: Route, hparams: dict[str, float] | None = None) -> nx.DiGraph:
    """Statement-level dataflow graph; node attrs: target, reads; edge attr: carry (bool)."""
    hparams = hparams or {}
    graph = nx.DiGraph()
    last_def: dict[str, int] = {}
    first_reads: dict[str, list[int]] = {}
    for i, st in enumerate(route.body):
        reads = names_read(st.value)
        graph.add_node(i, target=st.target, reads=tuple(reads))
        for name in reads:
            if name in last_def:
                graph.add_edge(last_def[name], i, carry=False)
            elif name not in INPUTS and name not in hparams:
                first_reads.setdefault(name, []).append(i)
        last_def[st.target] = i
    for name, readers in first_reads.items():
        if name in last_def:
            for r in readers:
                graph.add_edge(last_def[name], r, carry=True)
    graph.graph["last_def"] = last_def
    graph.graph["state"] = tuple(first_reads)
    return graph


def live_statements(route: Route, hparams: dict[str, float] | None = None) -> list[int]:
    graph = dataflow_graph(route, hparams)
    outs = [graph.graph["last_def"][o] for o in OUTPUTS if o in graph.graph["last_def"]]
    live: set[int] = set(outs)
    for out in outs:
        live |= nx.ancestors(graph, out)
    return sorted(live)


def eliminate_dead_code(program: Program) -> Program:
    """The same program without statements that reach neither `update` nor live state."""
    routes = []
    for route in program.routes:
        keep = live_statements(route, program.hparams)
        routes.append(Route(route.name, tuple(route.body[i] for i in keep)))
    return replace(program, routes=tuple(routes))


def state_names(program: Program) -> tuple[str, ...]:
    """Live state variables of every route, in first-read order (deduplicated across routes)."""
    out: list[str] = []
    for route in eliminate_dead_code(program).routes:
        for s in dataflow_graph(route, program.hparams).graph["state"]:
            if s not in out:
                out.append(s)
    return tuple(out)


def inputs_read(program: Program) -> frozenset[str]:
    """Inputs (g, w, t, lr, h) that live statements read."""
    found = set()
    for st in eliminate_dead_code(program).statements():
        found.update(n for n in names_read(st.value) if n in INPUTS)
    return frozenset(found)


def update_depends_on(program: Program, name: str) -> bool:
    """Whether every route's `update` (or `next_w`) depends (through state too) on input `name`."""
    for route in program.routes:
        graph = dataflow_graph(route, program.hparams)
        out = graph.graph["last_def"][primary_output(route)]
        nodes = nx.ancestors(graph, out) | {out}
        if not any(name in graph.nodes[i]["reads"] for i in nodes):
            return False
    return True


# -- structural hash -------------------------------------------------------------------------
def _h(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


class _Hasher:
    """Hash each live expression with temporaries inlined (memoised, so DAGs stay linear)."""

    def __init__(self, route: Route, hparams: dict[str, float], state_ids: dict[str, str]):
        self.hparams, self.state_ids = hparams, state_ids
        self.env: dict[str, str] = {}
        self.order: list[str] = []    # state variables in the order they are reached
        self.node_hash: dict[tuple[int, int], str] = {}   # (statement index, id(node)) -> hash
        for i, st in enumerate(route.body):
            self.env[st.target] = self.expr(st.value, i)

    def expr(self, e: Expr, index: int = -1) -> str:
        stack: list[tuple[Expr, bool]] = [(e, False)]
        done: dict[int, str] = {}
        while stack:  # iterative post-order: no recursion limit
            node, expanded = stack.pop()
            if not expanded:
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(children(node)))
                continue
            kids = [done[id(c)] for c in children(node)]
            done[id(node)] = self.node_hash[(index, id(node))] = self._node(node, kids)
        return done[id(e)]

    def _node(self, node: Expr, kids: list[str]) -> str:
        if isinstance(node, Num):
            return _h("num", repr(node.value))
        if isinstance(node, Name):
            if node.id in self.env:
                return self.env[node.id]
            if node.id in INPUTS:
                return _h("in", node.id)
            if node.id in self.hparams:
                return _h("hp", repr(float(self.hparams[node.id])))   # 5 and 5.0: one value
            if node.id not in self.order:
                self.order.append(node.id)
            return _h("state", self.state_ids.get(node.id, "?"))
        if isinstance(node, Neg):
            return _h("neg", kids[0])
        if isinstance(node, BinOp):
            if node.op in _COMMUTATIVE_OPS:
                kids = sorted(kids)
            return _h(node.op, *kids)
        assert isinstance(node, Call)
        if node.fn in _COMMUTATIVE_CALLS:
            kids = sorted(kids)
        return _h("call", node.fn, *kids)


def _route_hash(route: Route, hparams: dict[str, float]) -> str:
    first = _Hasher(route, hparams, {})          # states anonymous: fixes a canonical visit order
    ids = {s: str(k) for k, s in enumerate(_canonical_state_order(route, hparams, first))}
    second = _Hasher(route, hparams, ids)
    # `update` alone hashes as it always did; `next_w` and `eval_w` are tagged with their names
    outputs = [second.env[OUTPUT]] if OUTPUT in second.env else [_h("out", NEXT_W, second.env[NEXT_W])]
    if EVAL_W in second.env:
        outputs.append(_h("out", EVAL_W, second.env[EVAL_W]))
    for s in sorted(ids, key=lambda s: int(ids[s])):
        outputs.append(second.env.get(s, _h("state", ids[s])))
    return _h("route", route.name, *outputs)


def _canonical_state_order(route: Route, hparams: dict[str, float], first: _Hasher) -> list[str]:
    """States ordered by their anonymous next-value hash, ties broken by canonical reach order."""
    reach = _reach_order(route, hparams, first)
    states = [s for s in first.order]
    rank = {s: i for i, s in enumerate(reach)}
    return sorted(states, key=lambda s: (first.env.get(s, ""), rank.get(s, len(rank)), first.order.index(s)))


def _reach_order(route: Route, hparams: dict[str, float], first: _Hasher) -> list[str]:
    """State variables in the order a walk from `update` reaches them, independent of names and of
    statement order: temporaries are followed to their definitions, commutative operands are
    visited in order of their anonymous hashes, then each reached state's next value is walked."""
    body = route.body
    last: dict[str, int] = {}
    refs: dict[tuple[int, str], int] = {}       # (statement, name read) -> defining statement
    for i, st in enumerate(body):
        for n in names_read(st.value):
            if n in last:
                refs[(i, n)] = last[n]
        last[st.target] = i
    order: list[str] = []
    walked: set[int] = set()

    def walk(i: int) -> None:
        stack: list[tuple[int, Expr]] = [(i, body[i].value)]
        walked.add(i)
        while stack:
            k, node = stack.pop()
            if isinstance(node, Name):
                j = refs.get((k, node.id))
                if j is not None:
                    if j not in walked:
                        walked.add(j)
                        stack.append((j, body[j].value))
                elif node.id not in INPUTS and node.id not in hparams and node.id not in order:
                    order.append(node.id)
                continue
            kids = list(children(node))
            if (isinstance(node, BinOp) and node.op in _COMMUTATIVE_OPS) or \
                    (isinstance(node, Call) and node.fn in _COMMUTATIVE_CALLS):
                kids.sort(key=lambda c: first.node_hash[(k, id(c))])
            stack.extend((k, c) for c in reversed(kids))

    for o in OUTPUTS:
        if o in last and last[o] not in walked:
            walk(last[o])
    n = 0
    while n < len(order):           # next values of reached state, which may reach more state
        j = last.get(order[n])
        if j is not None and j not in walked:
            walk(j)
        n += 1
    return order


def structural_hash(program: Program) -> str:
    """Hex hash of the canonical dataflow graph (see the module docstring)."""
    live = eliminate_dead_code(program)
    parts = sorted(_route_hash(r, program.hparams) for r in live.routes)
    return _h("program", *parts)


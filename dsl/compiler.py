"""Lower one route of a rule to a flat plan of instructions (SSA form).

Lowering does the work that must not happen on every step:
- common subexpressions are computed once (hash-consing);
- statements that reach neither `update` nor a live piece of state are dropped;
- every value gets a kind: *scalar* (depends only on hparams, `t`, `lr` and literals: computed as
  a Python float once per group and step, exactly as torch computes its bias corrections) or
  *tensor* (one tensor per parameter, run foreach-style across the group);
- a sign analysis proves which values are >= 0 (each entry's sign rule in `dsl.primitives`), so
  protected `sqrt(|x|)` skips the `abs` pass;
- `x + s*y`, `x + s*y*z` and `x + y/z` fuse into single foreach kernels (axpy, addcmul, addcdiv);
- lazy choices (`when`, and `every` lowered to it): the instructions only one branch needs are
  that branch's *block*, placed right before the choice, so the interpreter skips the block of
  the branch not taken (the condition is a scalar, known before any tensor work) and the exporter
  prints both as an `if`; group reductions and outputs are never in a block;
- liveness: the last instruction that reads each value (a choice's result counts as a read of
  both its branches), so the interpreter can write results into buffers that are dead (in place)
  instead of allocating.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from .errors import RuleValidationError
from .ir import EVAL_W, INPUTS, BinOp, Call, Expr, Name, Neg, Num, Route, primary_output
from .primitives import OPERATORS, PRIMITIVES, instruction

INFIX_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}
COMMUTATIVE = frozenset(n for table in (OPERATORS, PRIMITIVES) for n, e in table.items() if e.commutative)
TENSOR_INPUTS = ("g", "w", "h", "w0")

Operand = "int | float"   # a value id, or a literal float constant


@dataclass
class Instr:
    op: str                         # operator, primitive name, or fused kernel
    args: tuple                     # value ids (int) and constants (float)
    out: int
    scalar: bool = False
    nonneg: bool = False            # result proven >= 0 (or NaN)
    fresh: bool = True              # result is a new buffer owned by the plan


@dataclass
class Plan:
    """One route compiled for execution. Value ids index the interpreter's value table."""

    route: str
    n_values: int
    loads: dict[str, int]                      # input / hparam / state name -> value id
    states: tuple[str, ...]                    # live state, in first-read order
    scalar_instrs: list[Instr]
    tensor_instrs: list[Instr]
    update: int | float
    state_out: dict[str, int]                  # state name -> value id of its next value
    scalar_ids: frozenset[int]
    nonneg_ids: frozenset[int]
    last_use: dict[int, int] = field(default_factory=dict)   # value id -> tensor instr index
    reads: frozenset[str] = frozenset()        # inputs the plan reads
    value_names: dict[int, str] = field(default_factory=dict)   # value id -> statement that named it
    apply: str = "update"                      # how `update` moves w: "update" (w - lr * u) or "next_w" (w <- u)
    eval_w: int | float | None = None          # the evaluation point, when the route has one
    # lazy choices: tensor instr index -> (block of its first branch, block of its second), as
    # tensor instr indices; owners[k]: the (choice index, branch position) blocks instr k is in, outer first
    branches: dict[int, tuple[frozenset[int], frozenset[int]]] = field(default_factory=dict)
    owners: list[tuple] = field(default_factory=list)
    _skips: dict = field(default_factory=dict, repr=False)

    @property
    def outputs(self) -> set[int]:
        """Values that leave the step: `update`, the evaluation point and every state's next value."""
        out = _outputs(self.update, self.state_out)
        if isinstance(self.eval_w, int):
            out.add(self.eval_w)
        return out

    def skipped(self, vals: list) -> frozenset[int]:
        """The tensor instructions of the branches not taken, given the step's scalar values."""
        if not self.branches:
            return frozenset()
        taken = []
        for k in self.branches:
            c = self.tensor_instrs[k].args[0]
            taken.append(instruction(self.tensor_instrs[k].op).branch(vals[c] if isinstance(c, int) else c))
        key = tuple(taken)
        skip = self._skips.get(key)
        if skip is None:
            skip = frozenset().union(*(blocks[2 - side] for blocks, side in zip(self.branches.values(), taken)))
            self._skips[key] = skip
        return skip


def compile_route(route: Route, hparams: dict[str, float], *, lr_is_tensor: bool = False) -> Plan:
    return _Lowering(route, hparams, lr_is_tensor).run()


class _Lowering:
    def __init__(self, route: Route, hparams: dict[str, float], lr_is_tensor: bool):
        self.route, self.hparams, self.lr_is_tensor = route, hparams, lr_is_tensor
        self.instrs: list[Instr] = []
        self.memo: dict[tuple, int] = {}
        self.loads: dict[str, int] = {}
        self.scalar: set[int] = set()
        self.nonneg: set[int] = set()
        self.n = 0
        self.state_order: list[str] = []
        self.lr_dep: set[int] = set()           # values computed from lr
        self.invalid: dict[int, str] = {}       # value id -> why it cannot run (raised if it is live)

    def _new(self) -> int:
        self.n += 1
        return self.n - 1

    def _load(self, name: str) -> int:
        if name not in self.loads:
            vid = self.loads[name] = self._new()
            if name in self.hparams or name == "t" or (name == "lr" and not self.lr_is_tensor):
                # hparams can be overridden per group, so only t and lr have a proven sign
                self.scalar.add(vid)
                if name in ("t", "lr"):
                    self.nonneg.add(vid)
            elif name not in INPUTS:
                self.state_order.append(name)
            if name == "lr":
                self.lr_dep.add(vid)
        return self.loads[name]

    # the builder a registry entry's `lower` writes its instructions with
    def emit(self, op: str, args: tuple) -> int:
        return self._emit(op, args)

    def load(self, name: str) -> int:
        return self._load(name)

    def run(self) -> Plan:
        env: dict[str, int | float] = {}
        names: dict[int, str] = {}
        self.where: dict[int, tuple] = {}           # value id -> (line, col) of the statement that made it
        for st in self.route.body:
            first = self.n
            env[st.target] = value = self._expr(st.value, env)
            for vid in range(first, self.n):
                self.where[vid] = (st.line, st.col)
            if isinstance(value, int) and value not in self.loads.values():
                names.setdefault(value, st.target)
        apply = primary_output(self.route)
        update = env[apply]
        states = [s for s in self.state_order]
        state_out = {s: env.get(s, self.loads[s]) for s in states}
        plan = self._finish(update, states, state_out, env.get(EVAL_W))
        plan.value_names = names
        plan.apply = apply
        return plan

    # -- lowering ------------------------------------------------------------------------
    def _expr(self, e: Expr, env: dict) -> int | float:
        if isinstance(e, Num):
            return e.value
        if isinstance(e, Name):
            return env[e.id] if e.id in env else self._load(e.id)
        if isinstance(e, Neg):
            return self._emit("neg", (self._expr(e.operand, env),))
        if isinstance(e, BinOp):
            return self._emit(INFIX_OPS[e.op], (self._expr(e.left, env), self._expr(e.right, env)))
        assert isinstance(e, Call)
        args = tuple(self._expr(a, env) for a in e.args)
        lower = PRIMITIVES[e.fn].lower
        return lower(self, *args) if lower is not None else self._emit(e.fn, args)

    def _emit(self, op: str, args: tuple) -> int:
        key_args = args
        if op in COMMUTATIVE:
            key_args = tuple(sorted(args, key=lambda a: (isinstance(a, float), a)))
        # constants are keyed with their sign bit, so `x * -0.0` and `x * 0.0` stay apart
        key = (op,) + tuple(("c", a, math.copysign(1.0, a)) if isinstance(a, float) else ("v", a) for a in key_args)
        if key in self.memo:
            return self.memo[key]
        out = self._new()
        scalar = all(isinstance(a, float) or a in self.scalar for a in args)
        entry = instruction(op)
        instr = Instr(op, args, out, scalar=scalar, fresh=entry.fresh)
        if any(isinstance(a, int) and a in self.lr_dep for a in args):
            self.lr_dep.add(out)
        if entry.branch is not None:
            c = args[0]
            if isinstance(c, int) and (c not in self.scalar or c in self.lr_dep):
                self.invalid[out] = ("the condition of when() (every()'s k) must be a scalar of t, hparams and "
                                     "numbers" + (", not of lr (an lr grid trained as one ensemble has one lr per "
                                                  "member)" if c in self.lr_dep else ""))
        if entry.kind == "group" and not scalar and any(isinstance(a, float) or a in self.scalar for a in args):
            self.invalid[out] = f"{op}(): every argument must be a tensor (it reduces over the group's tensors)"
        instr.nonneg = self._proves_nonneg(op, args)
        if scalar:
            self.scalar.add(out)
        if instr.nonneg:
            self.nonneg.add(out)
        self.instrs.append(instr)
        self.memo[key] = out
        return out

    def _is_nonneg(self, a) -> bool:
        return a >= 0 if isinstance(a, float) else a in self.nonneg

    def _proves_nonneg(self, op: str, args: tuple) -> bool:
        return instruction(op).proves_nonneg(self._is_nonneg, args)

    # -- whole-plan passes --------------------------------------------------------------
    def _finish(self, update, states: list[str], state_out: dict, eval_w=None) -> Plan:
        # State that starts at zero keeps its sign proof only if every next value is proven too.
        # Optimistic fixed point: assume all state >= 0, re-run the analysis, drop violators.
        candidates = set(states)
        while True:
            self.nonneg = {self.loads[s] for s in candidates} | {self.loads[n] for n in ("t", "lr") if n in self.loads}
            for ins in self.instrs:
                ins.nonneg = self._proves_nonneg(ins.op, ins.args)
                if ins.nonneg:
                    self.nonneg.add(ins.out)
            bad = {s for s in candidates if not self._is_nonneg(state_out[s])}
            if not bad:
                break
            candidates -= bad

        live = self._live(update, states, state_out, eval_w)
        for vid, why in self.invalid.items():
            if vid in live:
                line, col = self.where.get(vid, (None, None))
                raise RuleValidationError(why, line=line, col=col)
        states = [s for s in states if self.loads[s] in live]
        state_out = {s: state_out[s] for s in states}
        for s in states:
            nxt = state_out[s]
            if isinstance(nxt, float) or nxt in self.scalar:
                st = [a for a in self.route.body if a.target == s][-1]
                raise RuleValidationError(f"state '{s}' is assigned a value that reads no tensor (only numbers, "
                                          "hparams, t and lr): state must follow g, w or other state",
                                          line=st.line, col=st.col)
        if eval_w is not None and (isinstance(eval_w, float) or eval_w in self.scalar):
            raise RuleValidationError("'eval_w' reads no tensor (only numbers, hparams, t and lr)")
        instrs = [i for i in self.instrs if i.out in live]
        scalar_instrs = [i for i in instrs if i.scalar]
        outputs = _outputs(update, state_out) | ({eval_w} if isinstance(eval_w, int) else set())
        tensor_instrs = _fuse([i for i in instrs if not i.scalar], self.scalar, live_outputs=outputs)
        roots = outputs | {i.out for i in tensor_instrs if instruction(i.op).kind == "group"}
        tensor_instrs, branches, owners = _branch_blocks(tensor_instrs, roots)
        loads = {k: v for k, v in self.loads.items() if v in live}
        plan = Plan(self.route.name, self.n, loads, tuple(states), scalar_instrs, tensor_instrs, update, state_out,
                    frozenset(self.scalar), frozenset(self.nonneg),
                    reads=frozenset(k for k in loads if k in INPUTS), eval_w=eval_w, branches=branches, owners=owners)
        plan.last_use = _last_use(tensor_instrs)
        return plan

    def _live(self, update, states, state_out, eval_w=None) -> set[int]:
        producer = {i.out: i for i in self.instrs}
        live: set[int] = set()
        stack = [v for v in (update, eval_w) if isinstance(v, int)]
        state_by_load = {self.loads[s]: s for s in states}
        while stack:
            v = stack.pop()
            if v in live:
                continue
            live.add(v)
            if v in producer:
                stack.extend(a for a in producer[v].args if isinstance(a, int))
            elif v in state_by_load:
                nxt = state_out[state_by_load[v]]
                if isinstance(nxt, int):
                    stack.append(nxt)
        return live


def _outputs(update, state_out) -> set[int]:
    out = {v for v in state_out.values() if isinstance(v, int)}
    if isinstance(update, int):
        out.add(update)
    return out


def _last_use(instrs: list[Instr]) -> dict[int, int]:
    """Value id -> index of the last instruction that reads it; a lazy choice's result is its taken
    branch's buffer itself, so reading the result counts as reading both branches."""
    last: dict[int, int] = {}
    for idx, ins in enumerate(instrs):
        for a in ins.args:
            if isinstance(a, int):
                last[a] = idx
    for idx in range(len(instrs) - 1, -1, -1):
        ins = instrs[idx]
        if instruction(ins.op).branch is not None and ins.out in last:
            for a in ins.args[1:]:
                if isinstance(a, int):
                    last[a] = max(last.get(a, idx), last[ins.out])
    return last


def _branch_blocks(instrs: list[Instr], roots: set[int]):
    """Each lazy choice's blocks (the instructions that only one of its branches needs; never a root:
    an output or a group reduction), moved right before the choice, nested blocks inside their
    parents. Returns the reordered instructions, the blocks and each instruction's owners, by index."""
    lazy = [ins for ins in instrs if instruction(ins.op).branch is not None]
    if not lazy:
        return instrs, {}, [()] * len(instrs)
    index = {ins.out: k for k, ins in enumerate(instrs)}
    consumers: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for ins in instrs:
        for pos, a in enumerate(ins.args):
            if isinstance(a, int) and a in index:
                consumers[a].append((ins.out, pos))
    blocks: dict[tuple[int, int], set[int]] = {}
    for w in lazy:
        for pos in (1, 2):
            own: set[int] = set()
            arg = w.args[pos]
            if isinstance(arg, int) and arg in index:
                for k in range(index[arg], -1, -1):       # consumers come after their producers
                    v = instrs[k].out
                    if v in roots or not consumers[v]:
                        continue
                    if all((c == w.out and p == pos) or c in own for c, p in consumers[v]):
                        own.add(v)
            blocks[(w.out, pos)] = own
    inner: dict[int, tuple[int, int]] = {}                # value -> the smallest block it is in
    for key, own in sorted(blocks.items(), key=lambda kv: -len(kv[1])):
        for v in own:
            inner[v] = key
    members: dict = defaultdict(list)
    for ins in instrs:
        members[inner.get(ins.out)].append(ins)
    order: list[Instr] = []

    def place(items: list[Instr]) -> None:
        for ins in items:
            if instruction(ins.op).branch is not None:
                place(members[(ins.out, 1)])
                place(members[(ins.out, 2)])
            order.append(ins)

    place(members[None])
    at = {ins.out: k for k, ins in enumerate(order)}
    branches = {at[w.out]: (frozenset(at[v] for v in blocks[(w.out, 1)]), frozenset(at[v] for v in blocks[(w.out, 2)]))
                for w in sorted(lazy, key=lambda w: at[w.out])}

    def chain(v: int) -> tuple:
        key = inner.get(v)
        return () if key is None else chain(key[0]) + ((at[key[0]], key[1]),)

    return order, branches, [chain(ins.out) for ins in order]


def _fuse(instrs: list[Instr], scalar: set[int], live_outputs: set[int]) -> list[Instr]:
    """Fuse `x + s*y` (axpy), `x + (s*y)*z` (addcmul) and `x + y/z` (addcdiv) where the inner
    product is used exactly once. Order of floating-point operations matches torch's kernels."""
    uses: dict[int, int] = {}
    for ins in instrs:
        for a in ins.args:
            if isinstance(a, int):
                uses[a] = uses.get(a, 0) + 1
    producer = {i.out: i for i in instrs}

    def is_scalar(a) -> bool:
        return isinstance(a, float) or a in scalar

    def single_use(a) -> Instr | None:
        if isinstance(a, int) and a in producer and uses.get(a) == 1 and a not in live_outputs:
            return producer[a]
        return None

    removed: set[int] = set()
    out: list[Instr] = []
    for ins in instrs:
        fused = None
        if ins.op == "add":
            for x, other in ((ins.args[0], ins.args[1]), (ins.args[1], ins.args[0])):
                if is_scalar(x):
                    continue
                p = single_use(other)
                if p is None:
                    continue
                if p.op == "mul":
                    a, b = p.args
                    if is_scalar(a) != is_scalar(b):
                        s, y = (a, b) if is_scalar(a) else (b, a)
                        fused = Instr("axpy", (x, y, s), ins.out, nonneg=ins.nonneg)
                    elif not is_scalar(a) and not is_scalar(b):
                        q = single_use(a)
                        if q is not None and q.op == "mul" and is_scalar(q.args[0]) and not is_scalar(q.args[1]):
                            fused = Instr("addcmul", (x, q.args[1], b, q.args[0]), ins.out, nonneg=ins.nonneg)
                            removed.add(q.out)
                        else:
                            fused = Instr("addcmul", (x, a, b, 1.0), ins.out, nonneg=ins.nonneg)
                elif p.op == "div" and not is_scalar(p.args[0]) and not is_scalar(p.args[1]):
                    fused = Instr("addcdiv", (x, p.args[0], p.args[1], 1.0), ins.out, nonneg=ins.nonneg)
                if fused is not None:
                    removed.add(p.out)
                    break
        out.append(fused or ins)
    return [i for i in out if i.out not in removed]

"""Printing a compiled plan as Python, part 2: the tensor instructions (see `dsl.codegen`).

Each instruction is printed by its registry entry's kernel (`dsl.primitives.kernels`): the torch
call `run` makes for one tensor (`torch._foreach_add_(xs, ys, alpha=s)` becomes
`x.add_(y, alpha=s)`), writing in place exactly where the interpreter does, so the exported
optimizer rounds as `ProgramOptimizer`; an entry without a foreach form is a call of its own
per-tensor function, whose source the file carries. `TensorCode` turns a route's instructions
into the update function(s) and the step loop: a result that only the next instruction reads is
chained into it, everything else gets a name (the rule's, or `denom` / `tmp`), and a name is
reused only when the value it held is dead.
"""

from __future__ import annotations

from collections import defaultdict

from .codegen_scalars import Namer, Scalars
from .codetext import ATOM, Text, call, return_line, wrap
from .compiler import Instr, Plan
from .errors import RuleError
from .primitives import instruction


def written(ins: Instr, dest: int | None, tensor: list[bool]) -> int | None:
    """The argument whose buffer `ins` overwrites, as the interpreter runs it (None: a fresh result)."""
    return instruction(ins.op).kernel.writes(dest, tensor)


def render(ins: Instr, a: list[Text], dest: int | None, nonneg: bool) -> tuple[Text, int | None]:
    """(text, receiver position) of one instruction with printed arguments `a`."""
    entry = instruction(ins.op)
    return entry.kernel.emit(a, entry.kernel.writes(dest, [t.tensor for t in a]), nonneg, entry)


class TensorCode:
    """The update function(s) and the step loop of one route."""

    def __init__(self, plan: Plan, dests: dict[int, int], clones: set[str], namer: Namer, scalars: Scalars):
        self.plan, self.dests, self.clones, self.namer, self.scalars = plan, dests, clones, namer, scalars
        self.instrs = plan.tensor_instrs
        self.helpers: set[str] = set()
        self.load_name = {vid: name for name, vid in plan.loads.items()}
        self.outputs = {v for v in [plan.update, plan.eval_w, *plan.state_out.values()] if isinstance(v, int)}
        self.group = [k for k, ins in enumerate(self.instrs) if instruction(ins.op).kind == "group"]
        bounds = [-1, *self.group, len(self.instrs)]
        phases = [range(lo + 1, hi) for lo, hi in zip(bounds, bounds[1:])]
        # an empty phase (a reduction right at the start, or two in a row) has no function
        self.phases = [r for k, r in enumerate(phases) if len(r) or k == len(phases) - 1]
        self.consumers: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for k, ins in enumerate(self.instrs):
            for pos, x in enumerate(ins.args):
                if self._tensor(x):
                    self.consumers[x].append((k, pos))
        self.successor: dict[int, int] = {}      # value -> the value that overwrites its buffer
        for k, ins in enumerate(self.instrs):
            w = written(ins, dests.get(k), [self._tensor(x) for x in ins.args])
            if w is not None:
                self.successor[ins.args[w]] = ins.out
        self.var: dict[int, str] = {}
        self.carries: list[list[int]] = [self._carried(n) for n in range(len(self.phases))]
        self.group_names = {self.instrs[k].out: self._value_name(self.instrs[k].out, "group_" + self.instrs[k].op[7:])
                            for k in self.group}
        self.fixed = set(self.group_names.values())   # names that stay parameters of later phases
        self.inputs = {self.namer.rule[n] for n in ("g", "w", "h", "w0", *plan.states)}   # every phase's parameters

    def _tensor(self, x) -> bool:
        return isinstance(x, int) and x not in self.plan.scalar_ids

    def _value_name(self, v: int, base: str) -> str:
        rule = self.plan.value_names.get(v)
        return self.namer.rule[rule] if rule is not None else self.namer.fresh(base)

    def _carried(self, n: int) -> list[int]:
        """Values computed in phase n that a later phase, a group reduction or the outputs need."""
        if n == len(self.phases) - 1:
            return []
        mine = {self.instrs[k].out for k in self.phases[n]}
        later = [x for k in range(self.phases[n].stop, len(self.instrs)) for x in self.instrs[k].args]
        return [v for v in dict.fromkeys(later + sorted(self.outputs)) if v in mine]

    # -- the update function(s) -------------------------------------------------------------------
    def phase_functions(self, name: str, states: tuple[str, ...]) -> list[str]:
        out = []
        multi = len(self.phases) > 1
        for n, phase in enumerate(self.phases):
            fname = f"{name}_{n + 1}" if multi else name
            out.append(self._phase(fname, n, phase, states))
        return out

    def params(self, n: int, states: tuple[str, ...]) -> list[str]:
        """Parameters of phase n's function: inputs, state, earlier carries, group values, coefficients."""
        names = ["g", "w"] + [self.namer.rule[s] for s in states]
        for m in range(n):
            names += [self.var[v] for v in self.carries[m]]
        names += [self.group_names[self.instrs[k].out] for k in self.group if k < self.phases[n].start]
        return names + self.scalars.coefficients

    def _phase(self, fname: str, n: int, phase: range, states: tuple[str, ...]) -> str:
        holder: dict[str, int] = {}
        for name, vid in self.plan.loads.items():
            if self._tensor(vid):
                self.var[vid] = self.namer.rule[name]
                holder[self.namer.rule[name]] = vid
        for m in range(n):
            for v in self.carries[m]:
                holder[self.var[v]] = v
        for k in self.group:
            if k < phase.start:
                self.var[self.instrs[k].out] = self.group_names[self.instrs[k].out]
        last = n == len(self.phases) - 1
        keep = set(self.outputs) | set(self.carries[n])
        blocks = _Blocks(self, holder, keep, n)
        pending: tuple[int, Text] | None = None
        for k in phase:
            ins = self.instrs[k]
            blocks.enter(self.plan.owners[k])
            if k in self.plan.branches:
                blocks.choose(k)
                continue
            args = []
            for x in ins.args:
                if pending is not None and x == pending[0]:
                    args.append(pending[1])
                    pending = None
                elif self._tensor(x):
                    args.append(Text(self.var[x], ATOM, self.var[x]))
                else:
                    args.append(self.scalars.text(x))
            text, _ = render(ins, args, self.dests.get(k), self._nonneg(ins))
            self.helpers |= text.needs
            if self._inlinable(k, ins.out, text, phase, keep):
                pending = (ins.out, text)
                continue
            name = self._bind_name(k, ins.out, text, holder, keep, ins.out in self.carries[n])
            blocks.line(text.text if text.root == name else f"{name} = {text.text}")
            self.var[ins.out] = name
            holder[name] = ins.out
            if ins.out in self.carries[n]:
                self.fixed.add(name)
        blocks.enter(())
        if last:
            outs = [self._out(self.plan.update)] + [self._out(self.plan.state_out[s], s in self.clones)
                                                    for s in self.plan.states]
            if self.plan.eval_w is not None:
                outs.append(self._out(self.plan.eval_w, "eval_w" in self.clones))
        else:
            outs = [self.var[v] for v in self.carries[n]]
        ret = return_line(outs, tuple_of_one=not last).strip()
        doc = self._doc(n, last)
        body = [f"    {ln}" for ln in blocks.lines] + [f"    {ret}"]
        head = wrap(f"def {fname}(", self.params(n, states), "):")
        return "\n".join([head, f'    """{doc}"""', *body])

    def _doc(self, n: int, last: bool) -> str:
        own = list(self.plan.states)
        if not last:
            return f"Phase {n + 1} of one parameter's step: the values later phases and group reductions need."
        if not own:
            return "One parameter's step: the update."
        return f"One parameter's step: the update and the next {', '.join(own)}."

    def _out(self, v, clone: bool = False) -> str:
        name = self.var[v]
        return f"{name}.clone()" if clone else name

    def _nonneg(self, ins: Instr) -> bool:
        first = ins.args[0]
        return isinstance(first, int) and first in self.plan.nonneg_ids

    def _inlinable(self, k: int, v: int, text: Text, phase: range, keep: set[int]) -> bool:
        """Chain v into the next instruction: its only reader, in the same phase, and either as the
        receiver of a method or as a small argument."""
        cons = self.consumers.get(v, [])
        if v in keep or v in self.plan.value_names or len(cons) != 1 or cons[0][0] != k + 1 or k + 1 not in phase:
            return False
        if k + 1 in self.plan.branches or self.plan.owners[k] != self.plan.owners[k + 1]:
            return False      # a choice names its branches; a value does not cross into another block
        nxt = self.instrs[k + 1]
        if nxt.op in ("max", "min") and written(nxt, self.dests.get(k + 1), [self._tensor(x) for x in nxt.args]) \
                is not None:
            return False      # `out=` names its buffer twice
        probe = [Text(f"__{j}", ATOM, f"__{j}") if self._tensor(x) else self.scalars.text(x)
                 for j, x in enumerate(nxt.args)]
        _, recv = render(nxt, probe, self.dests.get(k + 1), self._nonneg(nxt))
        if recv == cons[0][1]:
            return True
        return text.ops <= 1 and len(text.text) <= 40

    def _bind_name(self, k: int, v: int, text: Text, holder: dict[str, int], keep: set[int], carried: bool) -> str:
        rule = self.plan.value_names.get(v)
        if rule is not None:
            base = self.namer.rule[rule]
        elif text.root is not None and not (carried and text.root in self.fixed | self.inputs):
            return text.root              # an in-place chain: the buffer keeps its variable
        else:
            final = v
            while final in self.successor:
                final = self.successor[final]
            rule = self.plan.value_names.get(final)
            cons = self.consumers.get(v, [])
            divisor = cons and all(self.instrs[j].op in ("div", "addcdiv") and pos == (2 if
                                   self.instrs[j].op == "addcdiv" else 1) for j, pos in cons)
            base = self.namer.rule[rule] if rule is not None else ("denom" if divisor else "tmp")
        generated = rule is None
        name, n = base, 1
        while (generated and name in holder) or (name in holder and self._live(holder[name], k, keep)) \
                or name in self.scalars.coefficients or name in self.fixed or (carried and name in self.inputs):
            n += 1
            name = f"{base}{n}"
        return name

    def _live(self, v: int, k: int, keep: set[int]) -> bool:
        return v in keep or any(j > k for j, _ in self.consumers.get(v, [])) or \
            any(j > k for j in self.group if v in self.instrs[j].args)

    # -- the step loop ---------------------------------------------------------------------------
    def step_function(self, name: str, update: str, states: tuple[str, ...], keys: tuple[str, ...]) -> str:
        st = [self.namer.rule[s] for s in keys]
        own = [self.namer.rule[s] for s in keys if s not in states or s in self.plan.states]
        lines = [f"def {name}(params, grads, {', '.join(st + ['coefficients', 'which'])}):",
                 '    """One step for lists of parameters, gradients and per-parameter state (the state lists are',
                 '    updated); parameter i takes the scalars coefficients[which[i]]."""']
        targets = ", ".join(["update"] + [f"{s}[i]" for s in own])
        state_args = [f"{self.namer.rule[s]}[i]" for s in states]
        apply = "_assign(p, update)" if self.plan.apply == "next_w" else None
        if len(self.phases) == 1 and not self.group:
            args = ["grads[i].to(w.dtype)", "w", *state_args, "*row"]
            lines += ["    for i, p in enumerate(params):",
                      "        row = coefficients[which[i]]",
                      "        w = p.float() if p.dtype in _LOW_PRECISION else p",
                      wrap(f"        {targets} = {update}(", args, ")"),
                      f"        {apply or '_apply(p, w, update, row[0])'}"]
            return "\n".join(lines)
        lines += ["    w = [p.float() if p.dtype in _LOW_PRECISION else p for p in params]",
                  "    g = [grad.to(x.dtype) for grad, x in zip(grads, w)]",
                  "    rows = [coefficients[k] for k in which]"]
        lists = {"g": "g", "w": "w", **{s: self.namer.rule[s] for s in states}}
        done: set[int] = set()
        for n, phase in enumerate(self.phases):
            for k in self.group:               # the reductions this phase needs, over all parameters
                if k < phase.start and k not in done:
                    done.add(k)
                    items = [Text(self._group_items(x, k, lists)) for x in self.instrs[k].args]
                    reduced = call(instruction(self.instrs[k].op).fn, items)      # one value per tensor
                    lines.append(f"    {self.group_names[self.instrs[k].out]} = {reduced.text}")
                    self.helpers |= reduced.needs
            fname = f"{update}_{n + 1}" if len(self.phases) > 1 else update   # as phase_functions names it
            carried = [f"*carry{m + 1}[i]" for m in range(n) if self.carries[m]]
            groups = [f"{self.group_names[self.instrs[k].out]}[i]" for k in self.group if k < phase.start]
            args = ["g[i]", "w[i]", *state_args, *carried, *groups, "*rows[i]"]
            if n < len(self.phases) - 1:
                lines.append(wrap(f"    carry{n + 1} = [{fname}(", args, ") for i in range(len(params))]"))
            else:
                lines += ["    for i, p in enumerate(params):",
                          wrap(f"        {targets} = {fname}(", args, ")"),
                          f"        {apply or '_apply(p, w[i], update, rows[i][0])'}"]
        return "\n".join(lines)

    def _group_items(self, x, k: int, lists: dict[str, str]) -> str:
        """The list a whole-group reduction at instruction k reduces."""
        if x in self.load_name:
            return lists[self.load_name[x]]
        if x in self.group_names:
            return self.group_names[x]
        for m, phase in enumerate(self.phases):
            if x in self.carries[m] and phase.stop <= k:
                return f"[values[{self.carries[m].index(x)}] for values in carry{m + 1}]"
        raise RuleError("export: a group reduction reads a value it cannot reach")


class _Blocks:
    """The `if` / `else` structure of one update function: each lazy choice's blocks (compiled
    right before it, `Plan.owners`) become its branches, and each branch ends by assigning the
    choice's variable; a choice with no block of its own is a conditional expression."""

    def __init__(self, code: TensorCode, holder: dict[str, int], keep: set[int], phase: int):
        self.code, self.holder, self.keep, self.phase = code, holder, keep, phase
        self.lines: list[str] = []
        self.chain: tuple = ()
        self.opened: dict[int, set[int]] = defaultdict(set)

    def line(self, text: str) -> None:
        self.lines.append("    " * len(self.chain) + text)

    def _name(self, k: int) -> str:
        """The variable of choice k (bound once, when first assigned)."""
        code, out = self.code, self.code.instrs[k].out
        if out not in code.var:
            name = code._bind_name(k, out, Text("", ATOM), self.holder, self.keep, out in code.carries[self.phase])
            code.var[out] = name
            self.holder[name] = out
            if out in code.carries[self.phase]:
                code.fixed.add(name)
        return code.var[out]

    def _assign(self, k: int, side: int) -> None:
        name, value = self._name(k), self.code.var[self.code.instrs[k].args[side]]
        if name != value:
            self.line(f"{name} = {value}")

    def _flag(self, k: int) -> str:
        return self.code.scalars.flags[k]

    def enter(self, chain: tuple) -> None:
        """Close the blocks the next instruction is not in, open the ones it is in."""
        common = 0
        while common < min(len(self.chain), len(chain)) and self.chain[common] == chain[common]:
            common += 1
        while len(self.chain) > common:          # close, innermost first: the branch's last line
            k, side = self.chain[-1]
            self._assign(k, side)
            self.chain = self.chain[:-1]
        for k, side in chain[common:]:
            if side == 1:
                self.line(f"if {self._flag(k)}:")
            elif 1 in self.opened[k]:
                self.line("else:")
            elif self._needs(k, 1):              # an empty first branch: the choice's own argument
                self.line(f"if {self._flag(k)}:")
                self.chain += ((k, 1),)
                self._assign(k, 1)
                self.chain = self.chain[:-1]
                self.line("else:")
            else:
                self.line(f"if not {self._flag(k)}:")
            self.opened[k].add(side)
            self.chain += ((k, side),)

    def _needs(self, k: int, side: int) -> bool:
        """Whether branch `side` of choice k must assign the choice's variable."""
        return self._name(k) != self.code.var[self.code.instrs[k].args[side]]

    def choose(self, k: int) -> None:
        """Choice k itself, after its blocks (if any)."""
        x, y = (self.code.var[a] for a in self.code.instrs[k].args[1:])
        name = self._name(k)
        if not self.opened[k]:
            self.line(f"{name} = {x} if {self._flag(k)} else {y}")
        elif 2 not in self.opened[k] and self._needs(k, 2):
            self.line("else:")
            self.chain += ((k, 2),)
            self._assign(k, 2)
            self.chain = self.chain[:-1]

"""How an instruction runs across a whole parameter group, and what the exporter prints for it.

A `Kernel` is the foreach side of a registry entry (`Primitive.kernel`):
- `run(args, dest, nonneg, n)`: one instruction on list arguments (one tensor per parameter) and
  Python floats, with torch's `_foreach_*` ops: one Python call per instruction, not per tensor.
  `dest` is the argument whose buffer the interpreter lets it overwrite (dead afterwards, with the
  result's shape and dtype), None to allocate; `nonneg` says the first argument is proven >= 0.
  Returns the n results, or None where the kernel does not cover the case (the interpreter then
  loops the entry's per-tensor `fn`);
- `writes(dest, tensor)`: the argument `run` overwrites when allowed to write into `dest`, given
  which arguments are tensors (None: it allocates). The interpreter offers only such positions;
- `emit(a, w, nonneg, entry)`: the same computation for one tensor as printed `Text`
  (`torch._foreach_add_(xs, ys, alpha=s)` is `x.add_(y, alpha=s)`), writing into argument `w`'s
  buffer exactly where `run` does, so an exported optimizer rounds as the interpreter does.
  Returns the text and the argument that receives its method chain (None if none).

The base `Kernel` (`PER_TENSOR`) covers nothing: the entry's `fn` runs per tensor, and the export
calls `fn` itself, whose source the exported file carries.
"""

from __future__ import annotations

import torch

from ..codetext import ATOM, Text, binary, call, method, unary_minus


def _rdiv(s, x):
    """s / x for a scalar s, rounded once (Python's `s / x` multiplies by the reciprocal)."""
    return torch.as_tensor(s, dtype=x.dtype, device=x.device) / x


def _foreach(name: str, inplace: bool, *args, **kw):
    """torch._foreach_<name>(*args) (in place into args[0] when `inplace`), as a list."""
    if inplace:
        getattr(torch, f"_foreach_{name}_")(*args, **kw)
        return args[0]
    return list(getattr(torch, f"_foreach_{name}")(*args, **kw))


def _is_list(x) -> bool:
    return isinstance(x, list)


def _suffix(w) -> str:
    return "_" if w == 0 else ""


class Kernel:
    """No foreach form: the interpreter runs the entry's `fn` per tensor; the export calls it."""

    def run(self, args: list, dest: int | None, nonneg: bool, n: int) -> list | None:
        return None

    def writes(self, dest: int | None, tensor: list[bool]) -> int | None:
        return None

    def emit(self, a: list[Text], w: int | None, nonneg: bool, entry) -> tuple[Text, int | None]:
        return call(entry.fn, a), None


PER_TENSOR = Kernel()


class Unary(Kernel):
    """torch's elementwise `name`: `_foreach_<name>(xs)`, `x.<name>()`."""

    def __init__(self, name: str):
        self.name = name

    def run(self, args, dest, nonneg, n):
        return _foreach(self.name, dest == 0, args[0]) if _is_list(args[0]) else None

    def writes(self, dest, tensor):
        return 0 if dest == 0 else None

    def emit(self, a, w, nonneg, entry):
        return method(a[0], self.name + _suffix(w), []), 0


class Negate(Unary):
    """Negation: `-x` where it allocates."""

    def __init__(self):
        super().__init__("neg")

    def emit(self, a, w, nonneg, entry):
        return (unary_minus(a[0]), None) if w is None else super().emit(a, w, nonneg, entry)


class Square(Unary):
    """x * x: `_foreach_mul(xs, xs)`, `x.square()`."""

    def __init__(self):
        super().__init__("square")

    def run(self, args, dest, nonneg, n):
        x = args[0]
        return _foreach("mul", dest == 0, x, x) if _is_list(x) else None


class Protected(Unary):
    """A function of |x| (sqrt, log): the abs pass is skipped where x is proven >= 0."""

    def run(self, args, dest, nonneg, n):
        x = args[0]
        if not _is_list(x):
            return None
        if nonneg:
            return _foreach(self.name, dest == 0, x)
        return _foreach(self.name, True, _foreach("abs", dest == 0, x))

    def emit(self, a, w, nonneg, entry):
        if nonneg:
            return method(a[0], self.name + _suffix(w), []), 0
        return method(method(a[0], "abs" + _suffix(w), []), self.name + "_", []), 0


class Arithmetic(Kernel):
    """The operators + - * / ** on tensors and Python floats (either side)."""

    def __init__(self, op: str):
        self.op = op
        self.commutative = op in ("add", "mul")

    def run(self, args, dest, nonneg, n):
        a, b = args
        op = self.op
        if _is_list(a) and _is_list(b):
            if dest == 1 and self.commutative:
                return _foreach(op, True, b, a)
            return _foreach(op, dest == 0, a, b)
        if _is_list(a):
            return _foreach(op, dest == 0, a, b)
        if self.commutative:                       # s op x
            return _foreach(op, dest == 1, b, a)
        if op == "sub":                            # s - x = (-x) + s
            return _foreach("add", True, _foreach("neg", dest == 1, b), a)
        if op == "pow":                            # s ** x
            return _foreach("pow", False, a, b)
        return [_rdiv(a, x) for x in b]            # s / x

    def writes(self, dest, tensor):
        if dest is None:
            return None
        if tensor[0] and tensor[1]:
            return dest if dest == 0 or self.commutative else None
        if tensor[0]:
            return 0 if dest == 0 else None
        return 1 if dest == 1 and (self.commutative or self.op == "sub") else None

    def emit(self, a, w, nonneg, entry):
        if w is not None:
            recv, other = a[w], a[1 - w]
            if self.op == "sub" and w == 1:        # s - x in place: -x + s
                return method(method(recv, "neg_", []), "add_", [other]), 1
            return method(recv, self.op + "_", [other]), w
        if self.op == "div" and not a[0].tensor:
            return call(_rdiv, a), None
        return binary(self.op, a[0], a[1]), None


class Extreme(Kernel):
    """Elementwise maximum / minimum (NaN propagates); a scalar side is a clamp."""

    def __init__(self, name: str, clamp: str):
        self.name, self.clamp = name, clamp       # ("maximum", "clamp_min") or ("minimum", "clamp_max")

    def run(self, args, dest, nonneg, n):
        a, b = args
        if _is_list(a) and _is_list(b):
            return _foreach(self.name, True, b, a) if dest == 1 else _foreach(self.name, dest == 0, a, b)
        if _is_list(a):
            return _foreach(self.clamp, dest == 0, a, b)
        return _foreach(self.clamp, dest == 1, b, a)

    def writes(self, dest, tensor):
        if dest is None:
            return None
        if tensor[0] and tensor[1]:
            return dest
        return dest if dest == (0 if tensor[0] else 1) else None

    def emit(self, a, w, nonneg, entry):
        fn = f"torch.{self.name}"
        if a[0].tensor and a[1].tensor:
            if w is None:
                return call(fn, a), None
            x, y = (a[0], a[1]) if w == 0 else (a[1], a[0])    # torch._foreach_maximum_: out= the dead buffer
            return Text(f"{fn}({x.text}, {y.text}, out={x.text})", ATOM, x.root, x.ops + y.ops + 1,
                        needs=x.needs | y.needs), None
        k = 0 if a[0].tensor else 1
        return method(a[k], self.clamp + ("_" if w is not None else ""), [a[1 - k]]), k


class Axpy(Kernel):
    """x + s * y (a fused add)."""

    def run(self, args, dest, nonneg, n):
        x, y, s = args
        return _foreach("add", dest == 0, x, y, alpha=s)

    def writes(self, dest, tensor):
        return 0 if dest == 0 else None

    def emit(self, a, w, nonneg, entry):
        return method(a[0], "add" + _suffix(w), [a[1]], alpha=a[2]), 0


class Addc(Kernel):
    """x + s * y * z (`addcmul`) or x + s * y / z (`addcdiv`)."""

    def __init__(self, name: str):
        self.name = name

    def run(self, args, dest, nonneg, n):
        x, y, z, s = args
        y, z = (y if _is_list(y) else [y] * n), (z if _is_list(z) else [z] * n)
        return _foreach(self.name, dest == 0, x, y, z, value=s)

    def writes(self, dest, tensor):
        return 0 if dest == 0 else None

    def emit(self, a, w, nonneg, entry):
        kw = {} if a[3].text == "1" else {"value": a[3]}
        return method(a[0], self.name + _suffix(w), a[1:3], **kw), 0


class Lerp(Kernel):
    """torch.lerp(a, b, w) when a and b are tensors of one dtype; else `fn` per tensor."""

    def run(self, args, dest, nonneg, n):
        a, b, w = args
        if _is_list(a) and _is_list(b) and a and a[0].dtype == b[0].dtype:
            if not _is_list(w) or all(wi.dtype == ai.dtype for wi, ai in zip(w, a)):
                return _foreach("lerp", dest == 0, a, b, w)
        return None

    def writes(self, dest, tensor):
        return 0 if dest == 0 and tensor[0] and tensor[1] else None

    def emit(self, a, w, nonneg, entry):
        if a[0].tensor and a[1].tensor:
            return (method(a[0], "lerp_", a[1:]), 0) if w == 0 else (call("torch.lerp", a), None)
        return call(entry.fn, a), None


class Select(Kernel):
    """A lazy choice between two arguments by a scalar condition: the taken argument's list itself
    (no copy; the compiler extends the arguments' liveness over the result's). On meta tensors
    (shape discovery, where both branches run) the broadcast of both. The exporter prints it as an
    `if` (`dsl.codegen_tensor`)."""

    def run(self, args, dest, nonneg, n):
        c, x, y = args
        if _is_list(x) and _is_list(y) and x and x[0].device.type == "meta":
            return [torch.empty(_joint_shape(a.shape, b.shape), dtype=torch.promote_types(a.dtype, b.dtype),
                                device="meta") for a, b in zip(x, y)]
        return x if c > 0 else y


def _joint_shape(a, b):
    """The broadcast of two branch shapes (the first where they do not broadcast: the gate then
    reports the branches' shapes)."""
    try:
        return torch.broadcast_shapes(a, b)
    except RuntimeError:
        return a

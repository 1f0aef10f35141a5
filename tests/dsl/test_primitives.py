"""Every primitive against a numpy/torch reference: 0, -0.0, negatives, NaN, inf; float64, float32
and bf16 (dtype preserved); the per-tensor function and the compiled foreach kernel path; scalar
arguments; ensemble axes (bd=1). The tables are keyed by the registry, so a primitive added
without a numpy reference fails `test_every_primitive_has_a_numerics_case` (and the registry walk
in test_primitive_registry.py); SCALAR adds hand-checked scalar values where one is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from primitive_references import EDGE, MILD, REF, SCALAR, SCALAR_ARGS  # noqa: F401

from dsl import parse
from dsl.compiler import compile_route
from dsl.interpreter import execute, specialize
from dsl.primitives import PRIMITIVES

# the matrix and control primitives have their own walk: test_primitives_matrix.py
BASIC = sorted(n for n, p in PRIMITIVES.items() if p.kind not in ("matrix", "control"))


def test_every_primitive_has_a_numerics_case():
    assert set(REF) == set(PRIMITIVES), "a primitive needs a numpy reference in REF"
    assert set(SCALAR) <= set(PRIMITIVES), "a scalar case for a primitive that does not exist"
    for prim in PRIMITIVES.values():
        assert prim.kind in ("elementwise", "reduction", "group", "structure", "matrix", "control")
        assert prim.doc and "\n" not in prim.doc
        assert 1 <= prim.min_args <= prim.max_args <= 3


# -- helpers ------------------------------------------------------------------------------------
def _t(a, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=dtype)


def via_plan(name: str, args: list, *, bd: int = 0) -> list[torch.Tensor]:
    """Run `update = name(args...)` through the compiler and the foreach interpreter.
    Tensor arguments are lists (one tensor per parameter), bound to g, w, h; float arguments go
    through hparams (so NaN/inf can be passed)."""
    slots, tensors, hp = iter(["g", "w", "h"]), {}, {}
    parts = []
    for k, a in enumerate(args):
        if isinstance(a, list):
            s = next(slots)
            tensors[s] = a
        else:
            s = f"s{k}"
            hp[s] = float(a)
        parts.append(s)
    header = f"hparams {' '.join(f'{k}=1' for k in hp)}\n" if hp else ""
    prog = parse(f"{header}update = {name}({', '.join(parts)})")
    plan = compile_route(prog.routes[0], prog.hparams)
    g = tensors["g"]
    spec = specialize(plan, [x.shape for x in g], g[0].dtype, bd=bd, hparams=hp)
    update, _, _ = execute(plan, g=g, w=tensors.get("w"), h=tensors.get("h"), states={}, t=1.0, lr=1.0,
                           hparams=hp, bd=bd, spec=spec)
    return update


def _close(actual: torch.Tensor, ref, rtol=1e-12, atol=0.0):
    ref = np.asarray(ref, dtype=np.float64)
    got = actual.detach().to(torch.float64).numpy()
    assert got.shape == np.broadcast_shapes(got.shape, ref.shape) or got.shape == ref.shape, (got.shape, ref.shape)
    np.testing.assert_allclose(np.broadcast_to(got, np.broadcast_shapes(got.shape, ref.shape)),
                               np.broadcast_to(ref, np.broadcast_shapes(got.shape, ref.shape)),
                               rtol=rtol, atol=atol, equal_nan=True)


def _grid(values: np.ndarray, k: int) -> list[np.ndarray]:
    """All k-tuples of `values`, as k flat arrays."""
    mesh = np.meshgrid(*([values] * k), indexing="ij")
    return [m.ravel() for m in mesh]


def _inputs(name: str, rng: np.random.Generator, edge: np.ndarray) -> tuple[list[np.ndarray], tuple]:
    """Tensor arguments (numpy) and trailing scalar arguments for one primitive."""
    prim = PRIMITIVES[name]
    if prim.kind == "elementwise":
        if name == "lerp":
            a, b = _grid(edge, 2)
            ws = np.array([0.0, 0.3, 0.5, 0.7, 1.0, -1.0, 2.0, np.nan, np.inf])
            n = len(a)
            return [np.repeat(a, len(ws)), np.repeat(b, len(ws)), np.tile(ws, n)], ()
        return _grid(edge, prim.max_args), ()
    shapes = {"global_norm": (6, 4)}
    x = rng.standard_normal(shapes.get(name, (6, 4)))
    if name in ("trust_ratio", "factored") or prim.min_args == 2:
        return [x, rng.standard_normal(x.shape)], SCALAR_ARGS.get(name, ())
    return [x], SCALAR_ARGS.get(name, ())


def _group_call(fn, arrays: list) -> object:
    """A group entry on one tensor per argument (`fn` is a reference or the entry's function)."""
    return fn(*[[a] for a in arrays])


# -- float64 against numpy: the per-tensor function and the compiled kernel path ----------------
@pytest.mark.parametrize("name", BASIC)
def test_matches_numpy_reference_float64(name):
    rng = np.random.default_rng(0)
    prim = PRIMITIVES[name]
    arrays, extra = _inputs(name, rng, EDGE)
    with np.errstate(all="ignore"):
        ref = _group_call(REF[name], arrays) if prim.kind == "group" else REF[name](*arrays, *extra)
    tensors = [_t(a) for a in arrays]
    direct = _group_call(prim.fn, tensors)[0] if prim.kind == "group" else prim.fn(*tensors, *extra, bd=0)
    _close(direct, ref, rtol=1e-12)
    planned = via_plan(name, [[x] for x in tensors] + list(extra))
    _close(planned[0], ref, rtol=1e-12)


@pytest.mark.parametrize("name", BASIC)
def test_kernel_path_over_a_group_of_tensors(name):
    """foreach across tensors of different shapes equals the per-tensor reference, tensor by tensor."""
    rng = np.random.default_rng(1)
    prim = PRIMITIVES[name]
    shapes = [(5, 3), (3, 5), (7,), (2, 3, 4)]
    args = [[_t(rng.standard_normal(s)) for s in shapes] for _ in range(prim.min_args if name != "factored" else 2)]
    extra = list(SCALAR_ARGS.get(name, ()))
    out = via_plan(name, args + extra)
    assert len(out) == len(shapes)
    for i in range(len(shapes)):
        with np.errstate(all="ignore"):
            if prim.kind == "group":
                ref = REF[name](*[[x.numpy() for x in a] for a in args])
            else:
                ref = REF[name](*[a[i].numpy() for a in args], *extra)
        _close(out[i], ref, rtol=1e-12)


BINARY_ELEMENTWISE = sorted(n for n, p in PRIMITIVES.items() if p.max_args >= 2 and p.kind == "elementwise")


@pytest.mark.parametrize("name", BINARY_ELEMENTWISE)
@pytest.mark.parametrize("position", [0, 1])
def test_scalar_operand_on_either_side(name, position):
    """max(g, s) / max(s, g) etc. take foreach scalar paths (clamp_min, ...): NaN and inf included."""
    prim = PRIMITIVES[name]
    x = _t(MILD)
    for s in (0.5, -2.0, 0.0, math.inf, -math.inf, math.nan):
        args: list = [[x]] * prim.max_args
        args = list(args)
        args[position] = s
        ref_args = [MILD if isinstance(a, list) else np.float64(a) for a in args]
        with np.errstate(all="ignore"):
            ref = REF[name](*ref_args)
        _close(via_plan(name, args)[0], ref, rtol=1e-12)


def _scalar_case(name: str) -> tuple[tuple, float]:
    """The hand-checked case in SCALAR, else arguments (-0.7, 1.5, 0.25) and the numpy reference."""
    if name in SCALAR:
        return SCALAR[name]
    args = (-0.7, 1.5, 0.25)[: PRIMITIVES[name].min_args]
    floats = [np.float64(a) for a in args]
    ref = _group_call(REF[name], floats) if PRIMITIVES[name].kind == "group" else REF[name](*floats)
    return args, float(ref)


@pytest.mark.parametrize("name", BASIC)
def test_all_scalar_arguments_use_the_scalar_path(name):
    args, expected = _scalar_case(name)
    hp = " ".join(f"s{k}={v!r}" for k, v in enumerate(args))
    prog = parse(f"hparams {hp}\nupdate = g * 0 + {name}({', '.join(f's{k}' for k in range(len(args)))})")
    plan = compile_route(prog.routes[0], prog.hparams)
    assert plan.scalar_instrs and plan.scalar_instrs[-1].op in (name, "pow")   # pow(x, y) lowers to |x| ** y
    assert [i.op for i in plan.tensor_instrs] in (["mul", "add"], ["axpy"])
    g = [torch.zeros(3, dtype=torch.float64)]
    spec = specialize(plan, [g[0].shape], torch.float64, hparams=prog.hparams)
    update, _, _ = execute(plan, g=g, w=g, h=None, states={}, t=1.0, lr=1.0, hparams=prog.hparams, spec=spec)
    assert update[0].tolist() == pytest.approx([expected] * 3, rel=1e-12)


# -- dtypes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 2e-6), (torch.bfloat16, 2 ** -7)])
@pytest.mark.parametrize("name", BASIC)
def test_dtype_is_preserved_and_values_match(name, dtype, rtol):
    rng = np.random.default_rng(2)
    prim = PRIMITIVES[name]
    arrays, extra = _inputs(name, rng, MILD)
    tensors = [_t(a, dtype) for a in arrays]
    rounded = [x.to(torch.float64).numpy() for x in tensors]     # the reference sees the same inputs
    with np.errstate(all="ignore"):
        ref = _group_call(REF[name], rounded) if prim.kind == "group" else REF[name](*rounded, *extra)
    direct = _group_call(prim.fn, tensors)[0] if prim.kind == "group" else prim.fn(*tensors, *extra, bd=0)
    planned = via_plan(name, [[x] for x in tensors] + list(extra))[0]
    for out in (direct, planned):
        assert out.dtype == dtype, name
        if name == "orthogonalize":   # Newton-Schulz runs in bf16 for both: a few % from float64
            err = np.linalg.norm(out.double().numpy() - ref) / np.linalg.norm(ref)
            assert err < 0.08, err
        else:
            _close(out, ref, rtol=rtol, atol=1e-6 if dtype == torch.float32 else 1e-3)


# -- ensemble axes: bd=1 equals each member on its own -------------------------------------------
@pytest.mark.parametrize("member_shape", [(6, 4), (4, 6), (5,), (3, 2, 4)])
@pytest.mark.parametrize("name", BASIC)
def test_batch_dims_equal_per_member(name, member_shape):
    E = 3
    gen = torch.Generator().manual_seed(3)
    prim = PRIMITIVES[name]
    n_tensor = 2 if name in ("trust_ratio", "factored") else prim.min_args
    stacked = [torch.randn((E,) + member_shape, generator=gen, dtype=torch.float64) for _ in range(n_tensor)]
    if name == "trust_ratio":
        stacked[1][1].zero_()              # a member whose update is zero takes the guard
    extra = SCALAR_ARGS.get(name, ())
    if prim.kind == "group":
        other = [torch.randn((E, 2), generator=gen, dtype=torch.float64) for _ in stacked]
        got = prim.fn(*[[s, o] for s, o in zip(stacked, other)], bd=1)[0]
        want = [prim.fn(*[[s[i], o[i]] for s, o in zip(stacked, other)], bd=0)[0] for i in range(E)]
    else:
        got = prim.fn(*stacked, *extra, bd=1)
        want = [prim.fn(*[s[i] for s in stacked], *extra, bd=0) for i in range(E)]
    assert got.dim() in (0, len(member_shape) + 1)
    for i in range(E):
        member = got[i] if got.dim() else got
        torch.testing.assert_close(member.expand(member_shape) if member.dim() < len(member_shape) + 1 else member,
                                   want[i].expand(member_shape), rtol=1e-12, atol=1e-14)
    group = [[s, o] for s, o in zip(stacked, other)] if prim.kind == "group" else [[s] for s in stacked]
    planned = via_plan(name, group + list(extra), bd=1)[0]
    torch.testing.assert_close(planned.expand_as(stacked[0]), got.expand_as(stacked[0]), rtol=1e-12, atol=1e-14)


# -- edge-case semantics, one table ------------------------------------------------------------
NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("expr, x, expected", [
    ("sign(g)", [0.0, -0.0, NAN, -INF, 3.0], [0.0, 0.0, 0.0, -1.0, 1.0]),
    ("sqrt(g)", [-4.0, 0.0, NAN, -INF], [2.0, 0.0, NAN, INF]),
    ("sqrt(g * g)", [-4.0, 0.0, NAN, -INF], [4.0, 0.0, NAN, INF]),      # nonneg argument: no abs pass
    ("rsqrt(g)", [-4.0, 0.0, -0.0, INF], [0.5, INF, INF, 0.0]),
    ("log(g)", [-1.0, 0.0, NAN, -INF], [0.0, -INF, NAN, INF]),
    ("pow(g, 3)", [-2.0, 0.0, NAN, -INF], [8.0, 0.0, NAN, INF]),
    ("pow(g, 0.5)", [-4.0, 0.0, -0.0, 9.0], [2.0, 0.0, 0.0, 3.0]),
    ("pow(g, -1)", [-4.0, 0.0, -0.0, NAN], [0.25, INF, INF, NAN]),
    ("sqrt(g ** 3)", [-4.0, 1.0], [8.0, 1.0]),                            # `**` is plain: (-4)**3 < 0
    ("g ** 3", [-2.0, 0.5], [-8.0, 0.125]),
    ("g ** 0.5", [-4.0, 4.0], [NAN, 2.0]),
    ("exp(g)", [-INF, 0.0, 1000.0, NAN], [0.0, 1.0, INF, NAN]),
    ("tanh(g)", [-INF, INF, NAN, 0.0], [-1.0, 1.0, NAN, 0.0]),
    ("clip(g, 2)", [-3.0, 3.0, NAN, -INF, 1.0], [-2.0, 2.0, NAN, -2.0, 1.0]),
    ("clip(g, -2)", [-3.0, 3.0, 1.0], [-2.0, 2.0, 1.0]),
    ("clip(g, 0)", [-3.0, 3.0], [0.0, 0.0]),
    ("max(g, 0)", [-1.0, NAN, 2.0], [0.0, NAN, 2.0]),
    ("min(g, 0)", [-1.0, NAN, 2.0], [-1.0, NAN, 0.0]),
    ("max(0, g)", [-1.0, NAN, 2.0], [0.0, NAN, 2.0]),
    ("lerp(g, 1, 0.25)", [0.0, NAN, 5.0], [0.25, NAN, 4.0]),
    ("norm(g) + g * 0", [3.0, -4.0], [5.0, 5.0]),
    ("norm(g) + g * 0", [3.0, NAN], [NAN, NAN]),
    ("norm(g) + g * 0", [3.0, -INF], [INF, NAN]),
    ("maxabs(g) + g * 0", [3.0, -4.0, 0.0], [4.0, 4.0, 4.0]),
    ("maxabs(g) + g * 0", [3.0, NAN], [NAN, NAN]),
    ("mean(g) + g * 0", [INF, -INF], [NAN, NAN]),
    ("rms(g) + g * 0", [3.0, -4.0], [5 / math.sqrt(2)] * 2),
    ("normalize(g)", [0.0, 0.0], [0.0, 0.0]),
    ("normalize(g)", [3.0, -4.0], [0.6, -0.8]),
    ("normalize(g)", [3.0, NAN], [NAN, NAN]),
    ("trust_ratio(g, w)", [3.0, 4.0], [5.0 / 2.0] * 2),     # w = [0, 2]
    ("g / 0", [1.0, -1.0, 0.0], [INF, -INF, NAN]),
    ("1 / g", [0.0, -0.0, 2.0], [INF, -INF, 0.5]),
    ("2 - g", [0.5, INF], [1.5, -INF]),
    ("0 ** g + g * 0", [-1.0, 0.0, 1.0], [INF, 1.0, 0.0]),
])
def test_edge_semantics(expr, x, expected):
    g = _t(x)
    w = _t([0.0, 2.0] + [1.0] * (len(x) - 2))
    prog = parse(f"update = {expr}")
    plan = compile_route(prog.routes[0], {})
    spec = specialize(plan, [g.shape], torch.float64, hparams={})
    out, _, _ = execute(plan, g=[g], w=[w], h=None, states={}, t=1.0, lr=1.0, hparams={}, spec=spec)
    _close(out[0].expand(g.shape), expected, rtol=1e-14)


def test_trust_ratio_zero_and_nan_guards():
    z, v = torch.zeros(4, dtype=torch.float64), torch.arange(1.0, 5.0, dtype=torch.float64)
    tr = PRIMITIVES["trust_ratio"].fn
    assert tr(z, v).item() == 1.0          # ||w|| = 0: LAMB leaves the update unscaled
    assert tr(v, z).item() == 1.0          # ||u|| = 0
    assert tr(z, z).item() == 1.0
    assert tr(v, 2 * v).item() == pytest.approx(0.5, rel=1e-15)
    assert tr(v * NAN, v).item() == 1.0    # as timm's LAMB: torch.where(norm > 0, ...) sends NaN to 1
    assert tr(v * INF, v).item() == INF
    assert tr(2.0, -4.0).item() == 0.5     # scalars are tensors' norms too
    # bd=1: each member has its own guard
    W = torch.stack([v, z, v])
    U = torch.stack([2 * v, v, z])
    torch.testing.assert_close(tr(W, U, bd=1).flatten(), torch.tensor([0.5, 1.0, 1.0], dtype=torch.float64))


def test_global_norm_equals_clip_grad_norm_total():
    gen = torch.Generator().manual_seed(4)
    grads = [torch.randn(s, generator=gen, dtype=torch.float64) * k for k, s in enumerate([(8, 3), (5,), (2, 3, 4)], 1)]
    params = [torch.nn.Parameter(torch.zeros_like(x)) for x in grads]
    for p, x in zip(params, grads):
        p.grad = x.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm=math.inf)
    ours = PRIMITIVES["global_norm"].fn(grads, 0)
    assert len(ours) == 3 and all(torch.equal(o, ours[0]) for o in ours)
    torch.testing.assert_close(ours[0], total, rtol=1e-14, atol=0)
    planned = via_plan("global_norm", [grads])
    for o in planned:
        torch.testing.assert_close(o, total, rtol=1e-14, atol=0)
    # the rule form of gradient clipping: scale by min(1, c / global_norm) matches clip_grad_norm_
    for p, x in zip(params, grads):
        p.grad = x.clone()
    torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
    clipped = via_plan("min", [[torch.ones_like(x) for x in grads], [1.0 / (total + 1e-6)] * 3])
    for p, x, s in zip(params, grads, clipped):
        torch.testing.assert_close(p.grad, x * s, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4)])
def test_reductions_of_an_empty_parameter(shape):
    """An empty tensor in a group must not break the group: max |x| of nothing is 0, the norm 0."""
    x = torch.zeros(shape, dtype=torch.float64)
    assert PRIMITIVES["maxabs"].fn(x).item() == 0.0
    assert PRIMITIVES["norm"].fn(x).item() == 0.0
    assert PRIMITIVES["maxabs"].fn(torch.zeros((2,) + shape), bd=1).flatten().tolist() == [0.0, 0.0]
    out = via_plan("maxabs", [[x, torch.tensor([-3.0, 2.0], dtype=torch.float64)]])
    assert [o.item() for o in out] == [0.0, 3.0]

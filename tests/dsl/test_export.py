"""Exported optimizers (`dsl.export`): for every builtin the standalone class steps exactly as
ProgramOptimizer, round-trips its state_dict mid-run, imports only torch and the standard library;
groups, schedulers, closures, routes, low precision, validation, every primitive, hostile names and
docs, and torch.compile (a compiled training step, and the fused path) are checked on small cases."""

from __future__ import annotations

import ast
import copy
import io
import math
import sys

import pytest
import torch
from export_support import exported_class, exported_module, max_diff, params, run_side_by_side
from matrix_references import USES
from torch import nn

from dsl import ProgramOptimizer, RuleError, builtin_names, load_rule, parse, to_text
from dsl.export import export_source
from dsl.primitives import PRIMITIVES

BUILTINS = builtin_names()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is faster, and immune to OpenMP contention on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- every builtin: same trajectory, state_dict round trip, self-contained file -----------------
@pytest.mark.parametrize("name", BUILTINS)
def test_trajectory_equals_program_optimizer(name):
    a, b, _, _ = run_side_by_side(f"builtin:{name}", steps=35)
    assert max_diff(a, b) <= 1e-12
    assert max_diff(a, params()) > 1e-7          # the parameters moved (Prodigy, d0 = 1e-6, moves least)


@pytest.mark.parametrize("name", BUILTINS)
def test_a_group_at_lr_0_steps_as_in_program_optimizer(name):
    """A frozen group (or warmup from zero): scalars like 1 / (lr * sqrt(t)) are inf, not an error."""
    a, b = params(), params()
    opt_a = ProgramOptimizer([{"params": a[:2], "lr": 0.0}, {"params": a[2:]}], f"builtin:{name}", lr=0.01)
    opt_b = exported_class(f"builtin:{name}")([{"params": b[:2], "lr": 0.0}, {"params": b[2:]}], lr=0.01)
    gen = torch.Generator().manual_seed(9)
    for _ in range(4):
        for x, y in zip(a, b):
            x.grad = torch.randn(x.shape, generator=gen, dtype=torch.float64)
            y.grad = x.grad.clone()
        opt_a.step()
        opt_b.step()
        if load_rule(f"builtin:{name}").reads_curvature:
            opt_a.update_curvature({p: p.grad.abs() for p in a})
            opt_b.update_curvature({p: p.grad.abs() for p in b})
    assert max_diff(a, b) <= 1e-12 and max_diff(a[:2], params()[:2]) == 0.0    # lr = 0: frozen


def test_integer_hparams_stay_integers_in_the_signature():
    source = exported_module("builtin:muon").__source__
    assert "ns_steps=5," in source and "momentum=0.95" in source and "ns_steps=5.0" not in source
    assert "d=1.0," in exported_module("builtin:adafactor").__source__        # written as a float: a float
    cls = exported_class("builtin:muon")
    for steps in (3, 3.0):                                                   # either kind is accepted
        assert cls(params(), ns_steps=steps).defaults["ns_steps"] == steps
    with pytest.raises(ValueError, match="ns_steps"):
        cls(params(), ns_steps=True)


@pytest.mark.parametrize("name", BUILTINS)
def test_empty_parameters_step_as_in_program_optimizer(name):
    a, b, _, opt = run_side_by_side(f"builtin:{name}", steps=3, shapes=((0, 4), (3, 0), (5,)))
    assert max_diff(a, b) <= 1e-12 and opt.state[b[0]]["step"] == 3


@pytest.mark.parametrize("name", BUILTINS)
def test_state_dict_round_trip_mid_run(name):
    rule = f"builtin:{name}"
    cls = exported_class(rule)
    gen = torch.Generator().manual_seed(5)
    grads = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in ((6, 4), (5,), (3, 2, 3, 3))]
             for _ in range(60)]
    reads_h = load_rule(rule).reads_curvature

    def steps(ps, opt, lo, hi):
        for k in range(lo, hi):
            for p, g in zip(ps, grads[k]):
                p.grad = g.clone()
            opt.step()
            if reads_h:
                opt.update_curvature({p: g.abs() for p, g in zip(ps, grads[k])})

    full = params(shapes=((6, 4), (5,), (3, 2, 3, 3)))
    opt = cls(full, lr=0.01)
    steps(full, opt, 0, 50)
    buffer = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in full], "opt": opt.state_dict()}, buffer)
    steps(full, opt, 50, 60)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed = [nn.Parameter(p) for p in saved["params"]]
    fresh = cls(resumed, lr=0.01)
    fresh.load_state_dict(saved["opt"])
    assert fresh.state[resumed[0]]["step"] == 50
    steps(resumed, fresh, 50, 60)
    assert max_diff(full, resumed) == 0.0


@pytest.mark.parametrize("name", BUILTINS)
def test_exported_file_imports_only_torch_and_the_standard_library(name):
    source = exported_module(f"builtin:{name}").__source__
    tree = ast.parse(source)
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    assert "torch" in modules
    assert modules - {"torch", "__future__"} <= set(sys.stdlib_module_names)
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"eval", "exec", "compile", "__import__"}
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert len(classes) == 1 and classes[0].name == "Exported"


def test_docstring_carries_rule_text_hash_and_provenance():
    rule = load_rule("builtin:lion")
    module = exported_module("builtin:lion", "Lion", {"source": "runs/demo/winners/lion.opt", "fitness": 0.9312})
    doc = module.__doc__
    for line in to_text(rule, doc=False).splitlines():
        assert f"    {line}" in doc
    assert rule.structural_hash in doc
    assert "source: runs/demo/winners/lion.opt" in doc and "fitness: 0.9312" in doc
    assert rule.doc.splitlines()[0] in doc


# -- torch.optim behaviour ------------------------------------------------------------------------
def _mlp(seed: int = 0, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def _batch(dtype=torch.float64):
    gen = torch.Generator().manual_seed(7)
    return torch.randn(32, 6, generator=gen, dtype=dtype), torch.randn(32, 3, generator=gen, dtype=dtype)


def _train(model, opt, steps, scheduler=None):
    x, y = _batch(next(model.parameters()).dtype)
    losses = []
    for _ in range(steps):
        def closure():
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss
        losses.append(opt.step(closure).item())
        if scheduler is not None:
            scheduler.step()
    return losses


def test_exported_adamw_matches_torch_adamw():
    ref_model, our_model = _mlp(), _mlp()
    ref = torch.optim.AdamW(ref_model.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1)
    ours = exported_class("builtin:adamw")(our_model.parameters(), lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-7, wd=0.1)
    _train(ref_model, ref, 100)
    our_losses = _train(our_model, ours, 100)
    assert our_losses[-1] < 0.7 * our_losses[0]
    assert max_diff(ref_model.parameters(), our_model.parameters()) <= 1e-12


def test_parameters_without_gradients_are_skipped_and_sparse_ones_refused():
    a, b = params(shapes=((3, 2), (4,)))
    opt = exported_class("builtin:adam")([a, b], lr=0.1)
    a.grad = torch.ones_like(a)
    opt.step()
    assert opt.state[a]["step"] == 1 and b not in opt.state
    a.grad = torch.ones_like(a).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_closure_loss_is_returned():
    model = _mlp()
    opt = exported_class("builtin:adam")(model.parameters(), lr=1e-2)
    x, y = _batch()

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0 and opt.state[model[0].weight]["step"] == 1
    assert opt.step() is None


def _groups(model):
    return [{"params": list(model[0].parameters()), "lr": 0.03, "wd": 0.3},
            {"params": list(model[2].parameters())}]


def test_two_param_groups_with_their_own_lr_and_weight_decay():
    m_ref, m_ours, m_plain = _mlp(), _mlp(), _mlp()
    ref = ProgramOptimizer(_groups(m_ref), "builtin:adamw", lr=1e-2, wd=0.01)
    ours = exported_class("builtin:adamw")(_groups(m_ours), lr=1e-2, wd=0.01)
    assert ours.param_groups[0]["wd"] == 0.3 and ours.param_groups[1]["wd"] == 0.01
    _train(m_ref, ref, 30)
    _train(m_ours, ours, 30)
    _train(m_plain, exported_class("builtin:adamw")(m_plain.parameters(), lr=1e-2, wd=0.01), 30)
    assert max_diff(m_ref.parameters(), m_ours.parameters()) <= 1e-12
    assert max_diff(m_ours[0].parameters(), m_plain[0].parameters()) > 1e-3     # the group's own settings acted


def test_lr_scheduler_drives_the_exported_class():
    m_ref, m_ours = _mlp(), _mlp()
    ref = ProgramOptimizer(m_ref.parameters(), "builtin:lion", lr=3e-3)
    ours = exported_class("builtin:lion")(m_ours.parameters(), lr=3e-3)

    def decay(opt):
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=40, cycle_momentum=False)

    s_ref, s_ours = decay(ref), decay(ours)
    _train(m_ref, ref, 40, s_ref)
    _train(m_ours, ours, 40, s_ours)
    assert ours.param_groups[0]["lr"] < 1e-4 and s_ours.get_last_lr() == s_ref.get_last_lr()
    assert max_diff(m_ref.parameters(), m_ours.parameters()) <= 1e-12


def test_routes_by_shape_and_per_group_override():
    cls = exported_class("builtin:muon")
    model, ref_model = _mlp(), _mlp()

    def groups(m):
        return [{"params": [m[0].weight, m[0].bias]}, {"params": [m[2].weight, m[2].bias], "route": "default"}]

    ours = cls(groups(model), lr=0.02)
    ref = ProgramOptimizer(groups(ref_model), "builtin:muon", lr=0.02)
    _train(model, ours, 20)
    _train(ref_model, ref, 20)
    assert max_diff(model.parameters(), ref_model.parameters()) <= 1e-12
    assert set(ours.state[model[0].weight]) == {"step", "m"}              # matrix route
    assert set(ours.state[model[0].bias]) == {"step", "m", "v"}           # vectors: default route
    assert set(ours.state[model[2].weight]) == {"step", "m", "v"}         # overridden to default
    with pytest.raises(ValueError, match="route"):
        cls([{"params": [model[0].weight], "route": "diagonal"}])


def test_low_precision_parameters_step_in_float32_with_float32_state():
    shapes = ((6, 4), (5,))
    a, b, _, opt_b = run_side_by_side("builtin:adamw", steps=10, dtype=torch.bfloat16, shapes=shapes)
    assert all(p.dtype == torch.bfloat16 for p in b)
    assert max_diff(a, b) == 0.0
    assert opt_b.state[b[0]]["m"].dtype == torch.float32
    again = exported_class("builtin:adamw")([nn.Parameter(p.detach().clone()) for p in b], lr=0.01)
    again.load_state_dict(copy.deepcopy(opt_b.state_dict()))
    assert again.state[again.param_groups[0]["params"][0]]["v"].dtype == torch.float32


@pytest.mark.parametrize("kwargs, name", [
    ({"lr": -1.0}, "lr"), ({"lr": math.nan}, "lr"), ({"lr": "0.1"}, "lr"), ({"beta1": math.inf}, "beta1"),
    ({"beta2": True}, "beta2"), ({"eps": None}, "eps"), ({"wd": "0"}, "wd"), ({"fused": "yes"}, "fused")])
def test_invalid_hparams_raise_value_error_naming_them(kwargs, name):
    cls = exported_class("builtin:adamw")
    with pytest.raises(ValueError, match=name):
        cls(params(), **kwargs)


def test_an_invalid_group_override_raises_value_error():
    cls = exported_class("builtin:adamw")
    with pytest.raises(ValueError, match="beta1"):
        cls([{"params": params()[:1]}, {"params": params(2)[:1], "beta1": math.nan}])
    with pytest.raises(TypeError):
        cls(params(), momentum=0.9)                     # not one of this rule's hparams


def test_export_refuses_bad_class_names_and_names_it_needs_itself():
    rule = load_rule("builtin:adam")
    for bad in ("1x", "class", "my-opt", "", "_Private", "torch"):
        with pytest.raises(ValueError, match="class name"):
            export_source(rule, class_name=bad)
    with pytest.raises(RuleError, match="params"):
        export_source(parse("hparams params=1\nupdate = params * g\n"))


# -- every primitive, in tensor and scalar positions ---------------------------------------------
def _primitive_rules():
    tensors = ["g - 0.5 * m", "m + 0.1 * w", "0.25"]
    scalar = "beta + 1 / t"
    for name, prim in PRIMITIVES.items():
        if name in USES:                   # matrix and control primitives: their parameter-shaped use
            yield name, "use", f"update = {USES[name]} + 0.5 * m"
            n = prim.max_args
            yield name, "all scalar", f"update = g * {name}({', '.join([scalar, '0.5 * beta', '0.3'][:n])}) + m"
            continue
        for n in sorted({prim.min_args, prim.max_args}):
            args = tensors[:n] if name != "lerp" else ["m", "g", "0.25"]
            if name == "orthogonalize" and n == 2:
                args = ["g - 0.5 * m", "3"]
            yield name, "tensor", f"update = {name}({', '.join(args)}) + 0.01 * w"
            if n >= 2 and prim.kind != "group":     # a group reduction of a number is refused
                yield name, "scalar last", f"update = {name}({', '.join(args[:-1] + [scalar])}) + 0.01 * g"
                if name != "orthogonalize":
                    yield name, "scalar first", f"update = {name}({', '.join([scalar] + args[1:])}) + 0.01 * g"
            yield name, "all scalar", f"update = g * {name}({', '.join([scalar, '0.5 * beta', '0.3'][:n])}) + m"


@pytest.mark.parametrize("name, where, line", list(_primitive_rules()),
                         ids=[f"{n}-{w}" for n, w, _ in _primitive_rules()])
def test_every_primitive_exports_with_the_interpreters_numerics(name, where, line):
    program = parse(f"hparams beta=0.7\nm = lerp(m, g, 0.2)\n{line}\n", name=f"{name}_{where}".replace(" ", "_"))
    a, b, _, _ = run_side_by_side(program, steps=4)
    for x, y in zip(a, b):
        torch.testing.assert_close(y.detach(), x.detach(), rtol=0, atol=1e-12, equal_nan=True)


HOSTILE = '''# He said "stop" \\ and """ then \x07 left
hparams math=0.9 group=0.5 defaults_=1
torch = lerp(torch, g, 1 - math)
p = torch * group
_x = p + g
match = sign(_x) + w * defaults_
float = sqrt(abs(match))
update = float + 0.1 * match
'''


def test_hostile_names_and_doc_are_escaped_and_renamed():
    program = parse(HOSTILE, name="hostile")
    module = exported_module(program, "Hostile")
    assert 'He said "stop" \\ and """ then \x07 left' in module.__doc__
    a, b, _, _ = run_side_by_side(program, steps=10)
    assert max_diff(a, b) <= 1e-12
    opt = module.Hostile(params(), math=0.5, group=1.0)
    assert opt.defaults["math"] == 0.5


def test_a_whole_group_reduction_splits_the_update_into_phases():
    program = parse("m = lerp(m, g / global_norm(g), 0.1)\nupdate = m / global_norm(m + w) + 0.1 * m\n",
                    name="phased")
    source = exported_module(program).__source__
    assert "def _update_1(" in source and "def _update_2(" in source and "_global_norm(" in source
    a, b, _, _ = run_side_by_side(program, steps=12)
    assert max_diff(a, b) <= 1e-12


# -- torch.compile --------------------------------------------------------------------------------
def test_compiled_training_step_matches_eager_and_stops_recompiling():
    import torch._dynamo

    torch._dynamo.reset()
    cls = exported_class("builtin:adamw")
    eager_model, compiled_model = _mlp(dtype=torch.float32), _mlp(dtype=torch.float32)
    x, y = _batch(torch.float32)
    runs = []
    for model, compile_it in ((eager_model, False), (compiled_model, True)):
        opt = cls(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.8)

        def train_step(model=model, opt=opt):
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss

        step = torch.compile(train_step, backend="aot_eager") if compile_it else train_step
        graphs = []
        for _ in range(8):
            step()
            sched.step()
            graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        runs.append(graphs)
    assert runs[1][3] == runs[1][-1]                     # nothing compiled after the third step
    assert max_diff(eager_model.parameters(), compiled_model.parameters()) <= 1e-6


def test_fused_path_matches_eager():
    cls = exported_class("builtin:adamw")
    shapes = ((16, 8), (8,))
    eager, fused = params(dtype=torch.float32, shapes=shapes), params(dtype=torch.float32, shapes=shapes)
    opt_e, opt_f = cls(eager, lr=1e-2), cls(fused, lr=1e-2, fused=True)
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        for p, q in zip(eager, fused):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        opt_e.step()
        opt_f.step()
    assert max_diff(eager, fused) <= 1e-6
    assert opt_f.state[fused[0]]["step"] == 4


def test_long_returns_and_signatures_wrap_inside_parentheses():
    """A `return a, b, ...` too long for one line breaks inside parentheses (unparenthesised it was
    an IndentationError in the exported file, as MARS's seven states once made it)."""
    names = [f"moment_estimate_of_order_{k}" for k in range(9)]
    body = "\n".join(f"{n} = lerp({n}, g, {0.1 * (k + 1):.1f})" for k, n in enumerate(names))
    program = parse(body + "\nupdate = " + " + ".join(names) + "\n", name="many_states")
    source = exported_module(program).__source__
    assert any(line.strip().startswith("return (") for line in source.splitlines())
    a, b, _, _ = run_side_by_side(program, steps=3)
    assert max_diff(a, b) == 0.0


def test_a_scalar_name_assigned_twice_keeps_both_values():
    """`mu = ...` then `mu = mu + mu` are two coefficients: the exported coefficient function names
    them apart (it once returned the second for both; found by the differential fuzz)."""
    program = parse("hparams beta1=0.9\nmu = beta1 * (1 - 0.5 * 0.96 ** t)\nmp = (mp + 1) * mu\n"
                    "mu = mu + mu\nupdate = (1 - mu) / (1 - mp) * g\n", name="twice")
    a, b, _, _ = run_side_by_side(program, steps=3)
    assert max_diff(a, b) == 0.0

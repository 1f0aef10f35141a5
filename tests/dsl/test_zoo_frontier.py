"""The frontier builtins match their reference packages numerically, through the interpreter and
through the exported class (and, for a rule with an evaluation point, at it too: after eval()).

Each case of `frontier_references.FRONTIER_CASES` runs 100 steps on the zoo's two problems
(`test_zoo_reference.PROBLEMS`: random gradients on a vector, tall and wide matrices and a 4-D
filter; a small conv + MLP network whose gradients are taken at the reference's weights) from the
same initial weights, with three optimizers side by side: the reference package's class,
`ProgramOptimizer` and the class that `dsl.export.export_source` prints. Max |delta theta| after
100 steps (weights of order 1): at most 1e-12 in float64 and 1e-5 in float32 (measured: about
1e-14 and 4e-6; the float32 gap is rounding order, `w - lr*(u + wd*w)` against the packages'
`w*(1 - lr*wd) - lr*u`), except where a case states its own bound (`FrontierCase.tol`, each
explained in the rule file and the table): Shampoo and Prodigy in float32 (5e-5: eigh of float32
factors; d kept in float32 copies), SOAP's reference as shipped in float64 (1e-6: its QR rounds
to float32). The exported class equals `ProgramOptimizer` to 1e-12 in both dtypes.

Beyond the trajectory: the hparams reach every branch of the rules that have branches (ADOPT's
clip and eps floor, MARS's norm clip, Shampoo's Adam phase and refreshes, SOAP's first step and QR
refreshes, Schedule-Free's warmup, Prodigy's growing d), a deliberately wrong hparam fails the
comparison, a frozen param group (lr = 0) and a warmup from lr = 0 under an LR scheduler match the
reference, and a state_dict saved mid-run resumes identically.
"""

from __future__ import annotations

import io

import pytest
import test_zoo_reference as zoo
import torch
from export_support import exported_class
from frontier_references import FRONTIER_CASES, FrontierCase
from zoo_references import one_thread  # noqa: F401  (autouse fixture)

from dsl import ProgramOptimizer, load_rule

STEPS = zoo.STEPS
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
EXPORT_TOL = 1e-12
CASES = {case.id: case for case in FRONTIER_CASES}


def _optimizers(case: FrontierCase, init: list[torch.Tensor], lr: float, groups=None):
    """Reference, ProgramOptimizer and exported class over three copies of `init`."""
    params = [[p.clone() for p in init] for _ in range(3)]
    make = groups or case.groups
    ref = case.reference(params[0], lr)
    ours = ProgramOptimizer(make(params[1], lr), f"builtin:{case.rule}", lr=lr, **case.hparams)
    exported = exported_class(f"builtin:{case.rule}")(make(params[2], lr), lr=lr, **case.hparams)
    return params, (ref, ours, exported)


def _step_all(params, opts, grads) -> None:
    for ps in params:
        for p, g in zip(ps, grads):
            p.grad = g.clone()
    for opt in opts:
        opt.step()


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a, b))


def run_case(case: FrontierCase, problem: str, dtype: torch.dtype, steps: int = STEPS,
             probe_hits: set | None = None) -> tuple[float, float]:
    """(max |theta_ours - theta_ref|, max |theta_exported - theta_ours|) after `steps` steps."""
    with zoo.default_dtype(dtype):
        prob = zoo.PROBLEMS[problem](dtype)
        params, opts = _optimizers(case, prob.init, case.lr)
        for k in range(steps):
            grads = prob.grads(k, params[0])
            if probe_hits is not None and case.probe:
                probe_hits |= case.probe(opts[0], params[0], grads)
            _step_all(params, opts, grads)
        for p in [q for ps in params for q in ps]:
            assert torch.isfinite(p).all()
        moved = _max_diff(params[0], prob.init)
        assert moved > 1e3 * TOL[torch.float32], f"{case.id}: the reference barely moved ({moved:.2e})"
        err, export_err = _max_diff(params[1], params[0]), _max_diff(params[2], params[1])
        if load_rule(f"builtin:{case.rule}").has_eval_point:       # and at the evaluation point
            for opt in opts:
                opt.eval()
            err = max(err, _max_diff(params[1], params[0]))
            export_err = max(export_err, _max_diff(params[2], params[1]))
            assert _max_diff(params[0], prob.init) > 1e3 * TOL[torch.float32]
        return err, export_err


PARAMS = [pytest.param(case, problem, dtype, id=f"{case.id}-{problem}-{str(dtype)[6:]}")
          for case in FRONTIER_CASES for dtype in case.dtypes for problem in case.problems]


def tolerance(case: FrontierCase, dtype: torch.dtype) -> float:
    return case.tol.get(dtype, TOL[dtype])


@pytest.mark.parametrize("case,problem,dtype", PARAMS)
def test_matches_reference(case: FrontierCase, problem: str, dtype: torch.dtype):
    err, export_err = run_case(case, problem, dtype)
    assert err <= tolerance(case, dtype), f"{case.id} on {problem} in {dtype}: max |dtheta| = {err:.3e}"
    assert export_err <= EXPORT_TOL, f"{case.id}: exported class vs ProgramOptimizer {export_err:.3e}"


@pytest.mark.parametrize("case", [c for c in FRONTIER_CASES if c.probe], ids=lambda c: c.id)
def test_hparams_reach_every_branch(case: FrontierCase):
    hits: set[str] = set()
    for problem in case.problems:
        run_case(case, problem, torch.float64, probe_hits=hits)
    assert hits >= case.branches, sorted(case.branches - hits)


@pytest.mark.parametrize("case_id,wrong,problem", [
    ("ademamix-T40", dict(alpha=2.5), "random"),
    ("ademamix-T40", dict(t_alpha_beta3=50), "random"),
    ("adopt", dict(eps=0.02), "network"),               # the eps floor acts on the network
    ("cautious-adamw", dict(beta1=0.85), "random"),
    ("cautious-lion", dict(beta1=0.85), "random"),
    ("mars", dict(gamma=0.04), "random"),
    ("mars", dict(beta2_1d=0.95), "random"),
    ("shampoo-start10-eps1e-06", dict(momentum=0.7), "random"),
    ("shampoo-start10-eps1e-06", dict(start=15), "network"),
    ("soap", dict(shampoo_beta=0.95), "random"),
    ("soap", dict(freq=6), "network"),
    ("schedule-free-adamw", dict(r=0.0), "random"),
    ("prodigy", dict(d0=2e-4), "random"),
    ("muon-moonlight", dict(momentum=0.8), "random"),
], ids=lambda x: x if isinstance(x, str) else "-".join(x))
def test_a_wrong_hparam_fails_the_comparison(case_id, wrong, problem):
    """The comparison is sharp: one hparam off is far outside the float32 tolerance."""
    case = CASES[case_id]
    bad = FrontierCase(case.id, case.rule, {**case.hparams, **wrong}, case.reference, case.lr, case.groups)
    dtype = torch.float32 if torch.float32 in case.dtypes else torch.float64
    err, _ = run_case(bad, problem, dtype, steps=STEPS if case.rule == "prodigy" else 30)   # d grows slowly
    assert err > 100 * TOL[torch.float32]


@pytest.mark.parametrize("case_id", ["cautious-adamw", "cautious-lion"])
def test_the_cautious_mask_matters(case_id):
    """Against the same package without cautious=True the cautious rules are far off."""
    case = CASES[case_id]
    plain = FrontierCase(case.id, case.rule, case.hparams,
                         lambda p, lr: _without_caution(case.reference(p, lr)), case.lr)
    err, _ = run_case(plain, "random", torch.float32, steps=30)
    assert err > 100 * TOL[torch.float32]


def _without_caution(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    for group in opt.param_groups:
        group["cautious"] = False
    return opt


@pytest.mark.parametrize("case_id", list(CASES))
def test_frozen_group_and_warmup_from_zero_under_a_scheduler(case_id):
    """Linear warmup from lr = 0 (LambdaLR) with one group frozen at lr = 0 (the 4-D filter):
    the frozen weights stay bit for bit, the rest follows the reference, which gets the same
    groups."""
    with zoo.default_dtype(torch.float64):      # references keep scalar state in the default dtype
        _frozen_group_and_warmup(CASES[case_id])


def _frozen_group_and_warmup(case: FrontierCase) -> None:
    prob = zoo.PROBLEMS["random"](torch.float64)
    order = (3, 0, 1, 2)                                 # the filter first
    params = [[prob.init[i].clone() for i in order] for _ in range(3)]
    lr = case.lr

    def groups(ps):
        return [{"params": [ps[0]], "lr": 0.0}] + case.groups(ps[1:], lr)

    opts = [case.reference([{"params": [params[0][0]], "lr": 0.0, **case.frozen}, {"params": params[0][1:]}], lr),
            ProgramOptimizer(groups(params[1]), f"builtin:{case.rule}", lr=lr, **case.hparams),
            exported_class(f"builtin:{case.rule}")(groups(params[2]), lr=lr, **case.hparams)]
    schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(k / 10, 1.0)) for opt in opts]
    assert all(g["lr"] == 0.0 for opt in opts for g in opt.param_groups)
    for k in range(30):
        grads = prob.grads(k, None)
        _step_all(params, opts, [grads[i] for i in order])
        for s in schedulers:
            s.step()
    for ps in params:
        assert torch.equal(ps[0], prob.init[3])
    assert _max_diff(params[1], params[0]) <= tolerance(case, torch.float64)
    assert _max_diff(params[2], params[1]) <= EXPORT_TOL
    assert _max_diff(params[0][1:], [prob.init[i] for i in order[1:]]) > 1e-3


@pytest.mark.parametrize("case_id", list(CASES))
def test_state_dict_saved_mid_run_resumes_identically(case_id):
    """ProgramOptimizer; the exported classes of all builtins are checked the same way in
    test_export.py::test_state_dict_round_trip_mid_run."""
    case = CASES[case_id]
    prob = zoo.PROBLEMS["random"](torch.float64)

    def make(ps):
        return ProgramOptimizer(case.groups(ps, case.lr), f"builtin:{case.rule}", lr=case.lr, **case.hparams)

    def steps(ps, opt, lo, hi):
        for k in range(lo, hi):
            for p, g in zip(ps, prob.grads(k, None)):
                p.grad = g.clone()
            opt.step()

    full = [p.clone() for p in prob.init]
    opt = make(full)
    steps(full, opt, 0, 20)
    buffer = io.BytesIO()
    torch.save({"params": [p.clone() for p in full], "opt": opt.state_dict()}, buffer)
    steps(full, opt, 20, 30)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed = saved["params"]
    fresh = make(resumed)
    fresh.load_state_dict(saved["opt"])
    steps(resumed, fresh, 20, 30)
    assert _max_diff(full, resumed) == 0.0


def measured_table() -> list[str]:
    """The README's zoo rows: max |dtheta| over both problems, per case and dtype."""
    rows = ["| case | float64 vs reference | float32 vs reference | exported vs ProgramOptimizer |",
            "|---|---:|---:|---:|"]
    for case in FRONTIER_CASES:
        errs = {dtype: [run_case(case, problem, dtype) for problem in case.problems] for dtype in case.dtypes}
        worst = {dtype: f"{max(e for e, _ in pairs):.1e}" for dtype, pairs in errs.items()}
        export = max(x for pairs in errs.values() for _, x in pairs)
        rows.append(f"| {case.id} | {worst[torch.float64]} | {worst.get(torch.float32, 'not run')} | {export:.1e} |")
    return rows


if __name__ == "__main__":      # python tests/dsl/test_zoo_frontier.py: the figures for the README
    torch.set_num_threads(1)
    print("\n".join(measured_table()))

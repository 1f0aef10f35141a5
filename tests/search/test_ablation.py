"""Ablation: the parts of a rule and their neutral values, and `optforge ablate` on a tiny task
with a rule that has a dead statement, a neutral one and the statement carrying the gradient."""

from __future__ import annotations

import json
import math

import pytest
from fake_scorers import function_scorer

from dsl.ir import BinOp, Name
from dsl.parser import parse
from search.ablation import ablate, neutral_value, variants
from search.cli import main
from search.rule_scoring import Measurer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RULE = """# momentum with a neutral statement and a dead one
hparams beta=0.9
m = lerp(m, g, 1 - beta)
update = m
update = update * 1.0
dead = sign(g)
"""


def test_neutral_values_are_identities_of_the_operation_or_zero():
    x = Name("x")
    assert [neutral_value(BinOp(op, x, x), 1) for op in ("+", "-", "*", "/", "**")] == [0, 0, 1, 1, 1]
    assert [neutral_value(BinOp(op, x, x), 0) for op in ("+", "-", "*", "/", "**")] == [0, 0, 1, 0, 0]
    assert neutral_value(None, 0) == 0.0


def test_every_statement_constant_and_hparam_is_a_part():
    parts = [(p.kind, p.text, p.change, v is None) for p, v in variants(parse(RULE))]
    assert [(k, t) for k, t, _, _ in parts] == [
        ("statement", "m = lerp(m, g, 1 - beta)"), ("statement", "update = m"),
        ("statement", "update = update * 1"), ("statement", "dead = sign(g)"),
        ("hparam", "beta=0.9"), ("constant", "1 in m = lerp(m, g, 1 - beta)")]
    assert parts[3][2].startswith("dead code") and parts[3][3]  # not trained
    assert parts[5][2] == "1 -> 0 (now: lerp(m, g, 0 - beta))"
    # `update * 1` is already neutral: no part for that literal
    assert len(parts) == 6


def test_ablation_with_a_known_function_scorer():
    measurer = Measurer(function_scorer(RULE))
    result = ablate(parse(RULE), measurer)
    verdicts = {r.part.text: r.verdict() for r in result.rows}
    assert verdicts["update = update * 1"] == "no effect: computes the same without it"
    assert verdicts["dead = sign(g)"] == "dead code: no effect"
    assert verdicts["m = lerp(m, g, 1 - beta)"].startswith("carries the rule: invalid without it")
    assert verdicts["beta=0.9"] == "carries the rule (significantly worse without it)"
    assert measurer.calls == 3  # the rule, beta -> 0 and the constant; the rest cost nothing


def test_a_variant_that_computes_what_another_variant_computes_is_not_called_neutral():
    lion_like = "hparams beta=0.9\nupdate = sign(beta * m + (1 - beta) * g)\nm = beta * m + (1 - beta) * g\n"
    rows = {r.part.text: r for r in ablate(parse(lion_like), Measurer(function_scorer(lion_like))).rows}
    dropped, zero = rows["m = beta * m + (1 - beta) * g"], rows["beta=0.9"]
    assert zero.measurement.reused == "function"  # beta = 0 is sign(g), as is dropping m
    assert zero.measurement.samples == dropped.measurement.samples
    assert zero.verdict() == dropped.verdict() == "carries the rule (significantly worse without it)"


@pytest.fixture(scope="module")
def ablated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ablate")
    (tmp / "rule.opt").write_text(RULE)
    out = tmp / "out"
    code = main(["ablate", str(tmp / "rule.opt"), "--suite", "proxy", "--tasks", "quadratic",
                 "--preset", "tiny", "--budget", "3", "--seeds", "3", "--out", str(out),
                 "--no-progress"])
    return code, out


def test_optforge_ablate_reports_zero_for_dead_and_neutral_parts_and_a_large_gradient_effect(ablated):
    code, out = ablated
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == "optforge.ablate/1" and len(data["base"]["samples"]) == 3
    rows = {r["part"]["text"]: r for r in data["rows"]}
    for neutral in ("update = update * 1", "dead = sign(g)"):
        assert rows[neutral]["effect"] == 0.0 and rows[neutral]["p_value"] == 1.0
    gradient = rows["m = lerp(m, g, 1 - beta)"]  # without it the update never sees g
    assert gradient["measurement"]["status"] == "invalid" and gradient["effect"] is None  # inf
    assert "carries the rule" in gradient["verdict"]
    beta = rows["beta=0.9"]  # momentum off: measured on 3 seeds, a finite effect with a p-value
    assert beta["measurement"]["status"] == "ok" and len(beta["measurement"]["samples"]) == 3
    assert math.isfinite(beta["effect"]) and 0.0 <= beta["p_value"] <= 1.0
    assert beta["fitness"] > 0 and set(beta["tasks"]) == {"quadratic"}
    assert data["settings"]["preset"] == "tiny" and data["settings"]["budget"] == 3


def test_optforge_ablate_writes_a_png_and_a_report(ablated):
    _, out = ablated
    assert (out / "ablation.png").read_bytes()[:8] == PNG_MAGIC
    page = (out / "report.html").read_text()
    for sid in ("run", "effects", "parts"):
        assert f"<section id='{sid}'>" in page
    assert "data:image/png;base64," in page and "carries the rule" in page


@pytest.mark.parametrize("argv, message", [
    (["builtin:nope"], "unknown builtin rule 'nope'"),
    (["builtin:lion", "--suite", "nope"], "suite 'nope'"),
    (["builtin:lion", "--tasks", "quadratic,nope"], "--tasks: nope not in suite 'proxy'"),
    (["builtin:lion", "--seeds", "1"], "--seeds must be at least 2"),
    (["builtin:lion", "--preset", "huge"], "unknown preset 'huge'"),
])
def test_bad_names_are_one_line_errors(argv, message, capsys):
    assert main(["ablate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err

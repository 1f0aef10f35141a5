"""Simplification: padding comes off and nothing else does, edits that are not worse are kept,
constants are rounded, the scorer-call budget holds, and the protocol scorer plugs in."""

from __future__ import annotations

import pytest
from fake_scorers import NOISE, function_scorer, indifferent_scorer

from dsl.ir import expr_size
from dsl.parser import parse
from dsl.printer import to_text
from search.rule_scoring import Measurer, protocol_scorer
from search.simplify import canonical, round_significant, simplify

ORIGINAL = "hparams beta=0.9\nm = lerp(m, g, 1 - beta)\nupdate = sign(m)\n"
PADDED = ("hparams beta=0.9 unused=3\nm = lerp(m, g, 1 - beta)\njunk = abs(g) * 0\n"
          "update = sign(m) * 1 + junk\ndead = g * g\n")


def text(program) -> str:
    return to_text(program, doc=False)


def test_a_rule_padded_with_a_useless_statement_and_an_identity_factor_simplifies_to_itself():
    calls = []
    result = simplify(parse(PADDED), function_scorer(ORIGINAL, calls))
    assert text(result.simplified) == text(parse(ORIGINAL))
    kept = [s.change for s in result.steps if s.kept]
    assert kept == ["drop: junk = abs(g) * 0", "replace: sign(m) * 1 + junk -> sign(m) * 1 in update",
                    "replace: sign(m) * 1 -> sign(m) in update"]
    # every edit of the original itself was tried and refused: nothing more comes off
    tried_last = [s for s in result.steps if not s.kept][-3:]
    assert all(s.status in ("invalid", "ok") and not s.kept for s in tried_last)
    assert any(s.status == "ok" and s.p_value < 0.05 and s.effect > 0 for s in result.steps)
    assert result.calls == len(calls) and result.calls <= 6 and not result.exhausted
    assert result.simplified_samples == result.original_samples  # the same function


def test_the_original_itself_is_returned_unchanged():
    result = simplify(parse(ORIGINAL), function_scorer(ORIGINAL))
    assert text(result.simplified) == text(parse(ORIGINAL)) and not result.changed
    assert not any(s.kept for s in result.steps)


def test_edits_that_are_not_worse_are_kept_down_to_a_minimal_rule():
    result = simplify(parse("hparams beta=0.9\nm = lerp(m, g, 1 - beta)\nupdate = m * 1.25\n"),
                      indifferent_scorer)
    assert text(result.simplified) == "m = g\nupdate = m\n"
    assert all(s.p_value >= 0.05 for s in result.steps if s.kept)


def test_constants_are_rounded_when_the_function_may_change():
    first = []

    def score(program):  # worse for any change of size; indifferent to the constants' values
        size = sum(expr_size(st.value) for st in program.statements())
        first.append(size)
        return [10.0 * abs(size - first[0]) + n for n in NOISE]

    # (a scorer must give rules that compute the same the same score: the cache assumes it, and the
    # fingerprint is scale-normalised, so a factor on the whole update computes what `update = m`
    # does; the constant here weighs one term against another)
    result = simplify(parse("hparams beta=0.9123\nm = lerp(m, g, 1 - beta)\nupdate = m + g * 2.345\n"),
                      score)
    assert text(result.simplified) == "hparams beta=0.9\nm = lerp(m, g, 1 - beta)\nupdate = m + g * 2\n"
    assert [s.change for s in result.steps if s.kept] == ["round: beta=0.9123 -> 0.9",
                                                           "round: 2.345 -> 2 in update"]
    assert round_significant(0.000123456, 2) == 0.00012 and round_significant(0.0, 1) == 0.0


def test_the_call_budget_is_respected_and_shared_caches_are_reused():
    measurer = Measurer(function_scorer(ORIGINAL))
    result = simplify(parse(PADDED), measurer, max_calls=2)
    assert result.calls == 2 and result.exhausted and measurer.max_calls is None
    again = simplify(parse(PADDED), measurer)  # what was measured is not measured again
    assert text(again.simplified) == text(parse(ORIGINAL)) and again.calls <= 4


def test_a_rule_that_cannot_be_measured_twice_is_a_clear_error():
    with pytest.raises(ValueError, match="a Welch test needs >= 2"):
        simplify(parse(ORIGINAL), lambda program: [0.1])
    with pytest.raises(ValueError, match="measured invalid"):
        simplify(parse("update = w\n"), indifferent_scorer)


def test_canonical_drops_dead_code_and_unread_hparams():
    assert text(canonical(parse(PADDED))) == ("hparams beta=0.9\nm = lerp(m, g, 1 - beta)\n"
                                              "junk = abs(g) * 0\nupdate = sign(m) * 1 + junk\n")


def test_the_protocol_scorer_simplifies_on_a_tiny_task():
    scorer = protocol_scorer("proxy", ["quadratic"], preset="tiny", seeds=3, budget=2)
    padded = "hparams beta=0.9\nm = lerp(m, g, 1 - beta)\nupdate = m\nupdate = update * 1\n"
    result = simplify(parse(padded), scorer, max_calls=3)
    assert len(result.original_samples) == 3 and result.calls <= 3
    assert result.steps[0].change == "drop: m = lerp(m, g, 1 - beta)" and result.steps[0].status == "invalid"
    dropped = next(s for s in result.steps if s.change == "drop: update = update * 1")
    assert dropped.kept and dropped.reused == "function" and dropped.effect == 0.0

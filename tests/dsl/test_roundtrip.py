"""Printer/parser round trip: parse(to_text(p)) == p for random programs, and fixed cases whose
canonical text is asserted exactly (minimal parentheses, shortest numbers, route headers)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from strategies import programs, token_soup

from dsl import RuleError, parse, to_text
from dsl.ir import Assign, BinOp, Call, Name, Neg, Num, Program, Route
from dsl.printer import expr_text, format_number

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(programs())
def test_parse_of_print_is_identity(p):
    text = to_text(p)
    q = parse(text)
    assert q == p, text
    assert to_text(q) == text


@settings(max_examples=60, deadline=None)
@given(programs(with_doc=True, max_statements=3, depth=2))
def test_doc_comment_round_trips(p):
    q = parse(to_text(p))
    assert q == p
    assert q.doc == p.doc


@SETTINGS
@given(programs(max_statements=3, depth=3))
def test_printing_is_stable_under_reparsing_with_noise(p):
    # comments, blank lines, indentation and CRLF do not change the program
    noisy = "\r\n".join(f"  {ln}   # note (" if ln and not ln.startswith("#") else ln
                        for ln in to_text(p, doc=False).splitlines())
    noisy = "\n\n" + noisy + "\r\n# trailing (\n"
    assert parse(noisy) == p


@settings(max_examples=200, deadline=None)
@given(token_soup)
def test_whatever_parses_round_trips(text):
    try:
        p = parse(text)
    except RuleError:
        return
    assert parse(to_text(p)) == p
    assert to_text(parse(to_text(p))) == to_text(p)


def _prog(*stmts: tuple[str, object], hparams=()) -> Program:
    return Program(tuple(hparams), (Route("default", tuple(Assign(t, e) for t, e in stmts)),))


g, w, x, y = Name("g"), Name("w"), Name("x"), Name("y")


@pytest.mark.parametrize("expr, text", [
    (BinOp("-", x, BinOp("-", y, g)), "x - (y - g)"),
    (BinOp("-", BinOp("-", x, y), g), "x - y - g"),
    (BinOp("/", x, BinOp("*", y, g)), "x / (y * g)"),
    (BinOp("*", BinOp("+", x, y), g), "(x + y) * g"),
    (BinOp("**", x, BinOp("**", y, g)), "x ** y ** g"),
    (BinOp("**", BinOp("**", x, y), g), "(x ** y) ** g"),
    (BinOp("**", Neg(x), y), "(-x) ** y"),
    (Neg(BinOp("**", x, y)), "-x ** y"),
    (BinOp("**", x, Neg(y)), "x ** -y"),
    (BinOp("**", Num(-2.0), x), "(-2) ** x"),
    (BinOp("**", x, Num(-0.5)), "x ** -0.5"),
    (BinOp("-", x, Num(-1.0)), "x - -1"),
    (BinOp("*", Num(-1.0), x), "-1 * x"),
    (Neg(Neg(x)), "-(-x)"),
    (Neg(BinOp("+", x, y)), "-(x + y)"),
    (Neg(Call("sign", (x,))), "-sign(x)"),
    (BinOp("*", Neg(x), y), "-x * y"),
    (BinOp("**", Call("sqrt", (x,)), Num(2.0)), "sqrt(x) ** 2"),
    (Call("lerp", (Name("m"), g, BinOp("-", Num(1.0), Name("b")))), "lerp(m, g, 1 - b)"),
    (Num(-0.0), "-0.0"),
])
def test_canonical_expression_text(expr, text):
    assert expr_text(expr) == text
    p = _prog(("update", expr))
    assert parse(to_text(p)) == p


@pytest.mark.parametrize("v, text", [
    (1.0, "1"), (0.0, "0"), (-0.0, "-0.0"), (1e-8, "1e-08"), (0.1, "0.1"), (1e16, "1e+16"),
    (123456789012345.0, "123456789012345"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
    (2.5, "2.5"), (-3.0, "-3"),
])
def test_format_number_is_shortest_and_exact(v, text):
    assert format_number(v) == text
    assert float(text) == v and math.copysign(1, float(text)) == math.copysign(1, v)


@pytest.mark.parametrize("v", [math.inf, -math.inf, math.nan])
def test_format_number_refuses_non_finite(v):
    with pytest.raises(ValueError, match="non-finite"):
        format_number(v)


def test_parser_folds_unary_minus_on_literals():
    p = parse("update = g * -3 + -x")
    assert p.routes[0].body[0].value == BinOp("+", BinOp("*", g, Num(-3.0)), Neg(x))


def test_whole_file_canonical_text():
    text = ("# Lion\n\n#  two\nhparams  beta1=0.90 beta2=.99\thparams_x=1e-3\n"
            "update = sign( lerp(m, g, 1-beta1) ) + 0*w   # step\n"
            "m = lerp(m, g, (1 - beta2))\n")
    p = parse(text)
    assert p.doc == "Lion\ntwo"    # blank lines inside the leading comment block are skipped
    assert to_text(p) == ("# Lion\n# two\nhparams beta1=0.9 beta2=0.99 hparams_x=0.001\n"
                          "update = sign(lerp(m, g, 1 - beta1)) + 0 * w\nm = lerp(m, g, 1 - beta2)\n")
    assert to_text(p, doc=False).startswith("hparams ")


def test_routes_print_with_headers_in_their_order():
    text = "route matrix:\n    update = orthogonalize(g)\nroute default:\n    update = sign(g)\n"
    p = parse(text)
    assert p.route_names == ("matrix", "default")
    assert to_text(p) == text
    # statements before any header are the default route
    q = parse("update = sign(g)\nroute matrix:\n  update = orthogonalize(g)")
    assert q.route_names == ("default", "matrix")
    assert to_text(q) == "route default:\n    update = sign(g)\nroute matrix:\n    update = orthogonalize(g)\n"
    assert parse(to_text(q)) == q


def test_a_lone_matrix_route_keeps_its_header():
    p = parse("route matrix:\n    update = g\n")
    assert p.route_names == ("matrix",)
    assert to_text(p) == "route matrix:\n    update = g\n"


def test_equality_ignores_positions_doc_and_name():
    a = parse("# doc a\nupdate = g", name="a")
    b = parse("\n\n\nupdate   =   g", name="b")
    assert a == b and hash(a) == hash(b)
    assert a.routes[0].body[0].line == 2 and b.routes[0].body[0].line == 4


def test_integer_hparams_stay_integers():
    p = parse("hparams k=5 f=5.0 big=123456789012345678901234567890 e=2e3 n=-3\nupdate = g * k * f\n")
    kinds = {k: type(v) for k, v in p.hparam_items}
    assert kinds == {"k": int, "f": float, "big": float, "e": float, "n": int}
    text = to_text(p)
    assert text.startswith("hparams k=5 f=5.0 big=1.2345678901234568e+29 e=2000.0 n=-3\n")
    assert parse(text) == p and [type(v) for _, v in parse(text).hparam_items] == list(kinds.values())

"""Hypothesis strategies for the rule language: random *valid* IR programs, and hostile text.

`programs()` builds IR directly (not text): nested Num/Name/Neg/BinOp/Call with each primitive's
arity, hparams with arbitrary finite defaults (-0.0, subnormals, 1e308 included), state (names
read before they are assigned), temporaries, and one or two routes. It follows the IR convention
that unary minus on a literal is a negative Num (the parser folds it), so it never builds Neg(Num).
"""

from __future__ import annotations

import keyword

from hypothesis import strategies as st

from dsl.ir import BINARY_OPS, INPUTS, OUTPUT, Assign, BinOp, Call, Name, Neg, Num, Program, Route
from dsl.primitives import PRIMITIVES

# Names a program may not use for its own variables: inputs, the output, primitives, Python
# keywords, the `hparams` header word, the optimizer's step counter and its param-group keys.
RESERVED = (set(INPUTS) | {OUTPUT, "hparams", "step", "params", "route", "batch_dims"} | set(PRIMITIVES)
            | set(keyword.kwlist))

ROUTE_LAYOUTS = (("default",), ("matrix",), ("default", "matrix"), ("matrix", "default"))


def _ok_name(n: str) -> bool:
    return n not in RESERVED and not n.startswith("__")


_LOWER = "abcdefghijklmnopqrstuvwxyz"
_IDENT = _LOWER + _LOWER.upper() + "0123456789_"
names = st.one_of(
    st.tuples(st.sampled_from(_LOWER), st.text(_LOWER + "0123456789_", max_size=6)).map("".join),
    st.tuples(st.sampled_from(_IDENT[:-11] + "_"), st.text(_IDENT, max_size=63)).map("".join),
    st.sampled_from(["m", "v", "x1", "_", "match", "case", "type", "a" * 64, "hparams_", "route_x"]),
).filter(_ok_name)

finite = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-10**6, 10**6).map(float),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 1e-8, 0.9, 0.999, 5e-324, 1e16, 1e308, -1e-300, 2.0**53 + 2]),
)


_SLOTS = 16  # expressions are drawn over placeholder names, then bound to a program's names


@st.composite
def _call(draw, sub):
    prim = PRIMITIVES[draw(st.sampled_from(sorted(PRIMITIVES)))]
    k = draw(st.integers(prim.min_args, prim.max_args))
    return Call(prim.name, tuple(draw(sub) for _ in range(k)))


def _non_literal(readable: list[str], depth: int):
    """Expressions that are not a bare number (what unary minus may apply to)."""
    name = st.sampled_from(readable).map(Name)
    if depth <= 0:
        return name
    sub = expressions(readable, depth - 1)
    return st.one_of(
        name,
        _non_literal(readable, depth - 1).map(Neg),
        st.builds(BinOp, st.sampled_from(BINARY_OPS), sub, sub),
        _call(sub),
    )


def expressions(readable: list[str], depth: int = 4):
    """Random expressions over `readable` names, at most `depth` levels of operators."""
    return st.one_of(finite.map(Num), _non_literal(readable, depth))


_PLACEHOLDERS = [f"_{k}" for k in range(_SLOTS)]
_TEMPLATES = {d: expressions(_PLACEHOLDERS, d) for d in range(1, 7)}
_CALL_TEMPLATES = {d: _call(expressions(_PLACEHOLDERS, d - 1)) for d in range(1, 7)}   # a primitive call on top


def bind(e, readable: list[str]):
    """Replace placeholder names `_k` with readable[k % len(readable)]."""
    if isinstance(e, Name):
        return Name(readable[int(e.id[1:]) % len(readable)])
    if isinstance(e, Neg):
        return Neg(bind(e.operand, readable))
    if isinstance(e, BinOp):
        return BinOp(e.op, bind(e.left, readable), bind(e.right, readable))
    if isinstance(e, Call):
        return Call(e.fn, tuple(bind(a, readable) for a in e.args))
    return e


@st.composite
def routes(draw, name: str, hp: list[str], pool: list[str], max_statements: int, depth: int, calls: bool = False):
    n = draw(st.integers(1, max_statements))
    targets = [draw(st.sampled_from(pool + [OUTPUT])) for _ in range(n)]
    if OUTPUT not in targets:
        targets[draw(st.integers(0, n - 1))] = OUTPUT
    readable = draw(st.permutations(list(INPUTS) + hp + pool))
    templates = _CALL_TEMPLATES if calls else _TEMPLATES
    body = tuple(Assign(t, bind(draw(templates[depth]), readable)) for t in targets)
    return Route(name, body)


docs = st.lists(
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20).map(str.strip),
    max_size=3,
).map(lambda lines: "\n".join(lines).strip())


@st.composite
def programs(draw, max_statements: int = 6, depth: int = 4, layouts=ROUTE_LAYOUTS, with_doc: bool = False,
             calls: bool = False):
    """A random valid Program (it parses back to itself from its canonical text). With `calls`, every
    statement's value is a primitive call (so each example exercises several primitives)."""
    hp = draw(st.lists(names, max_size=4, unique=True))
    hp_values = [draw(finite) for _ in hp]
    pool = draw(st.lists(names.filter(lambda n: n not in hp), min_size=1, max_size=5, unique=True))
    layout = draw(st.sampled_from(layouts))
    body = tuple(draw(routes(r, hp, pool, max_statements, depth, calls)) for r in layout)
    doc = draw(docs) if with_doc else ""
    return Program(tuple(zip(hp, hp_values)), body, doc=doc)


# -- hostile text -----------------------------------------------------------------------------
TOKENS = [
    "update", "=", " = ", "g", "w", "t", "lr", "h", "m", "x", "(", ")", ",", "+", "-", "*", "/", "**", "//", "%",
    "@", ".", "[", "]", ":", ";", "#", "\n", "\n", "    ", "\t", "hparams ", "route ", "matrix", "default", "a=1",
    "b=0.9", "1", "0", "1e999", "-1e-3", ".5", "1_0", "0x1f", "'s'", '"', "f'{g}'", "lambda", "__import__", "__x",
    "sign", "lerp", "clip", "orthogonalize", "factored", "norm", "global_norm", "if", "else", "not", "and", "<",
    "==", ":=", "+=", "\\", "\x00", "\ufeff", "é", "\u2028", "\r", "\x0c", "step", "True", "None", "...", "yield",
]

token_soup = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


# -- the hostile-input table (shared by the parser tests and the CLI tests) ---------------------
# id -> (file content: str, bytes, None = no file, DIRECTORY = a directory; error class name;
#        the error text after the file name, e.g. ":1:10: unknown primitive ...").
DIRECTORY = object()
_DEEP = 10_000
HOSTILE: dict[str, tuple[object, str, str]] = {
    "syntax error": ("update = g +\n", "RuleSyntaxError", ":1:13: syntax error: invalid syntax"),
    "unclosed paren": ("update = sign(g\n", "RuleSyntaxError", ":1:14: syntax error: '(' was never closed"),
    "unknown primitive": ("update = foo(g)\n", "RuleSyntaxError",
                          ":1:10: unknown primitive 'foo' (see `optforge primitives`)"),
    "unknown primitive nested": ("hparams a=1\nm = g\nupdate = sign(m) + bar(w, 1)\n", "RuleSyntaxError",
                                 ":3:20: unknown primitive 'bar' (see `optforge primitives`)"),
    "too many arguments": ("update = sign(g, w)\n", "RuleSyntaxError", ":1:10: sign() takes 1 argument, got 2"),
    "too few arguments": ("update = lerp(g, w)\n", "RuleSyntaxError", ":1:10: lerp() takes 3 arguments, got 2"),
    "optional arguments": ("update = orthogonalize(g, 5, 1)\n", "RuleSyntaxError",
                           ":1:10: orthogonalize() takes 1 to 2 arguments, got 3"),
    "no arguments": ("update = g * norm()\n", "RuleSyntaxError", ":1:14: norm() takes 1 argument, got 0"),
    "keyword argument": ("update = clip(g, c=1)\n", "RuleSyntaxError", ":1:10: clip() takes positional arguments only"),
    "double star": ("update = clip(g, **w)\n", "RuleSyntaxError", ":1:10: clip() takes positional arguments only"),
    "__import__": ("update = __import__('os').system('touch PWNED')\n", "RuleSyntaxError",
                   ":1:10: only registered primitives can be called"),
    "__import__ call": ("update = __import__('os')\n", "RuleSyntaxError",
                        ":1:10: unknown primitive '__import__' (see `optforge primitives`)"),
    "eval": ("update = eval('1')\n", "RuleSyntaxError", ":1:10: unknown primitive 'eval' (see `optforge primitives`)"),
    "attribute": ("update = g.grad\n", "RuleSyntaxError", ":1:10: not allowed in a rule: attribute access"),
    "dunder attribute": ("update = sign(g).__class__\n", "RuleSyntaxError",
                         ":1:10: not allowed in a rule: attribute access"),
    "subscript": ("update = g[0]\n", "RuleSyntaxError", ":1:10: not allowed in a rule: subscripts"),
    "lambda": ("update = lambda: g\n", "RuleSyntaxError", ":1:10: not allowed in a rule: lambdas"),
    "list comprehension": ("update = [x for x in g]\n", "RuleSyntaxError",
                           ":1:10: not allowed in a rule: comprehensions"),
    "generator": ("update = sign(x for x in g)\n", "RuleSyntaxError", ":1:14: not allowed in a rule: comprehensions"),
    "string": ("update = 'g'\n", "RuleSyntaxError", ":1:10: not allowed in a rule: strings"),
    "bytes": ("update = b'g'\n", "RuleSyntaxError", ":1:10: not allowed in a rule: strings"),
    "f-string": ("update = f'{g}'\n", "RuleSyntaxError", ":1:10: not allowed in a rule: strings"),
    "import": ("import os\nupdate = g\n", "RuleSyntaxError", ":1:1: not allowed in a rule: imports"),
    "from import": ("update = g\nfrom os import system\n", "RuleSyntaxError", ":2:1: not allowed in a rule: imports"),
    "walrus": ("update = (x := g)\n", "RuleSyntaxError", ":1:11: not allowed in a rule: walrus assignments"),
    "augmented assignment": ("update = g\nupdate += w\n", "RuleSyntaxError",
                             ":2:1: not allowed in a rule: augmented assignment (write `x = x + ...`)"),
    "tuple target": ("a, b = g, w\nupdate = a\n", "RuleSyntaxError", ":1:1: assign to exactly one plain name"),
    "chained assignment": ("a = b = g\nupdate = a\n", "RuleSyntaxError", ":1:1: assign to exactly one plain name"),
    "attribute target": ("g.data = w\nupdate = g\n", "RuleSyntaxError", ":1:1: assign to exactly one plain name"),
    "comparison": ("update = g < w\n", "RuleSyntaxError", ":1:10: not allowed in a rule: comparisons"),
    "chained comparison": ("update = 0 < g < 1\n", "RuleSyntaxError", ":1:10: not allowed in a rule: comparisons"),
    "boolean operator": ("update = g or w\n", "RuleSyntaxError", ":1:10: not allowed in a rule: boolean operators"),
    "not": ("update = not g\n", "RuleSyntaxError", ":1:10: not allowed in a rule: not"),
    "conditional": ("update = g if t else w\n", "RuleSyntaxError",
                    ":1:10: not allowed in a rule: conditional expressions"),
    "floor division": ("update = g // 2\n", "RuleSyntaxError", ":1:10: operator '//' is not allowed (use + - * / **)"),
    "modulo": ("update = g % 2\n", "RuleSyntaxError", ":1:10: operator '%' is not allowed (use + - * / **)"),
    "matmul": ("update = g @ w\n", "RuleSyntaxError", ":1:10: operator '@' is not allowed (use + - * / **)"),
    "unary plus": ("update = +g\n", "RuleSyntaxError", ":1:10: not allowed in a rule: unary +"),
    "invert": ("update = ~g\n", "RuleSyntaxError", ":1:10: not allowed in a rule: ~"),
    "bool literal": ("update = g * True\n", "RuleSyntaxError", ":1:14: not allowed in a rule: bool literals"),
    "complex literal": ("update = g * 2j\n", "RuleSyntaxError", ":1:14: not allowed in a rule: complex literals"),
    "primitive as value": ("update = sign\n", "RuleSyntaxError", ":1:10: primitive 'sign' used as a value (call it)"),
    "bare expression": ("sign(g)\nupdate = g\n", "RuleSyntaxError",
                        ":1:1: not allowed in a rule: a bare expression (a statement must assign to a name)"),
    "function definition": ("def f(): pass\nupdate = g\n", "RuleSyntaxError",
                            ":1:1: not allowed in a rule: function definitions"),
    "assign g": ("g = w\nupdate = g\n", "RuleValidationError", ":1:1: 'g' is an input and cannot be assigned"),
    "assign w": ("update = g\n  w = g\n", "RuleValidationError", ":2:3: 'w' is an input and cannot be assigned"),
    "assign t": ("t = 1\nupdate = g\n", "RuleValidationError", ":1:1: 't' is an input and cannot be assigned"),
    "assign lr": ("lr = 1\nupdate = g\n", "RuleValidationError", ":1:1: 'lr' is an input and cannot be assigned"),
    "assign h": ("h = 1\nupdate = g\n", "RuleValidationError", ":1:1: 'h' is an input and cannot be assigned"),
    "assign hparam": ("hparams beta=0.9\nbeta = 0.5\nupdate = g\n", "RuleValidationError",
                      ":2:1: 'beta' is an hparam and cannot be assigned"),
    "assign primitive": ("sign = g\nupdate = g\n", "RuleValidationError",
                         ":1:1: 'sign' is a primitive and cannot be assigned"),
    "missing update": ("hparams a=1\nm = g * a\n", "RuleValidationError",
                       ": the rule never assigns 'update' (or 'next_w')"),
    "empty file": ("", "RuleValidationError", ": the rule never assigns 'update' (or 'next_w')"),
    "route missing update": ("route matrix:\n  update = g\nroute default:\n  m = g\n", "RuleValidationError",
                             ": route 'default' never assigns 'update' (or 'next_w')"),
    "duplicate hparam": ("hparams a=1 b=2\nhparams a=3\nupdate = g\n", "RuleSyntaxError",
                         ":2:9: hparam 'a' is declared twice"),
    "hparam without value": ("hparams a= b=1\nupdate = g\n", "RuleSyntaxError",
                             ":1:9: hparams entries are NAME=NUMBER, got 'a='"),
    "hparam with a name as value": ("hparams a=b\nupdate = g\n", "RuleSyntaxError",
                                    ":1:9: hparams entries are NAME=NUMBER, got 'a=b'"),
    "hparam with an expression": ("hparams a=1+1\nupdate = g\n", "RuleSyntaxError",
                                  ":1:9: hparams entries are NAME=NUMBER, got 'a=1+1'"),
    "hparam bad name": ("hparams 1a=1\nupdate = g\n", "RuleSyntaxError",
                        ":1:9: hparams entries are NAME=NUMBER, got '1a=1'"),
    "hparam nan": ("hparams a=nan\nupdate = g\n", "RuleSyntaxError",
                   ":1:9: hparams entries are NAME=NUMBER, got 'a=nan'"),
    "hparam 1e999": ("hparams  a=1e999\nupdate = g\n", "RuleSyntaxError", ":1:10: hparam 'a' must be finite"),
    "hparam named like an input": ("hparams lr=1\nupdate = g\n", "RuleSyntaxError",
                                   ":1:9: 'lr' cannot be an hparam name (it is reserved)"),
    "hparam named like a group key": ("hparams route=1\nupdate = g\n", "RuleSyntaxError",
                                      ":1:9: 'route' cannot be an hparam name (it is reserved)"),
    "hparam named batch_dims": ("hparams x=1 batch_dims=1\nupdate = g\n", "RuleSyntaxError",
                                ":1:13: 'batch_dims' cannot be an hparam name (it is reserved)"),
    "literal 1e999": ("update = g * 1e999\n", "RuleSyntaxError", ":1:14: number is not finite"),
    "literal with 400 digits": ("update = g * " + "9" * 400 + "\n", "RuleSyntaxError", ":1:14: number is not finite"),
    "literal with 5000 digits": ("update = g * " + "9" * 5000 + "\n", "RuleSyntaxError",
                                 ":1:1: syntax error: number has too many digits"),
    "100,000 statements": ("update = g\n" * 100_000, "RuleSyntaxError",
                           ": file is 1100000 bytes; a rule may have at most 65536"),
    "257 statements": ("m = g\n" * 256 + "update = m\n", "RuleSyntaxError", ":257:1: more than 256 statements"),
    "257 statements across routes": ("route matrix:\n" + "  m = g\n" * 200 + "  update = m\nroute default:\n"
                                     + "  m = g\n" * 55 + "  update = m\n", "RuleSyntaxError",
                                     ":259:3: more than 256 statements"),
    "10,000 nested parens": ("update = " + "(" * _DEEP + "g" + ")" * _DEEP + "\n", "RuleSyntaxError",
                             ":1:74: expression nested deeper than 64 levels"),
    "10,000 nested calls": ("update = " + "sign(" * _DEEP + "g" + ")" * _DEEP + "\n", "RuleSyntaxError",
                            ":1:334: expression nested deeper than 64 levels"),
    "65 nested parens": ("update = " + "(" * 65 + "g" + ")" * 65 + "\n", "RuleSyntaxError",
                         ":1:74: expression nested deeper than 64 levels"),
    "10,000 unary minus": ("update = " + "-" * _DEEP + "g\n", "RuleSyntaxError", ":1:1: expression too deeply nested"),
    "500 unary minus": ("update = " + "-" * 500 + "g\n", "RuleSyntaxError",
                        ":1:75: expression nested deeper than 64 levels"),
    "10,000-term sum": ("update = g" + " + 1" * _DEEP + "\n", "RuleSyntaxError", ":1:1: expression too deeply nested"),
    "100-term sum": ("update = g" + "+1" * 100 + "\n", "RuleSyntaxError",
                     ":1:10: expression nested deeper than 64 levels"),
    "10,000-term power tower": ("update = g" + "**1" * _DEEP + "\n", "RuleSyntaxError",
                                ":1:1: expression too deeply nested"),
    "2,000-node expression": ("update = " + " + ".join(["(g * w)"] * 700) + "\n", "RuleSyntaxError",
                              ":1:10: expression nested deeper than 64 levels"),
    "huge file": ("# " + "x" * 70_000 + "\nupdate = g\n", "RuleSyntaxError",
                  ": file is 70014 bytes; a rule may have at most 65536"),
    "non-UTF-8": (b"hparams a=1\nupdate = g \xff\xfe\n", "RuleSyntaxError", ":2:12: not valid UTF-8 (byte 0xff)"),
    "latin-1": ("update = g  # caf\xe9\n".encode("latin-1"), "RuleSyntaxError", ":1:18: not valid UTF-8 (byte 0xe9)"),
    "NUL byte": ("update = g\nm = w\x00\n", "RuleSyntaxError", ":2:6: NUL byte in rule text"),
    "missing file": (None, "RuleSyntaxError", ": no such file"),
    "directory": (DIRECTORY, "RuleSyntaxError", ": is a directory, not a rule file"),
    "unknown route": ("route vector:\n  update = g\n", "RuleSyntaxError",
                      ":1:7: unknown route 'vector' (routes: default, matrix)"),
    "duplicate route": ("route matrix:\n  update = g\nroute default:\n  update = g\nroute matrix:\n  update = w\n",
                        "RuleSyntaxError", ":5:1: route 'matrix' appears twice"),
    "default route after statements": ("update = g\nroute default:\n  update = w\n", "RuleSyntaxError",
                                       ":2:1: route 'default' appears twice"),
    "route without colon": ("route matrix\n  update = g\n", "RuleSyntaxError", ":1:7: syntax error: invalid syntax"),
    "dunder name": ("__class__ = g\nupdate = g\n", "RuleSyntaxError",
                    ":1:1: names may not start with '__': '__class__'"),
    "dunder read": ("update = g * __builtins__\n", "RuleSyntaxError",
                    ":1:14: names may not start with '__': '__builtins__'"),
    "dunder hparam": ("hparams __a=1\nupdate = g\n", "RuleSyntaxError", ":1:9: names may not start with '__': '__a'"),
    "very long name": ("x" * 65 + " = g\nupdate = g\n", "RuleSyntaxError", ":1:1: name longer than 64 characters"),
    "very long read": ("update = g * " + "y" * 5000 + "\n", "RuleSyntaxError", ":1:14: name longer than 64 characters"),
    "very long hparam": ("hparams " + "b" * 65 + "=1\nupdate = g\n", "RuleSyntaxError",
                         ":1:9: name longer than 64 characters"),
    "state named step": ("step = lerp(step, g, 0.1)\nupdate = step\n", "RuleValidationError",
                         ":1:1: 'step' cannot be state (read before it is assigned): "
                         "the optimizer's step counter has that name"),
    "syntax warning only": ("update = 1if g else 2\n", "RuleSyntaxError",
                            ":1:10: not allowed in a rule: conditional expressions"),
    "non-printable": ("update = g\u00a0\n", "RuleSyntaxError",
                      ":1:11: syntax error: invalid non-printable character U+00A0"),
}

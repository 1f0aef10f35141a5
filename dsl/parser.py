"""Rule text -> IR.

Python's `ast` serves only as a tokenizer and parser. The resulting tree is walked with a
whitelist: assignments to a plain name, numbers, names, unary minus, the operators
`+ - * / **`, and calls of registered primitives. Anything else is a `RuleSyntaxError` with a
line and column. The text is never passed to `eval`/`exec`, and a few hard limits (file size,
statement count, expression depth and size) keep hostile input from exhausting the parser.

Grammar of a rule file (one statement per line, `#` comments):

    # Lion (Chen et al. 2023)                 <- leading comment block = the rule's doc
    hparams beta1=0.9 beta2=0.99 wd=0.0       <- any number of hparams lines
    update = sign(lerp(m, g, 1 - beta1)) + wd * w
    m = lerp(m, g, 1 - beta2)

A file may split into routes with `route matrix:` / `route default:` header lines; statements
before any header belong to `default`.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from pathlib import Path

from .errors import RuleSyntaxError, RuleValidationError
from .ir import (
    BINARY_OPS,
    EVAL_W,
    INPUTS,
    NEXT_W,
    OUTPUT,
    ROUTES,
    Assign,
    BinOp,
    Call,
    Expr,
    Name,
    Neg,
    Num,
    Program,
    Route,
    names_read,
)
from .primitives import PRIMITIVES

MAX_SOURCE_BYTES = 64 * 1024
MAX_STATEMENTS = 256
MAX_DEPTH = 64
MAX_NODES_PER_STATEMENT = 2000
MAX_HPARAMS = 64
MAX_NAME_LENGTH = 64

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HPARAMS_RE = re.compile(r"^(\s*)hparams\b(.*)$")
_ROUTE_RE = re.compile(r"^\s*route\s+([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(#.*)?$")
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")
_INT_RE = re.compile(r"[+-]?\d+\Z")
MAX_EXACT_INT = 2 ** 53          # an integer hparam beyond this is kept a float (it is one to the interpreter)
RESERVED = frozenset(INPUTS)
# ProgramOptimizer's own param-group keys (besides `lr`, an input): an hparam may not shadow them.
GROUP_KEYS = frozenset({"params", "route", "batch_dims", "train_mode"})
# The optimizer keeps its step counter in each parameter's state under this name.
STEP_KEY = "step"
_DETECTED_AT = re.compile(r"\s*\((detected at line \d+|<unknown>, line \d+)\)\s*$")
_DESCRIBE = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions", ast.Import: "imports", ast.ImportFrom: "imports",
    ast.Compare: "comparisons", ast.BoolOp: "boolean operators", ast.IfExp: "conditional expressions",
    ast.List: "lists", ast.Tuple: "tuples", ast.Dict: "dicts", ast.Set: "sets",
    ast.JoinedStr: "strings", ast.Starred: "starred expressions", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield", ast.NamedExpr: "walrus assignments",
    ast.AugAssign: "augmented assignment (write `x = x + ...`)", ast.AnnAssign: "annotations",
    ast.If: "if statements", ast.For: "loops", ast.While: "loops", ast.FunctionDef: "function definitions",
    ast.ClassDef: "class definitions", ast.With: "with statements", ast.Try: "try statements",
    ast.Return: "return", ast.Delete: "del", ast.Global: "global", ast.Nonlocal: "nonlocal",
    ast.Assert: "assert", ast.Raise: "raise", ast.Pass: "pass", ast.Break: "break", ast.Continue: "continue",
}


def parse_file(path: str | Path) -> Program:
    """Parse a rule file. Missing, unreadable, oversized and non-UTF-8 files are RuleErrors."""
    p = Path(path)
    try:
        if p.is_dir():
            raise RuleSyntaxError("is a directory, not a rule file", file=str(path))
        size = p.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise RuleSyntaxError(f"file is {size} bytes; a rule may have at most {MAX_SOURCE_BYTES}",
                                  file=str(path))
        with p.open("rb") as f:  # bounded: a device such as /dev/zero reports size 0 and never ends
            data = f.read(MAX_SOURCE_BYTES + 1)
        if len(data) > MAX_SOURCE_BYTES:
            raise RuleSyntaxError(f"file is more than {MAX_SOURCE_BYTES} bytes; a rule may have at most "
                                  f"{MAX_SOURCE_BYTES}", file=str(path))
    except FileNotFoundError:
        raise RuleSyntaxError("no such file", file=str(path)) from None
    except PermissionError:
        raise RuleSyntaxError("permission denied", file=str(path)) from None
    except OSError as exc:
        raise RuleSyntaxError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    except ValueError:  # e.g. a NUL character in the path
        raise RuleSyntaxError("not a valid file name", file=repr(str(path))) from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark, as some editors write
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RuleSyntaxError(f"not valid UTF-8 (byte 0x{data[exc.start]:02x})", file=str(path),
                              line=line, col=col) from None
    return parse(text, filename=str(path), name=p.stem)


def parse(text: str, filename: str | None = None, name: str | None = None) -> Program:
    """Parse rule text into a validated `Program`."""
    try:
        return _Parser(text).program(name)
    except RuleSyntaxError as exc:
        raise exc.with_file(filename) if filename else exc from None
    except RuleValidationError as exc:
        raise exc.with_file(filename) if filename else exc from None


class _Parser:
    def __init__(self, text: str):
        if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
            raise RuleSyntaxError(f"rule text is longer than {MAX_SOURCE_BYTES} bytes")
        if "\x00" in text:
            at = text.index("\x00")
            line = text[:at].count("\n") + 1
            raise RuleSyntaxError("NUL byte in rule text", line=line, col=at - (text.rfind("\n", 0, at) + 1) + 1)
        self.lines = text.splitlines()

    # -- top level ---------------------------------------------------------------------
    def program(self, name: str | None) -> Program:
        hparams: dict[str, float | int] = {}
        sections: list[tuple[str, list[tuple[int, int, str]]]] = [("default", [])]
        doc_lines: list[str] = []
        in_doc = True
        for lineno, raw in enumerate(self.lines, start=1):
            stripped = raw.strip()
            if in_doc and stripped.startswith("#"):
                doc_lines.append(stripped[1:].strip())
                continue
            if stripped:
                in_doc = False
            if not stripped or stripped.startswith("#"):
                continue
            m = _HPARAMS_RE.match(raw)
            if m:
                self._hparams(m.group(2), lineno, m.start(2), hparams)
                continue
            m = _ROUTE_RE.match(raw)
            if m:
                route = m.group(1)
                if route not in ROUTES:
                    raise RuleSyntaxError(f"unknown route '{route}' (routes: {', '.join(ROUTES)})",
                                          line=lineno, col=raw.index(route) + 1)
                if any(r == route for r, _ in sections[1:]) or (route == "default" and sections[0][1]):
                    raise RuleSyntaxError(f"route '{route}' appears twice", line=lineno, col=1)
                sections.append((route, []))
                continue
            indent = len(raw) - len(raw.lstrip())
            sections[-1][1].append((lineno, indent, raw[indent:]))
        all_lines = sorted(ln for _, lines in sections for ln in lines)
        if len(all_lines) > MAX_STATEMENTS:
            lineno, indent, _ = all_lines[MAX_STATEMENTS]
            raise RuleSyntaxError(f"more than {MAX_STATEMENTS} statements", line=lineno, col=indent + 1)
        routes = []
        n_statements = 0
        for route, lines in sections:
            if route == "default" and not lines and len(sections) > 1:
                continue
            body = self._statements(lines)
            n_statements += len(body)
            if n_statements > MAX_STATEMENTS:
                raise RuleSyntaxError(f"more than {MAX_STATEMENTS} statements")
            routes.append(Route(route, body))
        program = Program(tuple(hparams.items()), tuple(routes), doc="\n".join(doc_lines).strip(), name=name)
        validate(program)
        return program

    def _hparams(self, text: str, lineno: int, col0: int, out: dict[str, float | int]) -> None:
        """Parse `NAME=NUMBER ...`; `text` starts at 0-based column `col0` of the line. A number
        written as an integer stays an int; everything computes with it as a float."""
        body = text.split("#", 1)[0]
        pos = 0
        for token in body.split():
            pos = body.index(token, pos)
            col = col0 + pos + 1
            pos += len(token)
            key, eq, value = token.partition("=")
            if not eq or not _NAME_RE.match(key) or not _NUMBER_RE.match(value):
                raise RuleSyntaxError(f"hparams entries are NAME=NUMBER, got '{token[:40]}'", line=lineno, col=col)
            self._check_name(key, lineno, col)
            if key in RESERVED or key in (OUTPUT, NEXT_W, EVAL_W) or key in PRIMITIVES or key in GROUP_KEYS:
                raise RuleSyntaxError(f"'{key}' cannot be an hparam name (it is reserved)", line=lineno, col=col)
            if key in out:
                raise RuleSyntaxError(f"hparam '{key}' is declared twice", line=lineno, col=col)
            v = float(value)
            if not math.isfinite(v):
                raise RuleSyntaxError(f"hparam '{key}' must be finite", line=lineno, col=col)
            # written as an integer (`ns_steps=5`): kept an int, so printed and exported as one
            out[key] = int(value) if _INT_RE.match(value) and abs(v) <= MAX_EXACT_INT else v
            if len(out) > MAX_HPARAMS:
                raise RuleSyntaxError(f"more than {MAX_HPARAMS} hparams", line=lineno, col=col)

    def _statements(self, lines: list[tuple[int, int, str]]) -> tuple[Assign, ...]:
        out = []
        for lineno, indent, text in lines:
            out.extend(self._line(lineno, indent, text))
        return tuple(out)

    def _line(self, lineno: int, indent: int, text: str) -> list[Assign]:
        depth = 0
        for i, ch in enumerate(text):  # reject absurd nesting before the Python parser sees it
            if ch == "#":  # a comment (a '#' inside a string is rejected later with the string)
                break
            depth += ch in "([{"
            if depth > MAX_DEPTH:
                raise RuleSyntaxError(f"expression nested deeper than {MAX_DEPTH} levels",
                                      line=lineno, col=indent + i + 1)
            depth -= ch in ")]}"
        try:
            with warnings.catch_warnings():  # SyntaxWarnings would print to stderr
                warnings.simplefilter("ignore")
                tree = ast.parse(text, mode="exec")
        except SyntaxError as exc:
            col = (exc.offset or 1) + indent
            msg = _DETECTED_AT.sub("", exc.msg or "invalid syntax")
            if msg.startswith("Exceeds the limit"):  # int('9' * 5000): Python's digit limit
                msg = "number has too many digits"
            raise RuleSyntaxError(f"syntax error: {msg}", line=lineno, col=col) from None
        except (RecursionError, MemoryError):
            raise RuleSyntaxError("expression too deeply nested", line=lineno, col=indent + 1) from None
        except ValueError as exc:
            raise RuleSyntaxError(f"cannot parse: {exc}", line=lineno, col=indent + 1) from None
        out = []
        for stmt in tree.body:
            col = stmt.col_offset + indent + 1
            if not isinstance(stmt, ast.Assign):
                what = _DESCRIBE.get(type(stmt), type(stmt).__name__)
                if isinstance(stmt, ast.Expr):
                    what = "a bare expression (a statement must assign to a name)"
                raise RuleSyntaxError(f"not allowed in a rule: {what}", line=lineno, col=col)
            if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
                raise RuleSyntaxError("assign to exactly one plain name", line=lineno, col=col)
            target = stmt.targets[0].id
            self._check_name(target, lineno, col)
            self._nodes = 0
            value = self._expr(stmt.value, lineno, indent, 0)
            out.append(Assign(target, value, line=lineno, col=col))
        return out

    def _check_name(self, name: str, lineno: int, col: int) -> None:
        if len(name) > MAX_NAME_LENGTH:
            raise RuleSyntaxError(f"name longer than {MAX_NAME_LENGTH} characters", line=lineno, col=col)
        if name.startswith("__"):
            raise RuleSyntaxError(f"names may not start with '__': '{name}'", line=lineno, col=col)

    def _expr(self, node: ast.AST, lineno: int, indent: int, depth: int) -> Expr:
        line = lineno + getattr(node, "lineno", 1) - 1
        col = getattr(node, "col_offset", 0) + indent + 1
        if depth > MAX_DEPTH:
            raise RuleSyntaxError(f"expression nested deeper than {MAX_DEPTH} levels", line=line, col=col)
        self._nodes += 1
        if self._nodes > MAX_NODES_PER_STATEMENT:
            raise RuleSyntaxError(f"expression has more than {MAX_NODES_PER_STATEMENT} nodes", line=line, col=col)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                kind = "strings" if isinstance(v, (str, bytes)) else f"{type(v).__name__} literals"
                raise RuleSyntaxError(f"not allowed in a rule: {kind}", line=line, col=col)
            try:
                f = float(v)
            except OverflowError:
                f = math.inf
            if not math.isfinite(f):
                raise RuleSyntaxError("number is not finite", line=line, col=col)
            return Num(f)
        if isinstance(node, ast.Name):
            self._check_name(node.id, line, col)
            if node.id in PRIMITIVES:
                raise RuleSyntaxError(f"primitive '{node.id}' used as a value (call it)", line=line, col=col)
            return Name(node.id)
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                op = {ast.UAdd: "unary +", ast.Not: "not", ast.Invert: "~"}.get(type(node.op), "operator")
                raise RuleSyntaxError(f"not allowed in a rule: {op}", line=line, col=col)
            inner = self._expr(node.operand, lineno, indent, depth + 1)
            if isinstance(inner, Num):
                return Num(-inner.value)
            return Neg(inner)
        if isinstance(node, ast.BinOp):
            op = _OPS.get(type(node.op))
            if op is None:
                sym = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
                       ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^"}.get(type(node.op), "?")
                raise RuleSyntaxError(f"operator '{sym}' is not allowed (use {' '.join(BINARY_OPS)})",
                                      line=line, col=col)
            return BinOp(op, self._expr(node.left, lineno, indent, depth + 1),
                         self._expr(node.right, lineno, indent, depth + 1))
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise RuleSyntaxError("only registered primitives can be called", line=line, col=col)
            fn = node.func.id
            prim = PRIMITIVES.get(fn)
            if prim is None:
                raise RuleSyntaxError(f"unknown primitive '{fn[:MAX_NAME_LENGTH]}' (see `optforge primitives`)",
                                      line=line, col=col)
            if node.keywords:
                raise RuleSyntaxError(f"{fn}() takes positional arguments only", line=line, col=col)
            n = len(node.args)
            if not prim.min_args <= n <= prim.max_args:
                want = str(prim.min_args) if prim.min_args == prim.max_args else f"{prim.min_args} to {prim.max_args}"
                raise RuleSyntaxError(f"{fn}() takes {want} argument{'s' if want != '1' else ''}, got {n}",
                                      line=line, col=col)
            return Call(fn, tuple(self._expr(a, lineno, indent, depth + 1) for a in node.args))
        what = _DESCRIBE.get(type(node), type(node).__name__)
        raise RuleSyntaxError(f"not allowed in a rule: {what}", line=line, col=col)


def validate(program: Program) -> None:
    """Static checks that need no tensors: names resolve, `update` is assigned, inputs are read-only."""
    hp = program.hparams
    if not program.routes:
        raise RuleValidationError("the rule has no statements; it must assign 'update'")
    for route in program.routes:
        assigned: set[str] = set()
        for st in route.body:
            if st.target in RESERVED:
                raise RuleValidationError(f"'{st.target}' is an input and cannot be assigned",
                                          line=st.line, col=st.col)
            if st.target in hp:
                raise RuleValidationError(f"'{st.target}' is an hparam and cannot be assigned",
                                          line=st.line, col=st.col)
            if st.target in PRIMITIVES:
                raise RuleValidationError(f"'{st.target}' is a primitive and cannot be assigned",
                                          line=st.line, col=st.col)
            assigned.add(st.target)
        where = f"route '{route.name}'" if len(program.routes) > 1 else "the rule"
        if OUTPUT in assigned and NEXT_W in assigned:
            raise RuleValidationError(f"{where} assigns both '{OUTPUT}' and '{NEXT_W}': a step is one of "
                                      f"w <- w - lr * {OUTPUT} or w <- {NEXT_W}")
        if OUTPUT not in assigned and NEXT_W not in assigned:
            raise RuleValidationError(f"{where} never assigns '{OUTPUT}' (or '{NEXT_W}')")
        for name in (STEP_KEY, NEXT_W, EVAL_W):   # never state (read before it is assigned)
            for st in route.body:
                if name in names_read(st.value):
                    why = ("the optimizer's step counter has that name" if name == STEP_KEY
                           else "it is an output of the step")
                    raise RuleValidationError(f"'{name}' cannot be state (read before it is assigned): {why}",
                                              line=st.line, col=st.col)
                if st.target == name:
                    break

"""Copy real Python source into an exported file: the shell module, and helper functions with
everything they call.

An exported optimizer runs the same code as the interpreter, not a second copy kept in strings:
`module_body(module)` is a module's code below its docstring and imports, `methods_after(cls,
name)` a class's methods after one of them (the shell `dsl.shell`: its functions and the methods
of `RuleOptimizer` after `__init__`, pasted into the exported class), and
`closure(functions)` is the source of some functions (the primitives' reference and scalar
functions an exported rule calls, `dsl.primitives`) together with the module-level functions and
constants they use, found by reading their code (`ast`): a function of optforge's is copied
without its registration decorator, a constant with its defining line. Only torch and the
standard library may be imported by what is copied (`ALLOWED_MODULES`); anything else is an error
here, at export time, never in the exported file.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from functools import cache

ALLOWED_MODULES = frozenset({"torch", "math", "functools", "collections", "numbers"})


@cache
def _module_tree(module: types.ModuleType) -> tuple[str, ast.Module]:
    source = inspect.getsource(module)
    return source, ast.parse(source)


def module_body(module: types.ModuleType) -> str:
    """The module-level code of `module` after its docstring and imports, without its classes."""
    source, tree = _module_tree(module)
    lines = source.splitlines()
    keep: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef)) or \
                (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        keep.append("\n".join(lines[first - 1:node.end_lineno]))
    return "\n\n\n".join(keep)


def methods_after(cls: type, first: str, omit: frozenset[str] = frozenset()) -> str:
    """The source of class `cls` after its method `first` (comments included), to be pasted into
    another class's body; the methods named in `omit` are left out."""
    source, tree = _module_tree(inspect.getmodule(cls))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    lines = source.splitlines()
    start = next(m for m in node.body if isinstance(m, ast.FunctionDef) and m.name == first).end_lineno
    drop: set[int] = set()
    for m in node.body:
        if isinstance(m, ast.FunctionDef) and m.name in omit:
            top = min([m.lineno] + [d.lineno for d in m.decorator_list]) - 1
            if top >= 1 and not lines[top - 1].strip():
                top -= 1                                    # the blank line before it
            drop.update(range(top, m.end_lineno))
    return "\n".join(ln for k, ln in enumerate(lines[:node.end_lineno]) if k >= start and k not in drop).strip("\n")


def _function_tree(fn) -> tuple[str, ast.FunctionDef]:
    text = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(text).body[0]
    assert isinstance(node, ast.FunctionDef), fn
    return text, node


def function_source(fn, doc: str | None = None) -> str:
    """The source of `fn`, from its `def` line (decorators are the registry's, not the file's),
    with `doc` as its docstring where it has none."""
    text, node = _function_tree(fn)
    lines = text.splitlines()
    head, body = lines[node.lineno - 1:node.body[0].lineno - 1], lines[node.body[0].lineno - 1:]
    if doc and ast.get_docstring(node) is None:
        indent = body[0][: len(body[0]) - len(body[0].lstrip())]
        doc_lines = textwrap.wrap(doc, 96 - len(indent) - 6) or [""]
        head += [f'{indent}"""{doc_lines[0]}'] + [indent + ln for ln in doc_lines[1:]]
        head[-1] += '"""'
    return "\n".join(head + body).strip("\n")


def _constant_source(module: types.ModuleType, name: str) -> str:
    source, tree = _module_tree(module)
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return "\n".join(source.splitlines()[node.lineno - 1:node.end_lineno])
    raise ValueError(f"export: {module.__name__}.{name} is not a module-level assignment")


def _is_ours(value) -> bool:
    return isinstance(value, types.FunctionType) and value.__module__.split(".")[0] == "dsl"


def closure(functions, docs: dict | None = None) -> tuple[list[str], list[str]]:
    """(constants, functions): the source blocks `functions` need, dependencies first; a function
    without a docstring gets its entry in `docs` (function -> one line)."""
    constants: dict[str, str] = {}
    order: list = []
    seen: set = set()

    def visit(fn) -> None:
        if fn in seen:
            return
        seen.add(fn)
        _, node = _function_tree(fn)
        module = inspect.getmodule(fn)
        code = [*node.body, node.args]                      # not the decorators: the registry's
        for ref in sorted({n.id for part in code for n in ast.walk(part) if isinstance(n, ast.Name)}):
            if ref not in fn.__globals__:
                continue                                    # a builtin or a local name
            value = fn.__globals__[ref]
            if isinstance(value, types.ModuleType):
                if value.__name__ not in ALLOWED_MODULES:
                    raise ValueError(f"export: {fn.__name__} uses module {value.__name__}")
            elif _is_ours(value):
                visit(value)
            elif not callable(value) and ref not in constants:
                constants[ref] = _constant_source(module, ref)
        order.append(fn)

    for fn in sorted(functions, key=lambda f: f.__name__):
        visit(fn)
    docs = docs or {}
    return list(constants.values()), [function_source(fn, docs.get(fn)) for fn in order]


def defined_names(*modules: types.ModuleType) -> frozenset[str]:
    """Every module-level name of `modules`: the names an exported file may define."""
    return frozenset(name for m in modules for name in vars(m) if not name.startswith("__"))

"""`optforge primitives`: the primitive registry with one-line docs."""

from __future__ import annotations

HELP = "list the primitives a rule may call, and the inputs it may read"


def add_arguments(p) -> None:
    from dsl.primitives import KINDS

    p.add_argument("--kind", choices=KINDS, help="only primitives of this kind")


def run(args) -> int:
    from dsl.ir import INPUT_DOCS
    from dsl.primitives import KINDS, PRIMITIVES

    print("inputs (read-only):")
    for name, doc in INPUT_DOCS.items():
        print(f"  {name:<24} {doc}")
    print("operators: + - * / ** and unary -;  output: assign `update` (w <- w - lr * update)")
    for kind in KINDS:
        if args.kind and kind != args.kind:
            continue
        print(f"\n{kind}:")
        for prim in sorted((p for p in PRIMITIVES.values() if p.kind == kind), key=lambda p: p.name):
            print(f"  {prim.signature:<24} {prim.doc}")
    return 0

"""The primitive registry: every function a rule may call, one entry each.

An entry (`Primitive`, name -> entry in `PRIMITIVES`) holds everything about a primitive, and the
interpreter, compiler, exporter, ensemble trainer, mutation and `optforge primitives` read it:

- `fn(*args, bd=0)`: the reference, on one parameter's tensors (Python floats for scalar
  arguments); `bd` leading ensemble axes are never reduced over; a group primitive (`global_norm`)
  takes and returns the whole group's list. The exporter copies `fn`'s source into an exported
  file where the rule calls it, so both run the same code;
- `scalar(*floats)`: the same on Python floats, with IEEE results and never an exception (x / 0
  is inf, exp(1000) is inf): the one implementation the interpreter runs for scalars (bias
  corrections and the like) and the exporter copies (`dsl.primitives.scalars`);
- `kernel`: how it runs across a whole group with torch's foreach ops, which argument buffers it
  may overwrite, and the matching one-tensor torch call an export prints
  (`dsl.primitives.kernels`; the default runs `fn` per tensor and exports a call of `fn`);
- `sign`: whether the result is >= 0 (or NaN), always or by a rule over the arguments (so the
  protected sqrt(|x|) skips its abs pass); `fresh`: each call returns a new buffer;
- `kind`, `args`, `doc`; `batches_exactly` (a stacked lr grid equals the separate runs);
  `weight` and `constants` for the search's mutations; `route` where mutations may use it on one
  route only (matrix algebra: "matrix"); `slot` for the Optuna slot strategy; `lower` where the
  compiler writes it as other instructions (`pow(x, y)` is `abs(x) ** y`); `branch` for a lazy
  choice (`when`): the argument a condition takes, the other branch's instructions are skipped.

The operators `+ - * / **` and the compiler's fused kernels are entries of the same type in
`OPERATORS` (`instruction(op)` finds either). The primitives, with their papers:
`dsl.primitives.elementwise`, `.reductions` (with the group reductions of Prodigy), `.structure`
(Muon's Newton–Schulz, Adafactor's factors, LAMB's trust ratio), `.matrix` (Shampoo's and SOAP's
matrix algebra on matrix views, the shape scalars) and `.control` (when / every, lazy choices).

Adding a primitive: one decorated function in the module of its kind (with its scalar form
beside it where Python's own would raise or differ from torch), and its float64 numpy reference
in tests/dsl/primitive_references.py; the tests walk the registry and check the new entry
against its reference (0, negatives, NaN, inf, bf16), its scalar form, its export, ensemble axes,
the gate, fingerprint and state bytes.
"""

from __future__ import annotations

from . import control, elementwise, matrix, operators, reductions, structure  # noqa: F401  (they fill the tables)
from .kernels import PER_TENSOR, Kernel
from .registry import KINDS, OPERATORS, PRIMITIVES, Primitive, instruction
from .structure import MAX_NS_STEPS, NS_COEFFICIENTS, NS_EPS, newton_schulz

__all__ = ["KINDS", "MAX_NS_STEPS", "NS_COEFFICIENTS", "NS_EPS", "OPERATORS", "PER_TENSOR", "PRIMITIVES", "Kernel",
           "Primitive", "call_scalar", "instruction", "newton_schulz"]


def call_scalar(prim: Primitive, args: list[float]) -> float:
    """Evaluate a primitive (or operator) on Python floats, as the interpreter does for scalars."""
    return float(prim.scalar(*args))

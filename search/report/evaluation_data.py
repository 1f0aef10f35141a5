"""Reading an evaluation's results.json back: its runs, and per-rule diagnostics summaries.

``optforge evaluate`` and the search's meta-validation (``RUN/validation/ID/results.json``)
write the same schema (``evaluators.evaluate.Report.to_dict``); the reports read it back from
the file rather than from memory, so ``optforge report`` can render any such folder later.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from pathlib import Path

from evaluators.train import RunResult

_FIELDS = set(RunResult.__dataclass_fields__)


def load(path: str | Path) -> dict | None:
    """A results.json as a dict (None when missing or not JSON)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _run(record: Mapping) -> RunResult:
    data = {k: v for k, v in record.items() if k in _FIELDS}
    for key in ("train_curve", "val_curve"):  # strict JSON wrote non-finite losses as null
        data[key] = [(s, math.nan if v is None else v) for s, v in data.get(key, [])]
    for key in ("final_val_loss", "final_train_loss"):
        if data.get(key) is None:
            data[key] = math.inf
    return RunResult.from_dict(data)


def eval_runs(results: Mapping) -> dict[str, dict[str, list[RunResult]]]:
    """task -> rule label -> its evaluation-phase runs (tuning runs left out), in file order."""
    out: dict[str, dict[str, list[RunResult]]] = {}
    for record in results.get("runs", []):
        if record.get("phase") == "eval":
            out.setdefault(record["task"], {}).setdefault(record["label"], []).append(_run(record))
    return out


def _median(values) -> float | None:
    xs = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(xs) if xs else None


DIAGNOSTIC_HEADERS = ("task", "rule", "seeds", "val loss (median)", "generalisation gap",
                      "update RMS", "update / weight RMS", "sharpness", "steps to target")


def diagnostics_rows(results: Mapping) -> list[tuple]:
    """One row per task and rule: medians over the evaluation seeds of each diagnostic
    (``evaluators.diagnostics``), for the table headed `DIAGNOSTIC_HEADERS`."""
    rows = []
    for task, by_label in eval_runs(results).items():
        for label, runs in by_label.items():
            d = [r.diagnostics for r in runs]
            steps = [None if r.steps_to_target is None else float(r.steps_to_target) for r in runs]
            rows.append((task, label, len(runs), _median(r.final_val_loss for r in runs),
                         _median(x.generalization_gap for x in d), _median(x.update_rms for x in d),
                         _median(x.update_ratio for x in d), _median(x.sharpness for x in d),
                         _median(steps) if any(s is not None for s in steps) else None))
    return rows

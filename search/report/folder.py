"""``optforge report FOLDER``: tell what a folder holds and write its report again.

A **search** run folder has ``journal.jsonl`` (the population is rebuilt from it; the config from
``config.yaml``, the start time from the journal's first record, the wall time from the last
results.json or else from the journal's first and last records); the other kinds have a
``results.json`` whose ``schema`` names them: ``optforge.evaluate/1`` (``optforge evaluate --out``,
or one of a search's ``validation/ID`` folders), ``optforge.ablate/1`` and
``optforge.regimes/1``. Anything else is a ValueError that says what was looked for.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import evaluation_data as ed

KINDS = {"optforge.evaluate/1": "evaluate", "optforge.ablate/1": "ablate",
         "optforge.regimes/1": "regimes"}


@dataclass(frozen=True)
class SavedConfig:
    """A run's resolved config as written to config.yaml: what `write_report` reads of it."""

    name: str
    data: dict = field(default_factory=dict)

    def resolved(self) -> dict:
        return self.data


def kind_of(folder: Path) -> str:
    """``search``, ``evaluate``, ``ablate`` or ``regimes``; ValueError otherwise."""
    if (folder / "journal.jsonl").is_file():
        return "search"
    results = ed.load(folder / "results.json")
    if results is not None and results.get("schema") in KINDS:
        return KINDS[results["schema"]]
    raise ValueError(f"{folder} holds neither a search (journal.jsonl) nor the results.json of "
                     f"optforge evaluate, ablate or regimes")


def _time(record: dict) -> _dt.datetime:
    return _dt.datetime.fromisoformat(record["time"])


def render_search(folder: Path) -> Path:
    from populations.journal import read_records
    from populations.population import Population

    from .search_page import write_report

    records = read_records(folder / "journal.jsonl")
    if not records:
        raise ValueError(f"{folder / 'journal.jsonl'} has no records")
    data = {}
    if (folder / "config.yaml").is_file():
        data = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    previous = ed.load(folder / "results.json") or {}
    started = _time(records[0])
    wall = previous.get("wall_time_s")
    if wall is None:
        wall = (_time(records[-1]) - started).total_seconds()
    write_report(Population.from_records(records), folder,
                 SavedConfig(data.get("name") or folder.name, data), started, wall)
    return folder / "report.html"


def render(folder: str | Path) -> tuple[str, Path]:
    """Write the report of ``folder`` again; returns (kind, path of report.html)."""
    from .ablation_page import plot_ablation, write_ablation_report
    from .evaluate_page import write_evaluate_report
    from .regimes_page import plot_regimes, write_regimes_report

    folder = Path(folder)
    kind = kind_of(folder)
    if kind == "search":
        return kind, render_search(folder)
    if kind == "evaluate":
        return kind, write_evaluate_report(folder)
    results = ed.load(folder / "results.json")
    if kind == "ablate":
        results["plot"] = plot_ablation(results, folder / "ablation.png")
        return kind, write_ablation_report(folder, results)
    results["plot"] = plot_regimes(results, folder / "regimes.png")
    return kind, write_regimes_report(folder, results)

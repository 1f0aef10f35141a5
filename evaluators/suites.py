"""Task suites: YAML files loaded into frozen dataclasses, strictly.

A suite names the tasks a rule is evaluated on. Two ship with optforge, under
`configs/suites/`: `proxy` (cheap tasks used inside the search) and `heldout` (larger models and
longer runs, never seen by the search, used only for meta-validation). The size preset
(`tiny`, `cpu`, `gpu`) is chosen when the suite is run, not in the file; a task entry may set its
step count per preset to train longer than the task's default. Example::

    name: heldout
    description: larger models and longer runs
    tasks:
      - name: digits_cnn
      - name: charlm
        steps: {cpu: 1000, gpu: 6000}

    >>> suite = load_suite("proxy")           # or load_suite("path/to/suite.yaml")
    >>> [t.name for t in suite.tasks][:2], suite.tasks[0].steps_for("cpu")
    (['quadratic', 'digits_logreg'], None)

Unknown keys, missing keys, wrong types, unknown task names and unknown presets are `ValueError`s
that name the offending key (e.g. ``tasks[1].steps.cpu``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from evaluators.tasks import PRESETS, TASKS

__all__ = ["PRESETS", "Suite", "SuiteTask", "load_suite", "parse_suite", "suite_names"]


@dataclass(frozen=True)
class SuiteTask:
    """One task of a suite: a registered task name and optional per-preset step counts."""

    name: str
    steps: MappingProxyType  # preset -> steps; presets not listed use the task's own count

    def steps_for(self, preset: str) -> int | None:
        """The step count for `preset`, or None to use the task's default."""
        return self.steps.get(preset)


@dataclass(frozen=True)
class Suite:
    """A named, ordered set of tasks."""

    name: str
    description: str
    tasks: tuple[SuiteTask, ...]
    source: str  # where it was loaded from (for provenance)

    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def select(self, names: list[str] | None, preset: str) -> tuple[tuple[str, int | None], ...]:
        """(task, steps at ``preset``) for ``names`` in that order (None: every task of the suite);
        a name the suite does not hold is a ValueError naming it and the suite's tasks."""
        names = list(names) if names else list(self.task_names())
        unknown = [n for n in names if n not in self.task_names()]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not in suite {self.name!r} "
                             f"({', '.join(self.task_names())})")
        by_name = {t.name: t for t in self.tasks}
        return tuple((n, by_name[n].steps_for(preset)) for n in names)


def _suite_dir():
    return resources.files("configs") / "suites"


def suite_names() -> list[str]:
    """Names of the suites that ship with optforge."""
    return sorted(p.name[:-5] for p in _suite_dir().iterdir() if p.name.endswith(".yaml"))


def _expect(value: Any, kind: type | tuple[type, ...], key: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"suite key {key!r}: expected {want}, got {type(value).__name__}")
    return value


def _check_keys(data: dict, allowed: set[str], required: set[str], where: str) -> None:
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in allowed:
            raise ValueError(f"unknown suite key {prefix + str(key)!r} "
                             f"(allowed: {', '.join(sorted(allowed))})")
    for key in sorted(required - set(data)):
        raise ValueError(f"missing suite key {prefix + key!r}")


def _parse_task(raw: Any, where: str) -> SuiteTask:
    if isinstance(raw, str):
        raw = {"name": raw}
    _expect(raw, dict, where)
    _check_keys(raw, {"name", "steps"}, {"name"}, where)
    name = _expect(raw["name"], str, f"{where}.name")
    if name not in TASKS:
        raise ValueError(f"suite key {where + '.name'!r}: unknown task {name!r}; "
                         f"choose from {', '.join(sorted(TASKS))}")
    steps = _expect(raw.get("steps", {}), dict, f"{where}.steps")
    for preset, count in steps.items():
        key = f"{where}.steps.{preset}"
        if preset not in PRESETS:
            raise ValueError(f"suite key {key!r}: unknown preset; choose from {', '.join(PRESETS)}")
        if _expect(count, int, key) < 1:
            raise ValueError(f"suite key {key!r}: steps must be >= 1, got {count}")
    return SuiteTask(name, MappingProxyType(dict(steps)))


def parse_suite(data: Any, source: str = "<dict>") -> Suite:
    """Validate a suite's parsed YAML (a dict) and build the `Suite`."""
    _expect(data, dict, "<top level>")
    _check_keys(data, {"name", "description", "tasks"}, {"name", "tasks"}, "")
    name = _expect(data["name"], str, "name")
    description = _expect(data.get("description", ""), str, "description").strip()
    raw_tasks = _expect(data["tasks"], list, "tasks")
    if not raw_tasks:
        raise ValueError("suite key 'tasks': a suite needs at least one task")
    tasks = tuple(_parse_task(t, f"tasks[{i}]") for i, t in enumerate(raw_tasks))
    dupes = sorted({t.name for t in tasks if [u.name for u in tasks].count(t.name) > 1})
    if dupes:
        raise ValueError(f"suite key 'tasks': task(s) listed twice: {', '.join(dupes)}")
    return Suite(name, description, tasks, source)


def load_suite(spec: str | Path) -> Suite:
    """Load a shipped suite by name ("proxy", "heldout") or a suite YAML file by path."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        text, source = path.read_text(), str(path)
    else:
        shipped = _suite_dir() / f"{spec}.yaml"
        if not shipped.is_file():
            raise ValueError(f"unknown suite {str(spec)!r}; choose from "
                             f"{', '.join(suite_names())} or give a path to a .yaml file")
        text, source = shipped.read_text(), f"configs/suites/{spec}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML ({exc})") from None
    return parse_suite(data, source)

"""Plain-python jobs for tests/search/test_executors.py. They run in Ray workers, which import this
module by name, so it must stay importable (the tests put this folder on the workers' PYTHONPATH)
and must not import torch (a worker that imports torch takes about 3 s to start)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def describe(payload: dict) -> dict:
    """A small function of a dict payload, so results are easy to compare with the serial run."""
    return {"id": payload["id"], "value": payload["a"] * payload["b"] + len(payload.get("text", ""))}


def fail_value_error(message: str) -> None:
    raise ValueError(message)


def fail_rule_error(message: str) -> None:
    from dsl.errors import RuleSyntaxError

    raise RuleSyntaxError(message, file="rule.opt", line=3, col=7)


class NeedsTwoArgs(Exception):
    """Pickles fine in the worker but cannot be rebuilt from its args in the driver."""

    def __init__(self, message: str, code: int):
        super().__init__(f"{message} (code {code})")


def fail_unrebuildable(message: str) -> None:
    raise NeedsTwoArgs(message, 42)


class Unpicklable(Exception):
    """Carries a lock, so the worker cannot pickle it."""

    def __init__(self, message: str):
        import threading

        super().__init__(message)
        self.lock = threading.Lock()


def fail_unpicklable(message: str) -> None:
    raise Unpicklable(message)


def sleep_then(payload: tuple[float, object]) -> object:
    seconds, value = payload
    time.sleep(seconds)
    return value


def die_once(marker: str) -> str:
    """Kill this worker process the first time (no marker yet); succeed on the retry."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)
    return f"survived (first attempt pid {path.read_text()}, now {os.getpid()})"


def node_id(seconds: float) -> str:
    """The id of the Ray node running this job, after holding its CPU a while."""
    import ray

    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()


def import_project(_: object) -> dict:
    """Where the worker finds the project's packages (they must import without extra setup)."""
    import dsl
    import evaluators
    import search

    return {name: module.__file__ for name, module in (("search", search), ("dsl", dsl), ("evaluators", evaluators))}

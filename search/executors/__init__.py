"""Where evaluations run: ``serial`` in this process, ``ray`` as Ray tasks.

``make_executor(kind, **options)`` builds one; both satisfy `Executor` (``submit(fn, payload)``
returns a ``concurrent.futures.Future``, ``capacity``, idempotent ``shutdown``, context manager)
and report failures as `ExecutorError` subclasses. Importing this package does not import Ray;
the Ray executor imports it when built.
"""

from __future__ import annotations

import inspect

from search.executors.base import EvaluationTimeout, Executor, ExecutorError, RemoteTraceback, WorkerLost
from search.executors.ray_executor import RayExecutor
from search.executors.serial import SerialExecutor

EXECUTORS: dict[str, type] = {"serial": SerialExecutor, "ray": RayExecutor}


def make_executor(kind: str, **options) -> Executor:
    """Build the executor called ``kind`` with ``options`` (its constructor's keyword arguments)."""
    try:
        cls = EXECUTORS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown executor {kind!r}; choose from: {', '.join(EXECUTORS)}") from None
    params = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"executor {kind!r} has no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(params) or 'none'}")
    return cls(**options)


__all__ = [
    "EXECUTORS",
    "EvaluationTimeout",
    "Executor",
    "ExecutorError",
    "RayExecutor",
    "RemoteTraceback",
    "SerialExecutor",
    "WorkerLost",
    "make_executor",
]

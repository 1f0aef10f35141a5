"""What every executor promises the search driver.

An executor runs *jobs*: a module-level (hence picklable) function applied to one small payload
(rule text and settings), and hands back a `concurrent.futures.Future` at once. The future
resolves to ``fn(payload)`` or carries an exception:

- the exception ``fn`` raised, as its own type where it survives the trip back (so the driver can
  ``except dsl.errors.RuleError``), with the worker's traceback chained as ``__cause__``;
- `EvaluationTimeout` when the job ran past ``timeout_s`` and was cancelled;
- `WorkerLost` when the process or machine running it died and the retries ran out;
- `ExecutorError` for anything else that went wrong on the way (an exception that could not be
  sent back, a job that could not be sent out).

``submit`` never raises because of ``fn``; every message is one line. ``capacity`` says how many
jobs the driver should keep in flight; the driver waits with ``concurrent.futures.as_completed``
or ``wait(..., return_when=FIRST_COMPLETED)`` and never blocks on one slow job. ``shutdown`` is
idempotent and cancels what is still running (a cancelled job's future is ``cancelled()``).
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable


class ExecutorError(Exception):
    """A job could not be run to an answer; the message is one line."""


class EvaluationTimeout(ExecutorError):
    """The job ran longer than the executor's ``timeout_s`` and was cancelled."""


class WorkerLost(ExecutorError):
    """The worker process or node running the job died, and no retry was left."""


class RemoteTraceback(Exception):
    """The traceback text of an exception raised in another process, chained as ``__cause__``
    of the re-raised exception so that a printed traceback shows where it really happened
    (the same device as ``concurrent.futures.ProcessPoolExecutor``)."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


@runtime_checkable
class Executor(Protocol):
    """The interface the search driver programs against."""

    name: str
    capacity: int

    def submit(self, fn: Callable[[Any], Any], payload: Any) -> cf.Future: ...

    def shutdown(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc_info: object) -> None: ...


class ExecutorBase(abc.ABC):
    """Shared plumbing: the context-manager protocol on top of ``shutdown``."""

    name = "base"
    capacity = 1

    @abc.abstractmethod
    def submit(self, fn: Callable[[Any], Any], payload: Any) -> cf.Future:
        """Run ``fn(payload)``; the Future carries its result or its exception."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Cancel what is still running and release resources (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def one_line(text: object, limit: int = 500) -> str:
    """Collapse ``text`` to a single line of at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def last_line(text: str) -> str:
    """The last non-blank line of a traceback: ``module.Type: message``."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def job_name(fn: Callable[..., Any]) -> str:
    """``module.function`` for messages."""
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', None) or getattr(fn, '__name__', repr(fn))}"


def settle(future: cf.Future, *, result: Any = None, error: BaseException | None = None) -> bool:
    """Resolve ``future`` unless it is already done or cancelled; True if this call resolved it."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except cf.InvalidStateError:
        return False
    return True

"""The in-process executor: the default for tests and small runs.

``submit`` runs ``fn(payload)`` right away in the calling thread and returns a future that is
already done, so a driver written for the Ray executor works unchanged (``as_completed`` yields
the futures in submission order). No extra process, no pickling: ``fn`` receives the very payload
object the driver passed (Ray hands workers a copy; a job must not rely on mutating its payload).

A timeout cannot be enforced in-process: there is no safe way to stop a Python function running in
the same thread. ``timeout_s`` is therefore advisory here: a job that runs past it still returns
its result, is logged as a warning, and is counted in ``overruns``, so a run that needs hard
limits knows to use the Ray executor (whose workers can be killed).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections.abc import Callable
from typing import Any

from search.executors.base import ExecutorBase, job_name, settle

log = logging.getLogger(__name__)


class SerialExecutor(ExecutorBase):
    """Runs each job inside ``submit``; ``capacity`` is 1."""

    name = "serial"

    def __init__(self, timeout_s: float | None = None):
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self.capacity = 1
        self.overruns = 0  # jobs that ran past timeout_s (they still returned their result)
        self.last_elapsed_s: float | None = None  # wall time of the latest job
        self._closed = False

    def submit(self, fn: Callable[[Any], Any], payload: Any) -> cf.Future:
        if self._closed:
            raise RuntimeError("cannot submit to the serial executor after shutdown()")
        future: cf.Future = cf.Future()
        start = time.perf_counter()
        try:
            value = fn(payload)
        except Exception as exc:  # the job's own failure travels on the future
            settle(future, error=exc)
        else:
            settle(future, result=value)
        finally:
            self.last_elapsed_s = time.perf_counter() - start
        if self.timeout_s is not None and self.last_elapsed_s > self.timeout_s:
            self.overruns += 1
            log.warning("%s took %.1f s, over timeout_s=%g s (not enforceable in the serial executor)",
                        job_name(fn), self.last_elapsed_s, self.timeout_s)
        return future

    def shutdown(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"SerialExecutor(timeout_s={self.timeout_s!r})"

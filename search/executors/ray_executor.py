"""Evaluations as Ray tasks, on this machine or a cluster.

Ray (Moritz et al. 2018, "Ray: A Distributed Framework for Emerging AI Applications", OSDI) runs
each job as a stateless task that asks for ``num_cpus`` and ``num_gpus`` (a fraction such as 0.25
lets four small evaluations share one GPU; Ray sets ``CUDA_VISIBLE_DEVICES`` in the worker). The
payload travels in the task arguments; it is meant to be small (rule text and settings).

Failures, as the driver sees them on the job's future (see `search.executors.base`):

- worker or node death is retried by Ray up to ``max_retries`` times (system failures only;
  ``retry_exceptions=False``, an exception raised by the job is never retried); after that the
  future carries `WorkerLost`;
- an exception raised by the job arrives as its own type (``RayTaskError.cause``) with the
  worker's traceback chained as ``__cause__``; one that cannot be pickled in the worker or rebuilt
  in the driver arrives as `ExecutorError` carrying its last traceback line;
- one watcher thread cancels (``ray.cancel(ref, force=True)``, which kills the worker process)
  every job older than ``timeout_s`` and sets `EvaluationTimeout` on its future. The clock starts
  at ``submit``, so it includes queueing and the start of a fresh worker (about 3 s where the job
  imports torch): keep at most ``capacity`` jobs in flight and leave that margin.

Starting Ray. ``address=None`` starts a local Ray with the dashboard off, worker output not copied
to the driver (``log_to_driver=False``) and Ray's own log level at WARNING; ``init_kwargs``
overrides any of these (``{"num_cpus": 4}``, ``{"log_to_driver": True}``, ``{"runtime_env": ...}``).
Ray's session files (sockets, logs, spilled objects) go under ``temp_dir`` if given, else under
``$RAY_TMPDIR/ray`` or ``/tmp/ray``; keep the path short, Unix socket paths are limited to about
107 characters. From Ray 2.59 a local Ray enables token authentication and, unless a token is
already configured, writes a new one to ``~/.ray/auth_token`` (a path Ray does not let one move).
To keep the home folder clean, when no token is configured (neither ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH``, an existing ``~/.ray/auth_token`` nor ``RAY_AUTH_MODE=disabled``) this
executor generates one and puts it in the process environment (``RAY_AUTH_MODE=token``,
``RAY_AUTH_TOKEN``), where the Ray processes it starts inherit it; it stays there for the life of
the process, as Ray's own ``RAY_AUTH_MODE`` does, so a later local Ray in the same process reuses
it. Nothing is written under the home folder then.

``address="auto"`` or ``"HOST:PORT"`` connects to a running cluster (``ray start --head``); the
driver must run on one of its nodes, with the cluster's token available if it uses one. If Ray is
already initialised in this process it is reused as it is and left running at ``shutdown``.

Workers import ``fn`` by its module name: with ``pip install -e .`` every worker on this machine
imports ``search``, ``evaluators`` and ``dsl`` like the driver does (Ray also puts the driver's
working directory on the workers' ``sys.path``); on other nodes install the package too, or pass
``init_kwargs={"runtime_env": {"working_dir": ...}}``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import heapq
import itertools
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.executors.base import (
    EvaluationTimeout,
    ExecutorBase,
    ExecutorError,
    RemoteTraceback,
    WorkerLost,
    job_name,
    last_line,
    one_line,
    settle,
)

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the "ray::task()" line of remote tracebacks
_RESOURCE_UNIT = 10_000  # Ray accounts fractional resources in 1/10000ths


def _run_job(fn: Callable[[Any], Any], payload: Any) -> Any:
    """The Ray task: one job in a worker process."""
    return fn(payload)


def _slots(available: float, per_job: float) -> int:
    return int(round(available * _RESOURCE_UNIT)) // int(round(per_job * _RESOURCE_UNIT))


def compute_capacity(nodes: Iterable[Mapping[str, float]], num_cpus: float, num_gpus: float = 0,
                     max_in_flight: int | None = None) -> int:
    """How many jobs to keep in flight: ``max_in_flight`` if given, else how many jobs fit on the
    nodes at once (per node, the CPU slots, or the lesser of CPU and GPU slots when ``num_gpus`` is
    positive; summed). ``nodes`` are the resource totals of the alive nodes. Raises
    `ExecutorError` when no node can run one job, since such jobs would wait forever."""
    nodes = list(nodes)
    per_node = []
    for res in nodes:
        slots = _slots(res.get("CPU", 0.0), num_cpus)
        if num_gpus > 0:
            slots = min(slots, _slots(res.get("GPU", 0.0), num_gpus))
        per_node.append(slots)
    if not any(per_node):
        cpus = max((res.get("CPU", 0.0) for res in nodes), default=0.0)
        gpus = max((res.get("GPU", 0.0) for res in nodes), default=0.0)
        raise ExecutorError(f"no Ray node can run a job asking num_cpus={num_cpus:g}, num_gpus={num_gpus:g} "
                            f"(largest node: {cpus:g} CPU, {gpus:g} GPU; {len(nodes)} node(s))")
    return max_in_flight if max_in_flight is not None else max(1, sum(per_node))


def _keep_token_out_of_home() -> str:
    """Make a local Ray use a token that lives in the environment, not in ``~/.ray/auth_token``.
    Returns where the token comes from, for the log."""
    env = os.environ
    if env.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return "none (RAY_AUTH_MODE=disabled)"
    if env.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if env.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH={env['RAY_AUTH_TOKEN_PATH']}"
    try:
        default = Path.home() / ".ray" / "auth_token"
        if default.is_file():
            return str(default)
    except (RuntimeError, OSError):  # no home folder: nothing to protect, nothing to reuse
        pass
    # Only the token: Ray itself switches RAY_AUTH_MODE to "token" for a new local cluster and
    # refreshes its cached config; setting the mode here, after `import ray`, would not be seen.
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return "RAY_AUTH_TOKEN (generated by this executor, kept in the process environment)"


_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


@contextlib.contextmanager
def _quiet(logger_name: str, enabled: bool):
    """Silence one logger below ERROR for a moment (Ray's notice that token auth is on, which is
    noise when this executor turned it on deliberately)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    if enabled:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass(eq=False)
class _Job:
    ref: Any  # ray.ObjectRef
    future: cf.Future
    name: str
    deadline: float | None = None
    timed_out: bool = False
    seq: int = field(default=0)


class RayExecutor(ExecutorBase):
    """Jobs as Ray tasks; see the module docstring for the failure model and Ray's files."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0, max_retries: int = 2,
                 timeout_s: float | None = None, max_in_flight: int | None = None, temp_dir: str | None = None,
                 init_kwargs: dict | None = None):
        if not num_cpus > 0:
            raise ValueError(f"num_cpus must be positive, got {num_cpus!r}")
        if num_gpus < 0:
            raise ValueError(f"num_gpus must be >= 0, got {num_gpus!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        try:
            import ray
        except ImportError as exc:
            raise ImportError("the 'ray' executor needs Ray: pip install ray") from exc
        self._ray = ray
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.max_retries, self.timeout_s = max_retries, timeout_s
        self.auth = "unchanged (Ray was already initialised)"
        self._owns_ray = False
        self._connect(address, temp_dir, dict(init_kwargs or {}))
        try:
            nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
            self.capacity = compute_capacity(nodes, num_cpus, num_gpus, max_in_flight)
        except BaseException:
            self._release_ray()
            raise
        self._task = ray.remote(_run_job)
        self._task_options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": max_retries,
                              "retry_exceptions": False}
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[cf.Future, _Job] = {}
        self._deadlines: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._closed = False
        self._watcher: threading.Thread | None = None
        if timeout_s is not None:
            self._watcher = threading.Thread(target=self._watch, name="ray-executor-timeouts", daemon=True)
            self._watcher.start()

    # -- Ray ------------------------------------------------------------------------------------

    def _connect(self, address: str | None, temp_dir: str | None, init_kwargs: dict) -> None:
        ray = self._ray
        if ray.is_initialized():
            if address is not None or temp_dir is not None or init_kwargs:
                log.warning("Ray is already initialised in this process; reusing it and ignoring "
                            "address, temp_dir and init_kwargs")
            return
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address is None:
            kwargs["include_dashboard"] = False
            if temp_dir is not None:
                os.makedirs(temp_dir, exist_ok=True)
                kwargs["_temp_dir"] = os.path.abspath(temp_dir)
            if "RAY_ADDRESS" in os.environ:  # ray.init connects there instead of starting a Ray
                self.auth = f"as configured for the cluster at RAY_ADDRESS={os.environ['RAY_ADDRESS']}"
            else:
                self.auth = _keep_token_out_of_home()
        else:
            kwargs["address"] = address
            if temp_dir is not None:
                log.warning("temp_dir applies to a local Ray only; the cluster at %s keeps its own", address)
            self.auth = "as configured for the cluster (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
        kwargs.update(init_kwargs)
        try:
            with _quiet(_AUTH_LOGGER, enabled=self.auth.startswith("RAY_AUTH_TOKEN (generated")):
                ray.init(**kwargs)
        except Exception as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise ExecutorError(f"could not start or reach {where}: {one_line(exc, 300)}") from exc
        self._owns_ray = True
        log.info("Ray %s: %s; auth token: %s", "connected" if address else "started",
                 ray.get_runtime_context().gcs_address, self.auth)

    def _release_ray(self) -> None:
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()

    # -- jobs -----------------------------------------------------------------------------------

    def submit(self, fn: Callable[[Any], Any], payload: Any) -> cf.Future:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to the ray executor after shutdown()")
        future: cf.Future = cf.Future()
        name = job_name(fn)
        try:
            ref = self._task.options(name=name, **self._task_options).remote(fn, payload)
        except Exception as exc:  # fn or payload could not be pickled, Ray is gone, ...
            settle(future, error=ExecutorError(f"could not send {name} to Ray: {one_line(exc, 300)}"))
            return future
        job = _Job(ref, future, name, seq=next(self._seq))
        with self._lock:
            self._jobs[future] = job
            if self.timeout_s is not None:
                job.deadline = time.monotonic() + self.timeout_s
                heapq.heappush(self._deadlines, (job.deadline, job.seq, job))
                self._wake.notify()
        future.add_done_callback(self._on_future_done)
        ref.future().add_done_callback(functools.partial(self._on_ray_done, job))
        return future

    def _on_ray_done(self, job: _Job, ray_future: cf.Future) -> None:
        """Ray's answer for ``job`` (runs on a Ray thread): copy it onto the driver's future."""
        try:
            value = ray_future.result()
        except BaseException as exc:  # noqa: BLE001 - every failure is translated for the driver
            error = self._translate(job, exc)
            if error is not None:
                settle(job.future, error=error)
        else:
            settle(job.future, result=value)
        with self._lock:
            self._jobs.pop(job.future, None)

    def _translate(self, job: _Job, exc: BaseException) -> BaseException | None:
        rex = self._ray.exceptions
        if isinstance(exc, rex.RayTaskError):
            # Ray hands over RayTaskError.as_instanceof_cause(): its str() is the worker's traceback
            # (the original message is in .cause), and its attributes fall through to the cause.
            cause, remote_tb = exc.cause, _ANSI.sub("", str(exc))
            if isinstance(cause, Exception) and not isinstance(cause, rex.RayError):
                cause.__cause__ = RemoteTraceback(remote_tb)
                return cause
            detail = last_line(remote_tb)
            return ExecutorError(f"{job.name} raised {one_line(detail, 300)} (the exception could not be pickled)")
        if isinstance(exc, rex.UnserializableException):
            detail = last_line(getattr(exc, "_original_stack_trace", "") or str(exc))
            return ExecutorError(f"{job.name} raised {one_line(detail, 300)} (the driver could not rebuild it)")
        if isinstance(exc, (rex.TaskCancelledError, cf.CancelledError)):
            if job.timed_out or job.future.done():
                return None
            return ExecutorError(f"{job.name} was cancelled outside this executor")
        lost = (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError, rex.OutOfMemoryError,
                rex.ObjectLostError, rex.RayActorError)
        if isinstance(exc, lost):
            tries = f"{self.max_retries} retr{'y' if self.max_retries == 1 else 'ies'}"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return WorkerLost(f"{job.name} lost its worker after {tries} ({type(exc).__name__}: "
                              f"{one_line(first, 200)})")
        if isinstance(exc, rex.RayError):
            return ExecutorError(f"{job.name}: {type(exc).__name__}: {one_line(exc, 300)}")
        return exc

    def _on_future_done(self, future: cf.Future) -> None:
        """The driver cancelled a job's future: stop the Ray task too."""
        if future.cancelled():
            with self._lock:
                job = self._jobs.get(future)
            if job is not None:
                self._cancel(job)

    def _cancel(self, job: _Job) -> None:
        try:
            self._ray.cancel(job.ref, force=True)
        except Exception as exc:  # the task finished meanwhile, or Ray is going down
            log.debug("could not cancel %s: %s", job.name, exc)

    # -- timeouts -------------------------------------------------------------------------------

    def _watch(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._closed:
                        return
                    while self._deadlines and self._deadlines[0][2].future.done():
                        heapq.heappop(self._deadlines)
                    if not self._deadlines:
                        self._wake.wait()
                        continue
                    delay = self._deadlines[0][0] - time.monotonic()
                    if delay <= 0:
                        job = heapq.heappop(self._deadlines)[2]
                        job.timed_out = True
                        break
                    self._wake.wait(delay)
            error = EvaluationTimeout(f"{job.name} ran past timeout_s={self.timeout_s:g} s and was cancelled")
            if settle(job.future, error=error):
                self._cancel(job)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet answered."""
        with self._lock:
            return len(self._jobs)

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._jobs.values())
            self._deadlines.clear()
            self._wake.notify_all()
        for job in jobs:
            job.future.cancel()  # a job still running: _on_future_done cancels its Ray task
        with self._lock:
            self._jobs.clear()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._release_ray()

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus:g}, num_gpus={self.num_gpus:g}, "
                f"max_retries={self.max_retries}, timeout_s={self.timeout_s!r}, capacity={self.capacity})")

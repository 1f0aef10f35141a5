"""The executors (search.executors): serial in-process, and Ray on one shared local instance plus one
simulated two-node cluster. Jobs are the plain-python functions of executor_jobs.py, which Ray
workers import through PYTHONPATH (set in the runtime_env). Ray keeps its files under a short
/tmp/rayXXXX folder (Unix socket paths are limited to ~107 characters) and never in $HOME."""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import executor_jobs as jobs  # noqa: E402

from search.executors import (  # noqa: E402
    EXECUTORS,
    EvaluationTimeout,
    Executor,
    ExecutorError,
    RayExecutor,
    RemoteTraceback,
    SerialExecutor,
    WorkerLost,
    make_executor,
)
from search.executors.ray_executor import compute_capacity  # noqa: E402

RAY_MISSING = "ray is not installed (pip install ray); the Ray executor tests need it"
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason=RAY_MISSING)
PAYLOADS = [{"id": i, "a": i, "b": 7 - i, "text": "x" * (i % 5)} for i in range(30)]


def worker_env() -> dict:
    """runtime_env that lets Ray workers import executor_jobs (the project itself imports without it)."""
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def serial_results() -> dict:
    with SerialExecutor() as ex:
        return {p["id"]: ex.submit(jobs.describe, p).result() for p in PAYLOADS}


# -- no Ray needed ---------------------------------------------------------------------------------


def test_make_executor_knows_serial_and_ray_and_names_the_choices():
    assert set(EXECUTORS) == {"serial", "ray"}
    assert isinstance(make_executor("serial"), SerialExecutor)
    with pytest.raises(ValueError, match=r"unknown executor 'nope'; choose from: serial, ray"):
        make_executor("nope")
    with pytest.raises(ValueError, match=r"executor 'serial' has no option 'address'"):
        make_executor("serial", address="auto")


def test_importing_the_package_does_not_import_ray():
    code = "import sys, search.executors; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_serial_runs_each_job_inside_submit():
    with make_executor("serial") as ex:
        assert isinstance(ex, Executor) and ex.name == "serial" and ex.capacity == 1
        futures = [ex.submit(jobs.square, i) for i in range(5)]
        assert all(f.done() for f in futures)
        assert [f.result() for f in futures] == [0, 1, 4, 9, 16]
        assert ex.last_elapsed_s is not None and ex.last_elapsed_s >= 0


def test_serial_exception_travels_on_the_future():
    ex = SerialExecutor()
    future = ex.submit(jobs.fail_value_error, "bad payload")  # submit itself does not raise
    with pytest.raises(ValueError, match="^bad payload$"):
        future.result()
    assert isinstance(future.exception(), ValueError)


def test_serial_timeout_is_advisory(caplog):
    ex = SerialExecutor(timeout_s=0.01)
    with caplog.at_level(logging.WARNING, logger="search.executors.serial"):
        assert ex.submit(jobs.sleep_then, (0.05, "late")).result() == "late"
    assert ex.overruns == 1
    assert "over timeout_s=0.01 s" in caplog.text


def test_serial_shutdown_is_idempotent():
    ex = SerialExecutor()
    ex.shutdown()
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(jobs.square, 2)


def test_capacity_is_the_jobs_that_fit_per_node():
    two_cpus = [{"CPU": 2.0}]
    assert compute_capacity(two_cpus, num_cpus=1) == 2
    assert compute_capacity(two_cpus, num_cpus=0.5) == 4
    assert compute_capacity([{"CPU": 2.0}], num_cpus=0.1) == 20  # no float rounding loss
    assert compute_capacity(two_cpus, num_cpus=1, max_in_flight=7) == 7
    assert compute_capacity([{"CPU": 3.0}, {"CPU": 3.0}], num_cpus=2) == 2  # 1 per node, not 6 // 2
    assert compute_capacity([{"CPU": 16.0, "GPU": 1.0}], num_cpus=1, num_gpus=0.25) == 4
    assert compute_capacity([{"CPU": 16.0, "GPU": 2.0}, {"CPU": 8.0}], num_cpus=1, num_gpus=0.5) == 4
    with pytest.raises(ExecutorError, match=r"no Ray node can run a job asking num_cpus=1, num_gpus=0.5"):
        compute_capacity(two_cpus, num_cpus=1, num_gpus=0.5)
    with pytest.raises(ExecutorError, match=r"largest node: 2 CPU"):
        compute_capacity(two_cpus, num_cpus=4, max_in_flight=3)


def test_ray_executor_checks_its_arguments_first():
    for bad in ({"num_cpus": 0}, {"num_gpus": -1}, {"max_retries": -1}, {"timeout_s": 0}, {"max_in_flight": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RayExecutor(**bad)


# -- one local Ray, shared by the tests of this class --------------------------------------------


@pytest.fixture(scope="class")
def local():
    """One RayExecutor that starts (and at the end stops) a 2-CPU local Ray. Class-scoped rather than
    module-scoped so that it is gone before the Cluster test, which needs the driver disconnected."""
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process; these tests start their own")
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    home = tempfile.mkdtemp(prefix="home", dir="/tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", home)
        start = time.perf_counter()
        ex = RayExecutor(temp_dir=tmp, max_retries=2, init_kwargs={"num_cpus": 2, "runtime_env": worker_env()})
        init_s = time.perf_counter() - start
        try:
            yield SimpleNamespace(ex=ex, ray=ray, tmp=Path(tmp), home=Path(home), init_s=init_s)
        finally:
            ex.shutdown()
            if ray.is_initialized():  # pragma: no cover - only if the executor failed to release it
                ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)


def warm_up(ex: RayExecutor) -> None:
    """Make sure both worker processes are up (a fresh one takes about a second to start)."""
    assert [f.result(timeout=60) for f in [ex.submit(jobs.sleep_then, (0.3, i)) for i in range(2)]] == [0, 1]


@needs_ray
class TestLocalRay:
    def test_ray_files_stay_under_temp_dir_and_out_of_home(self, local):
        assert local.init_s < 30
        assert (local.tmp / "session_latest").exists()
        assert list(local.home.iterdir()) == []  # no ~/.ray/auth_token
        assert local.ex.auth.startswith("RAY_AUTH_TOKEN") or "disabled" in local.ex.auth
        assert isinstance(local.ex, Executor) and local.ex.name == "ray"

    def test_capacity_from_cluster_cpus_and_gpus(self, local):
        assert local.ex.capacity == 2
        for options, capacity in (({"num_cpus": 0.5}, 4), ({"max_in_flight": 7}, 7)):
            with RayExecutor(**options) as other:  # reuses the running Ray
                assert other.capacity == capacity
        with pytest.raises(ExecutorError, match="no Ray node can run a job asking num_cpus=1, num_gpus=0.5"):
            RayExecutor(num_gpus=0.5)
        assert local.ray.is_initialized()  # executors that reused Ray left it running

    def test_results_equal_the_serial_results(self, local):
        futures = {local.ex.submit(jobs.describe, p): p["id"] for p in PAYLOADS}
        got = {}
        for future in cf.as_completed(futures, timeout=60):
            got[futures[future]] = future.result()
        assert got == serial_results()

    def test_job_exception_arrives_as_its_own_type(self, local):
        error = local.ex.submit(jobs.fail_value_error, "no such primitive: foo").exception(timeout=60)
        assert type(error) is ValueError and str(error) == "no such primitive: foo"
        assert isinstance(error.__cause__, RemoteTraceback) and "fail_value_error" in str(error.__cause__)

    def test_workers_import_the_project_and_rule_errors_keep_their_type(self, local):
        from dsl.errors import RuleError, RuleSyntaxError

        where = local.ex.submit(jobs.import_project, None).result(timeout=60)
        assert where == {name: str(ROOT / name / "__init__.py") for name in ("search", "dsl", "evaluators")}
        error = local.ex.submit(jobs.fail_rule_error, "unknown primitive 'foo'").exception(timeout=60)
        assert isinstance(error, RuleError) and type(error) is RuleSyntaxError
        assert str(error) == "rule.opt:3:7: unknown primitive 'foo'" and (error.line, error.col) == (3, 7)

    def test_exceptions_that_cannot_travel_become_executor_errors(self, local):
        unbuilt = local.ex.submit(jobs.fail_unrebuildable, "boom").exception(timeout=60)
        assert type(unbuilt) is ExecutorError and "NeedsTwoArgs: boom (code 42)" in str(unbuilt)
        unpickled = local.ex.submit(jobs.fail_unpicklable, "boom").exception(timeout=60)
        assert type(unpickled) is ExecutorError and "Unpicklable: boom" in str(unpickled)
        assert "\n" not in str(unbuilt) + str(unpickled)

    def test_submit_never_raises_because_of_the_job(self, local):
        lock = threading.Lock()
        future = local.ex.submit(lambda x: (lock, x), 1)  # a closure over a lock cannot be pickled
        with pytest.raises(ExecutorError, match="could not send"):
            future.result(timeout=10)

    def test_slow_job_times_out_while_a_fast_one_completes(self, local):
        warm_up(local.ex)
        with RayExecutor(timeout_s=1.5) as ex:
            start = time.monotonic()
            slow = ex.submit(jobs.sleep_then, (30, "slow"))
            fast = ex.submit(jobs.sleep_then, (0.05, "fast"))
            assert fast.result(timeout=10) == "fast"
            with pytest.raises(EvaluationTimeout, match=r"sleep_then ran past timeout_s=1.5 s and was cancelled"):
                slow.result(timeout=10)
            assert time.monotonic() - start < 8
            assert ex.submit(jobs.square, 9).result(timeout=30) == 81  # a new worker replaces the killed one

    def test_worker_death_is_retried(self, local, tmp_path):
        marker = tmp_path / "died-once"
        answer = local.ex.submit(jobs.die_once, str(marker)).result(timeout=60)
        assert marker.exists() and answer.startswith("survived")

    def test_worker_death_without_retries_is_worker_lost(self, local, tmp_path):
        with RayExecutor(max_retries=0) as ex:
            error = ex.submit(jobs.die_once, str(tmp_path / "died-once")).exception(timeout=60)
        assert type(error) is WorkerLost and "after 0 retries" in str(error) and "\n" not in str(error)

    def test_cancelling_a_future_cancels_its_task(self, local):
        future = local.ex.submit(jobs.sleep_then, (30, "never"))
        assert future.cancel()
        deadline = time.monotonic() + 10
        while local.ex.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert local.ex.in_flight == 0  # Ray reported the task cancelled

    def test_shutdown_cancels_running_jobs_and_is_idempotent(self, local):
        ex = make_executor("ray")  # reuses the running Ray, so it must not stop it
        future = ex.submit(jobs.sleep_then, (30, "never"))
        ex.shutdown()
        assert future.cancelled()
        ex.shutdown()
        with pytest.raises(RuntimeError, match="after shutdown"):
            ex.submit(jobs.square, 1)
        assert local.ray.is_initialized()


# -- a simulated two-node cluster ----------------------------------------------------------------


@needs_ray
def test_cluster_of_two_nodes_runs_jobs_on_both(monkeypatch):
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process; the cluster test needs it disconnected")
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", tmp)  # Cluster writes the cluster address under $RAY_TMPDIR/ray
    temp_dir = os.path.join(tmp, "ray")
    os.makedirs(temp_dir)
    node = {"num_cpus": 1, "num_gpus": 1, "temp_dir": temp_dir}  # a declared GPU resource; no device needed
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        with RayExecutor(address=cluster.address, num_gpus=0.5, init_kwargs={"runtime_env": worker_env()}) as ex:
            assert ex.capacity == 2  # one CPU per node bounds it, though the GPUs would fit 4
            alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
            futures = [ex.submit(jobs.node_id, 1.0) for _ in range(2)]  # each holds its node's only CPU
            assert {f.result(timeout=60) for f in futures} == alive and len(alive) == 2
        assert not ray.is_initialized()  # this executor connected, so it disconnected
    finally:
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

"""A throwaway Ray head for tests, started and stopped the way a user does it on a real cluster:
``ray start --head`` with the dashboard (the job server ``ray job submit`` talks to), then
``ray job ...`` against it (Moritz et al. 2018, "Ray: A Distributed Framework for Emerging AI
Applications", OSDI; Ray's job CLI is documented under "Ray Jobs" in the Ray docs).

What keeps it small, quiet and private:

- ``--num-cpus`` and ``--num-gpus 0``, a 200 MB object store, ``--disable-usage-stats``;
- every port it listens on is a free one picked here (the GCS, the dashboard, the dashboard agent,
  the Ray client server), bound to 127.0.0.1 (``--node-ip-address``, ``--dashboard-host``), so two
  heads on one machine never collide and nothing is reachable from the network;
- its session files go under a short ``/tmp/rayhXXXX`` folder (``--temp-dir``: Unix socket paths
  are limited to about 107 characters), removed at the end;
- token authentication (Ray >= 2.52; on by default for local clusters from 2.59) with a one-off
  token in the environment (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``) of the head and of every
  ``ray job`` call, and a temporary ``HOME``: nothing is written to ``~/.ray`` (Ray would otherwise
  keep a token in ``~/.ray/auth_token``).

Stopping it never uses ``ray stop``, which kills every Ray process on the machine, other people's
included. The head runs as ``ray start --head --block`` in its own session: SIGTERM makes it stop
the processes it started; anything still alive after that (workers, the job's driver) is found by
the one-off token in its environment, which only this head's processes carry, and killed by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

LOCALHOST = "127.0.0.1"
_OBJECT_STORE_BYTES = 200 * 1024 * 1024
_DROPPED_ENV = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH")


def ray_cli() -> str | None:
    """The ``ray`` command of this Python environment (beside ``sys.executable``), else the one on
    PATH, else None."""
    beside = Path(sys.executable).with_name("ray")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("ray")


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that were free a moment ago (all held open together while picking,
    so they differ)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOCALHOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def pids_with_env(marker: str) -> list[int]:
    """Pids of the processes (those this user may read) whose environment holds ``marker``
    (``NAME=value``); Linux only (reads /proc), an empty list elsewhere."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or someone else's
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return [pid for pid in found if pid != os.getpid()]


@dataclass
class RayHead:
    """A running head: where it listens, and the environment every ``ray`` call against it needs."""

    ray: str
    gcs_address: str
    dashboard_url: str
    env: dict[str, str]
    log_path: Path
    killed: tuple[int, ...] = ()  # set at stop: pids still alive 10 s after the graceful stop

    def job(self, args: Sequence[str], timeout: float, token: bool = True) -> subprocess.CompletedProcess:
        """``ray job ARGS --address DASHBOARD`` with the head's token (without it if not ``token``);
        output captured as plain text."""
        cmd = [self.ray, "job", args[0], "--address", self.dashboard_url, "--log-style=record", "--log-color=false",
               *args[1:]]
        env = self.env if token else {k: v for k, v in self.env.items() if not k.startswith("RAY_AUTH_")}
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)

    def tasks(self, timeout: float = 60) -> list[dict]:
        """Every task the head has run (``ray list tasks``, Ray's state API), as dicts."""
        cmd = [self.ray, "list", "tasks", "--address", self.dashboard_url, "--format=json", "--limit=10000"]
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, check=True)
        return json.loads(done.stdout)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of ``ray start``'s own output, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no ray start log)"


def _head_env(home: Path, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(HOME=str(home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0")
    # The job's entrypoint (`optforge ...`) is looked up on the head's PATH: put this
    # environment's scripts first, as an activated virtualenv would.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _wait_until_ready(head: RayHead, proc: subprocess.Popen, timeout: float) -> None:
    """Poll the job server until it answers (the head is then up), or fail with ``ray start``'s log."""
    request = urllib.request.Request(f"{head.dashboard_url}/api/version",
                                     headers={"Authorization": f"Bearer {head.env['RAY_AUTH_TOKEN']}"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start --head exited with {proc.returncode}:\n{head.log_tail()}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head's job server did not answer within {timeout:g} s:\n{head.log_tail()}")


def _wait_gone(marker: str, timeout: float) -> list[int]:
    """Wait up to ``timeout`` s for the processes carrying ``marker`` to exit; returns those left."""
    deadline = time.monotonic() + timeout
    while (left := pids_with_env(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _stop(proc: subprocess.Popen, marker: str, grace_s: float) -> list[int]:
    """Stop the head gracefully (its helpers, such as the dashboard's forkserver, take a few seconds
    more to exit), then kill by pid whatever of it is left; returns those pids."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    stragglers = _wait_gone(marker, timeout=10)
    for pid in stragglers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(marker, timeout=10)
    return stragglers


@contextlib.contextmanager
def local_ray_head(home: Path, num_cpus: int = 2, ready_timeout: float = 180,
                   grace_s: float = 20) -> Iterator[RayHead]:
    """Start a private Ray head (see the module docstring), yield it, and always stop it: no process
    of it is left when this returns or raises. ``home`` becomes its ``HOME``."""
    ray = ray_cli()
    if ray is None:
        raise FileNotFoundError("no `ray` command (pip install 'ray[default]')")
    home.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    temp_dir = tempfile.mkdtemp(prefix="rayh", dir="/tmp")
    gcs, dashboard, agent, client = free_ports(4)
    head = RayHead(ray=ray, gcs_address=f"{LOCALHOST}:{gcs}", dashboard_url=f"http://{LOCALHOST}:{dashboard}",
                   env=_head_env(home, token), log_path=home / "ray-start.log")
    cmd = [ray, "start", "--head", "--block", f"--num-cpus={num_cpus}", "--num-gpus=0",
           f"--object-store-memory={_OBJECT_STORE_BYTES}", f"--node-ip-address={LOCALHOST}", f"--port={gcs}",
           "--include-dashboard=true", f"--dashboard-host={LOCALHOST}", f"--dashboard-port={dashboard}",
           f"--dashboard-agent-listen-port={agent}", f"--ray-client-server-port={client}",
           f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    with open(head.log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=head.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        _wait_until_ready(head, proc, ready_timeout)
        yield head
    finally:
        try:
            head.killed = tuple(_stop(proc, f"RAY_AUTH_TOKEN={token}", grace_s))
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)

"""SIGTERM stops a search as Ctrl-C does (`search.interrupts`), on the serial and the Ray executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_cli_search import trained_ids, write_config

from search.interrupts import Terminated, sigterm_as_interrupt


def test_sigterm_raises_terminated_inside_the_block_and_the_old_handler_comes_back():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *a: seen.append("old"))
    try:
        with pytest.raises(Terminated) as info, sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode: never reached
        assert isinstance(info.value, KeyboardInterrupt) and info.value.exit_code == 143
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert seen == ["old"]
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate_mid_search(tmp_path, *extra: str, env=None):
    config, run = str(write_config(tmp_path, evaluations=6)), tmp_path / "run"
    cmd = [sys.executable, "-m", "search.cli", "search", config, "--out", str(run), "--no-progress",
           "--no-validate", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (run / "journal.jsonl").exists() and len(trained_ids(run)) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the search ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err, run, cmd


def test_sigterm_stops_a_serial_search_which_then_resumes(tmp_path):
    code, err, run, cmd = _terminate_mid_search(tmp_path)
    assert code == 143, err[-2000:]
    assert "terminated (SIGTERM); the journal is intact" in err and "--resume" in err
    before = trained_ids(run)
    assert 2 <= len(before) < 6
    result = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    after = trained_ids(run)
    assert after[: len(before)] == before and len(after) == len(set(after)) == 6


def test_sigterm_stops_a_ray_search(tmp_path):
    """Ray's driver replaces Python's SIGTERM handler with sys.exit; the search's own wins."""
    pytest.importorskip("ray")
    import shutil
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are limited
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "HOME": str(tmp_path)}
    try:
        code, err, run, _ = _terminate_mid_search(tmp_path, "--executor", "ray", env=env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert code == 143, err[-2000:]
    assert "terminated (SIGTERM); the journal is intact" in err
    assert 2 <= len(trained_ids(run)) < 6

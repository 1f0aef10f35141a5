"""`optforge search`: end to end at the tiny preset, resume after an interrupt or a kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from populations.journal import read_records
from search.cli import main

CONFIG = {
    "name": "tiny", "strategy": "evolution", "evaluations": 6, "seed": 1, "seeds": ["adamw", "signum"],
    "proxy": {"tasks": ["digits_logreg", "quadratic"], "preset": "tiny", "budget": 3, "hurdle": 1.5},
    "evolution": {"population_size": 4, "tournament_size": 2},
    "validation": {"top_k": 1, "tasks": ["quadratic_hard"], "preset": "tiny", "seeds": 3, "budget": 2,
                   "baselines": ["adamw"]},
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_config(tmp_path: Path, **changes) -> Path:
    data = json.loads(json.dumps(CONFIG))
    data.update(changes)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def trained_ids(run: Path) -> list[str]:
    """Ids of candidates whose outcome cost training, in journal order (repeats would be a bug)."""
    return [r["id"] for r in read_records(run / "journal.jsonl") if r["event"] == "finished"
            and not r["outcome"]["same_as"] and r["outcome"]["status"] != "invalid"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    run = tmp / "run"
    code = main(["search", str(write_config(tmp)), "--out", str(run), "--no-progress"])
    return code, run, tmp


def test_a_search_writes_every_artefact(finished_run):
    code, run, _ = finished_run
    assert code == 0
    data = json.loads((run / "results.json").read_text())
    assert data["schema"] == "optforge.search/1" and data["counts"]["trained"] == 6
    assert len(trained_ids(run)) == len(set(trained_ids(run))) == 6
    board = data["leaderboard"]
    final = [r["fitness"] for r in board if r["status"] == "ok" and r["stage"] == "proxy"]
    assert final and final == sorted(final)  # the deepest stage first, by fitness
    adamw = next(r for r in board if r["change"] == "adamw")
    assert adamw["fitness"] == 1.0  # the seed AdamW against its own reference
    validated = [r for r in board if r["heldout"]]
    assert len(validated) == 1 and validated[0]["origin"] != "seed"
    assert "verdict:" in validated[0]["heldout"]["verdict"] and validated[0]["heldout"]["seeds"] == 3
    for name in ("progress.png", "pareto.png", "proxy_vs_heldout.png"):
        assert (run / name).read_bytes()[:8] == PNG_MAGIC
    assert "| rank | id |" in (run / "leaderboard.md").read_text()
    assert "optforge search" in (run / "report.html").read_text()
    assert yaml.safe_load((run / "config.yaml").read_text())["proxy"]["budget"] == 3
    events = [r["event"] for r in read_records(run / "journal.jsonl")]
    assert events[:2] == ["start", "reference"] and events[-1] == "end" and "validated" in events
    assert "staged" in events and (run / "validation").is_dir()
    validated_id = validated[0]["id"]
    held = json.loads((run / "validation" / validated_id / "results.json").read_text())
    assert held["schema"] == "optforge.evaluate/1" and held["runs"][0]["val_curve"]


def test_running_again_needs_resume_and_resume_extends_without_retraining(finished_run, capsys):
    _, run, tmp = finished_run
    config = str(write_config(tmp))
    assert main(["search", config, "--out", str(run)]) == 2
    assert "already holds a search; pass --resume" in capsys.readouterr().err
    before = trained_ids(run)
    assert main(["search", config, "--out", str(run), "--resume", "--evaluations", "8",
                 "--no-progress", "--no-validate"]) == 0
    after = trained_ids(run)
    assert after[:6] == before and len(after) == len(set(after)) == 8
    assert sum(1 for r in read_records(run / "journal.jsonl") if r["event"] == "reference") == 1


def test_resume_refuses_a_changed_search(finished_run, capsys):
    _, run, tmp = finished_run
    changed = write_config(tmp, proxy={**CONFIG["proxy"], "budget": 5})
    assert main(["search", str(changed), "--out", str(run), "--resume"]) == 2
    assert "differs from the run's in proxy" in capsys.readouterr().err


def staged(run: Path) -> list[tuple[str, str]]:
    """(candidate, stage) of every stage measurement, in journal order."""
    return [(r["id"], r["stage"]) for r in read_records(run / "journal.jsonl") if r["event"] == "staged"]


def test_interrupt_then_resume_finishes_with_nothing_trained_twice(tmp_path, monkeypatch, capsys):
    import search.driver as driver

    calls, real = [], driver.stage_job

    def interrupting(payload):
        calls.append((payload["id"], payload["stage"]["name"]))
        if len(calls) == 8:  # 2 reference jobs, then Ctrl-C while a candidate trains
            raise KeyboardInterrupt
        return real(payload)

    monkeypatch.setattr(driver, "stage_job", interrupting)
    config, run = str(write_config(tmp_path)), tmp_path / "run"
    assert main(["search", config, "--out", str(run), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "the journal is intact" in err and "--resume" in err
    before = staged(run)
    assert len(before) >= 3 and len(trained_ids(run)) < 6
    calls.clear()
    assert main(["search", config, "--out", str(run), "--resume", "--no-progress", "--no-validate"]) == 0
    ids, after = trained_ids(run), staged(run)
    assert len(ids) == len(set(ids)) == 6 and all(c[0] != "reference" for c in calls)
    assert after[: len(before)] == before and len(after) == len(set(after))  # nothing measured twice


def test_kill_9_mid_search_then_resume(tmp_path):
    config, run = str(write_config(tmp_path, evaluations=10)), tmp_path / "run"
    cmd = [sys.executable, "-m", "search.cli", "search", config, "--out", str(run), "--no-progress",
           "--no-validate"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (run / "journal.jsonl").exists() and len(trained_ids(run)) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the search ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = trained_ids(run)
    assert 3 <= len(before) < 10
    result = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    after = trained_ids(run)
    assert after[: len(before)] == before and len(after) == len(set(after)) == 10


@pytest.mark.parametrize("args, message", [
    (["nope.yaml"], "no config file 'nope.yaml'"),
    (["quickstart", "--evaluations", "0"], "--evaluations must be >= 1"),
    (["quickstart", "--resume", "--out", "/nonexistent/x"], "--resume: /nonexistent/x/journal.jsonl does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(["search", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_bad_config_values_exit_2(tmp_path, capsys):
    bad = write_config(tmp_path, proxy={"tasks": ["charlm_deep"]})
    assert main(["search", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "proxy.tasks: charlm_deep not in suite 'proxy'" in capsys.readouterr().err
    bad = write_config(tmp_path, seeds=["adamw", "nosuchrule"])
    assert main(["search", str(bad), "--out", str(tmp_path / "r2")]) == 2
    assert "seeds:" in capsys.readouterr().err
    bad = write_config(tmp_path, validation={"tasks": ["nope"]})
    assert main(["search", str(bad), "--out", str(tmp_path / "r3")]) == 2  # before any training
    assert "validation.tasks: nope not in suite 'heldout'" in capsys.readouterr().err
    assert not (tmp_path / "r3").exists()


def test_help_explains_the_search(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = capsys.readouterr().out
    for words in ("journal.jsonl", "--resume", "hurdle", "held-out", "winners", "--executor"):
        assert words in out


def test_search_on_ray_workers_matches_the_serial_bookkeeping(tmp_path):
    pytest.importorskip("ray")
    import tempfile

    config, run = str(write_config(tmp_path, evaluations=4)), tmp_path / "run"
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are limited
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "HOME": str(tmp_path)}
    try:
        result = subprocess.run([sys.executable, "-m", "search.cli", "search", config, "--out", str(run),
                                 "--executor", "ray", "--no-progress", "--no-validate"],
                                capture_output=True, text=True, timeout=300, env=env)
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    ids = trained_ids(run)
    assert len(ids) == len(set(ids)) == 4
    data = json.loads((run / "results.json").read_text())
    assert data["config"]["executor"]["kind"] == "ray"
    adamw = next(r for r in data["leaderboard"] if r["change"] == "adamw")
    assert adamw["fitness"] == 1.0  # reference and candidate ran the same way on the workers
    assert not (tmp_path / ".ray").exists()  # no auth token left in the (temporary) home folder


def test_the_engine_is_a_library_call_that_prints_the_plan_and_expected_duration(tmp_path):
    from search.config import load_config
    from search.engine import run_search

    cfg = load_config(write_config(tmp_path, evaluations=2))
    lines: list[str] = []
    pop = run_search(cfg, tmp_path / "run", validate=False, progress=False, log=lines.append)
    assert pop.trained_count == 2 and (tmp_path / "run" / "report.html").exists()
    assert lines[0].startswith("search 'tiny': strategy evolution, 2 rules, funnel first (1 task, 1 seed) -> proxy")
    expected = next(line for line in lines if line.startswith("AdamW reference measured in"))
    assert "expected" in expected and "for 2 rules on 1 worker" in expected
    assert expected.endswith("plus validation; a measured figure after 1 rule")
    revised = next(line for line in lines if line.startswith("1 rule trained in"))
    assert "s per rule on this machine); at that rate the 1 left take about" in revised

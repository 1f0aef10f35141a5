"""`optforge evaluate` end to end on the tiny preset, and its one-line errors for bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evaluators.fitness import WORST_FITNESS
from search.cli import main

RESULT_KEYS = {"schema", "rule", "fitness", "verdict", "settings", "provenance", "rules",
               "fitness_by_rule", "tasks", "runs", "profiles", "plots", "wall_time_s", "usage",
               "seed_noise"}
RUN_KEYS = {"phase", "label", "rule_hash", "task", "seed", "lr", "train_curve", "val_curve",
            "final_val_loss", "final_train_loss", "steps_to_target", "diverged", "steps",
            "wall_time_s", "state_bytes", "preset"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "two.yaml"
    path.write_text("name: two\ntasks:\n  - name: rosenbrock\n  - name: quadratic\n")
    return path


def evaluate(*argv: str) -> int:
    return main(["evaluate", *argv])


def test_help_explains_the_protocol(capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate("--help")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for words in ("--suite", "--baselines", "--budget", "--tuner", "--preset", "example",
                  "geometric mean", "results.json"):
        assert words in out


@pytest.fixture(scope="module")
def adam_run(suite_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("adam") / "out"
    code = evaluate("builtin:adam", "--suite", str(suite_file), "--baselines", "adamw",
                    "--seeds", "2", "--budget", "3", "--preset", "tiny", "--out", str(out),
                    "--profiles", "--no-progress")
    return code, out


def test_end_to_end_writes_results_and_plots(adam_run):
    code, out = adam_run
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert set(data) == RESULT_KEYS
    assert data["schema"] == "optforge.evaluate/1"
    assert data["rule"]["source"] == "builtin:adam" and data["rule"]["role"] == "candidate"
    assert data["settings"]["preset"] == "tiny" and data["settings"]["budget"] == 3
    assert data["settings"]["eval_seeds"] == [1, 2]
    assert data["provenance"]["code_version"] and data["provenance"]["torch"]
    assert 0 < data["fitness"] < 10 and data["fitness"] == data["fitness_by_rule"]["adam"]["value"]
    assert data["fitness_by_rule"]["adamw"]["value"] == 1.0
    # every run: 2 tasks x 2 rules x (3 tuning + the grid's extra widening + 2 evaluation)
    assert data["settings"]["max_extra"] == 4 and data["settings"]["scale_invariant"]
    extra = 0
    for task in data["tasks"]:
        for rule in task["rules"].values():
            tuning = rule["tuning"]
            assert len(tuning["trials"]) == 3 + tuning["extra"] and len(rule["val_losses"]) == 2
            assert tuning["extra"] <= 4 and (tuning["extra"] == 0 or not tuning["at_edge"] or tuning["extra"] == 4)
            extra += tuning["extra"]
    assert len(data["runs"]) == 2 * 2 * (3 + 2) + extra
    assert all(RUN_KEYS <= set(r) for r in data["runs"])
    assert {r["task"] for r in data["runs"]} == {"rosenbrock", "quadratic"}
    assert set(data["profiles"]["scores"]) == {"adam", "adamw"}
    assert sorted(data["plots"]) == ["loss_quadratic.png", "loss_rosenbrock.png",
                                     "performance_profile.png"]
    for name in data["plots"]:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*tmp"))  # the atomic write left no temporary file
    # cost: the whole evaluation and each task, wall time and peak memory (CPU: process RSS)
    assert data["usage"]["memory_kind"] == "process peak RSS"
    assert data["usage"]["peak_memory_bytes"] > 10 * 2**20
    task_times = [t["usage"]["wall_time_s"] for t in data["tasks"]]
    assert all(t > 0 for t in task_times) and sum(task_times) <= data["usage"]["wall_time_s"]


def test_output_tables_progress_and_verdict(suite_file, tmp_path, capsys):
    code = evaluate("builtin:adam", "--suite", str(suite_file), "--baselines", "adamw",
                    "--seeds", "1", "--budget", "2", "--preset", "tiny", "--out", str(tmp_path))
    assert code == 0
    captured = capsys.readouterr()
    for words in ("rosenbrock", "quadratic", "tuned lr", "val loss mean +- std", "/ adamw",
                  "p (Welch)", "verdict: adam fitness",
                  "1 seed(s) < 3: no significance claim possible", "time ", "s on cpu",
                  "peak memory", "(process peak RSS)"):
        assert words in captured.out
    # the progress bar counts every run: 2 x 2 x (2 + 1), plus any extra widening trials
    done = [int(a) for a, b in re.findall(r"(\d+)/(\d+) \[", captured.err) if a == b]
    assert done and done[-1] >= 12


def test_adamw_against_itself_scores_exactly_one(suite_file, tmp_path):
    assert evaluate("builtin:adamw", "--suite", str(suite_file), "--baselines", "adamw",
                    "--seeds", "1", "--budget", "2", "--preset", "tiny", "--out", str(tmp_path),
                    "--no-progress") == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["rule"]["label"] == "adamw*"
    assert data["fitness"] == 1.0


def test_nan_rule_gets_worst_fitness_and_the_evaluation_finishes(suite_file, tmp_path, capsys):
    rule = tmp_path / "nan.opt"
    rule.write_text("# divides by zero: NaN from the first step\nupdate = g / (g - g)\n")
    out = tmp_path / "out"
    assert evaluate(str(rule), "--suite", str(suite_file), "--baselines", "adamw", "--seeds", "1",
                    "--budget", "2", "--preset", "tiny", "--out", str(out), "--no-progress") == 0
    data = json.loads((out / "results.json").read_text())
    assert data["fitness"] == WORST_FITNESS
    assert data["fitness_by_rule"]["adamw"]["value"] == 1.0
    assert all(r["diverged"] for r in data["runs"] if r["label"] == "nan")
    assert "verdict: nan failed" in capsys.readouterr().out


TINY = {"--preset": "tiny", "--seeds": "1", "--budget": "1"}  # cheap, should a case slip through


@pytest.mark.parametrize(("argv", "message"), [
    (["builtin:no_such_rule"], "unknown builtin rule"),
    (["missing/rule.opt"], "rule.opt"),
    (["builtin:adam", "--suite", "nonesuch"], "unknown suite"),
    (["builtin:adam", "--suite", "missing.yaml"], "suite 'missing.yaml'"),
    (["builtin:adam", "--preset", "huge"], "unknown preset 'huge'"),
    (["builtin:adam", "--baselines", "adamw,nadamx"], "baseline 'nadamx'"),
    (["builtin:adam", "--seeds", "0"], "--seeds must be a positive integer"),
    (["builtin:adam", "--budget", "many"], "--budget must be a positive integer"),
    (["builtin:adam", "--max-extra", "-1"], "--max-extra must be an integer >= 0"),
    (["builtin:adam", "--tuner", "bayes"], "unknown tuner 'bayes'"),
    (["builtin:adam", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    defaults = [x for k, v in TINY.items() if k not in argv for x in (k, v)]
    code = evaluate(*argv, *defaults, "--no-progress", "--out", str(tmp_path / "o"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("optforge evaluate: error: ")
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bad_suite_file_names_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntasks:\n  - name: rosenbrock\n    stepz: 3\n")
    assert evaluate("builtin:adam", "--suite", str(bad), "--preset", "tiny") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stepz" in err

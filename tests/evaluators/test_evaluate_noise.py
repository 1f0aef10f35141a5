"""`optforge evaluate` prints and records AdamW's seed noise and the detectable effect per task."""

from __future__ import annotations

import json
import re

import pytest

from evaluators.stats import minimum_detectable_effect
from search.cli import main


def test_noise_is_printed_and_recorded_per_task(tmp_path, capsys):
    suite = tmp_path / "one.yaml"
    suite.write_text("name: one\ntasks:\n  - name: quadratic_long\n")
    out = tmp_path / "out"
    assert main(["evaluate", "builtin:sgd", "--suite", str(suite), "--baselines", "adamw",
                 "--seeds", "3", "--budget", "2", "--preset", "tiny", "--out", str(out),
                 "--no-progress"]) == 0
    data = json.loads((out / "results.json").read_text())
    noise = data["seed_noise"]["quadratic_long"]
    adamw = data["tasks"][0]["rules"]["adamw"]
    assert noise["seeds"] == 3 and noise["mean"] == pytest.approx(adamw["val_loss_mean"])
    assert noise["std"] == pytest.approx(adamw["val_loss_std"]) and noise["std"] > 0
    assert noise["std_over_mean"] == pytest.approx(noise["std"] / noise["mean"])
    assert noise["mde"] == pytest.approx(minimum_detectable_effect(noise["std"], 3))
    assert noise["mde_over_mean"] == pytest.approx(noise["mde"] / noise["mean"])
    assert noise["alpha"] == 0.05 and noise["power"] == 0.8
    printed = capsys.readouterr().out
    match = re.search(r"adamw seed std ([\d.]+)% of its mean; smallest detectable effect "
                      r"\(Welch p < 0.05, power 0.8, 3 seeds per rule\) ([\d.]+)% of it", printed)
    assert match, printed
    assert float(match.group(1)) == pytest.approx(100 * noise["std_over_mean"], abs=0.051)
    assert float(match.group(2)) == pytest.approx(100 * noise["mde_over_mean"], abs=0.051)

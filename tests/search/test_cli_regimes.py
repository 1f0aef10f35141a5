"""`optforge regimes` runs a small map on tiny presets and writes its results, heat map and
report; bad names are one-line errors."""

from __future__ import annotations

import json

import pytest

from search.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    out = tmp_path_factory.mktemp("regimes") / "map"
    code = main(["regimes", "builtin:signum", "--baselines", "adamw", "--axes", "condition,lr",
                 "--levels", "condition=10,1000", "--levels", "lr=0.5,1", "--preset", "tiny",
                 "--seeds", "2", "--budget", "2", "--out", str(out), "--no-progress"])
    return code, out


def test_optforge_regimes_maps_a_rule_on_tiny_presets(mapped):
    code, out = mapped
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == "optforge.regimes/1" and data["rules"] == ["signum", "adamw"]
    assert list(data["table"]["signum"]) == ["condition 10", "condition 1000", "lr x0.5", "lr x1"]
    assert all(v == 1.0 for v in data["table"]["adamw"].values())  # the normaliser itself
    cells = {(c["axis"], c["level"], c["task"], c["rule"]): c for c in data["cells"]}
    assert len(cells) == 2 * 2 + 2 * 2 * 2  # condition: quadratic; lr: quadratic and digits_mlp
    # condition 1000 is the tiny quadratic's own setting: the very runs of the lr x1 cell
    assert cells[("condition", 1000.0, "quadratic", "signum")]["losses"] == \
        cells[("lr", 1.0, "quadratic", "signum")]["losses"]
    assert cells[("condition", 10.0, "quadratic", "signum")]["losses"] != \
        cells[("condition", 1000.0, "quadratic", "signum")]["losses"]
    for task in ("quadratic", "digits_mlp"):  # the lr axis: half of each rule's own tuned lr
        half, tuned = cells[("lr", 0.5, task, "signum")], cells[("lr", 1.0, task, "signum")]
        assert half["lr"] == pytest.approx(0.5 * tuned["lr"]) and len(half["losses"]) == 2


def test_optforge_regimes_writes_a_heat_map_and_a_report(mapped):
    _, out = mapped
    assert (out / "regimes.png").read_bytes()[:8] == PNG_MAGIC
    page = (out / "report.html").read_text()
    for sid in ("run", "map", "table", "cells"):
        assert f"<section id='{sid}'>" in page
    assert "data:image/png;base64," in page and "condition 1000" in page


@pytest.mark.parametrize("argv, message", [
    (["builtin:lion", "--axes", "batch,size"], "--axes: unknown axis 'size'"),
    (["builtin:lion", "--axes", "lr", "--levels", "lr=fast"], "expected AXIS=V1,V2 with numbers"),
    (["builtin:lion", "--axes", "lr", "--levels", "size=2"], "unknown axis 'size'"),
    (["builtin:nope"], "unknown builtin rule 'nope'"),
    (["builtin:lion", "--baselines", "adamw,nope"], "baseline 'nope'"),
])
def test_bad_names_are_one_line_errors(argv, message, capsys):
    assert main(["regimes", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err

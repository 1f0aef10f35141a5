"""Reports from a small fixture run folder: every section, real embedded PNGs, nothing external,
the winner exported in its simplified form, old and unvalidated runs, and `optforge report`."""

from __future__ import annotations

import base64
import json
import re

import pytest
from report_fixture import build_run, old_journal

from populations.journal import read_records
from populations.population import Population
from search.cli import main
from search.report import render
from search.report.lineage import ancestry, best_ids
from search.report.search_page import SECTIONS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVALUATE_SECTIONS = {"run", "fitness", "tasks", "curves", "profiles", "diagnostics"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = build_run(tmp_path_factory.mktemp("report") / "run")
    assert render(folder) == ("search", folder / "report.html")
    return folder


def sections(text: str) -> set[str]:
    return set(re.findall(r"<section id='([^']+)'", text))


def embedded_pngs(text: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r"src='data:image/png;base64,([^']+)'", text)]


def assert_self_contained(text: str) -> None:
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r"(src|href)='(https?:|//)", text)
    assert not re.search(r"src='(?!data:)", text)  # every image is inlined


def test_the_search_report_has_every_section_and_its_plots_inlined(run):
    text = (run / "report.html").read_text()
    assert sections(text) == {sid for sid, _ in SECTIONS}
    pngs = embedded_pngs(text)
    assert len(pngs) == 5 and all(p[:8] == PNG_MAGIC and len(p) > 5000 for p in pngs)
    assert_self_contained(text)
    for name in ("progress", "proxy_vs_heldout", "heldout_curves", "pareto", "lineage"):
        assert (run / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    assert text.count("<table") >= 6 and "<pre>" in text


def test_the_validated_rule_shows_its_statistics_diagnostics_and_both_forms(run):
    text = (run / "report.html").read_text()
    validated = text[text.index("<section id='validated'>"):]
    assert "update = sign(m) * 1" in validated  # as found
    assert "Simplified form" in validated and "replace: sign(m) * 1 -&gt; sign(m)" in validated
    assert "winners/c000003.py" in validated and "class Found3" in validated
    for header in ("Welch p", "generalisation gap", "update / weight RMS", "sharpness",
                   "steps to target"):
        assert header in validated
    opt = (run / "winners" / "c000003.opt").read_text()
    assert opt.endswith("m = lerp(m, g, 1 - beta)\nupdate = sign(m)\n") and "simplified" in opt


def test_counts_by_kind_and_the_leaderboard_files(run):
    data = json.loads((run / "results.json").read_text())
    assert data["counts"] == {"proposed": 6, "trained": 4, "duplicates": 1, "invalid": 1,
                              "hurdle": 0, "failed": 1, "complete": 3}
    assert data["cache_hits"] == {"same structure": 1}
    assert data["failures"] == {"failed": {"diverged or non-finite": 1},
                                "invalid": {"update does not depend on g": 1}}
    assert data["winners"] == ["c000003"] and data["simplified"]["c000003"]["changed"]
    assert [r["id"] for r in data["leaderboard"]][:3] == ["c000003", "c000002", "c000001"]
    assert data["leaderboard"][0]["remeasured"] is True
    md = (run / "leaderboard.md").read_text()
    assert "| rank | id | origin | stage | fitness |" in md
    assert "| 4 | c000004 | mutation | first | failed |" in md


def test_the_lineage_drawing_keeps_the_best_rules_ancestry_only(run):
    pop = Population.from_records(read_records(run / "journal.jsonl"))
    graph = ancestry(pop, best_ids(pop, top=3))
    assert set(graph.nodes) == {"c000001", "c000002", "c000003"}
    assert graph.edges["c000002", "c000003"]["change"] == "replace: momentum -> lerp"


def test_a_run_without_validated_rules_renders_and_says_so(tmp_path):
    run = build_run(tmp_path / "run", validated=False)
    _, path = render(run)
    text = path.read_text()
    assert sections(text) == {sid for sid, _ in SECTIONS}
    assert "No rule was validated in this run" in text
    assert len(embedded_pngs(text)) == 3  # progress, Pareto, lineage: nothing held-out to draw
    assert not (run / "winners").exists()


def test_a_journal_from_before_the_funnel_renders(tmp_path):
    _, path = render(old_journal(tmp_path / "old"))
    text = path.read_text()
    assert sections(text) == {sid for sid, _ in SECTIONS}
    assert "no config.yaml in this folder" in text and len(embedded_pngs(text)) >= 2


def test_optforge_report_renders_search_and_evaluate_folders(run, capsys):
    assert main(["report", str(run)]) == 0
    assert "(search report)" in capsys.readouterr().out
    folder = run / "validation" / "c000003"  # the schema of optforge evaluate --out
    assert main(["report", str(folder)]) == 0
    text = (folder / "report.html").read_text()
    assert sections(text) == EVALUATE_SECTIONS
    assert_self_contained(text)
    pngs = embedded_pngs(text)
    assert pngs and all(p[:8] == PNG_MAGIC for p in pngs)
    assert "verdict: c000003" in text and "sharpness" in text


def test_optforge_report_refuses_folders_it_cannot_render(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "neither a search (journal.jsonl) nor" in err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_failure_kinds_name_the_message_not_the_rule_location():
    from search.report.leaderboard import _kind

    assert _kind("2:1: global_dot(): every argument must be a tensor (it reduces over the group's tensors)") \
        == "global_dot(): every argument must be a tensor"
    assert _kind("non-finite parameters at step 9 of the fixed problem") == "non-finite on the gate's fixed problem"
    assert _kind("") == "unknown"


def test_a_held_out_failure_reads_failed_not_the_worst_fitness_sentinel():
    from evaluators.fitness import WORST_FITNESS
    from search.report.leaderboard import heldout_text

    assert heldout_text({"fitness": WORST_FITNESS, "winner": False}) == "failed"
    assert heldout_text({"fitness": 0.74373, "winner": False}) == "0.7437"
    assert heldout_text(None) == "-" and heldout_text({}) == "-"

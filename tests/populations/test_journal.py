"""The append-only journal: durable records, torn tails cut, bad lines named (populations.journal)."""

import json

import pytest

from populations.journal import Journal, JournalError, read_records


def test_records_round_trip_in_order_with_sequence_numbers(tmp_path):
    path = tmp_path / "run" / "journal.jsonl"
    with Journal(path) as j:
        j.append("start", session=0)
        j.append("proposed", candidate={"id": "c1", "text": "update = g\n", "origin": "seed"})
        j.append("finished", id="c1", outcome={"fitness": 1.0, "status": "ok"})
    records = read_records(path)
    assert [r["event"] for r in records] == ["start", "proposed", "finished"]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[2]["outcome"]["fitness"] == 1.0 and records[0]["time"].endswith("+00:00")
    with Journal(path) as j:  # reopening continues the numbering
        assert len(j.records) == 3
        assert j.append("end")["seq"] == 4


def test_non_finite_numbers_become_null(tmp_path):
    with Journal(tmp_path / "j.jsonl") as j:
        j.append("finished", id="c1", outcome={"fitness": float("inf"), "tasks": {"a": float("nan")}})
    (record,) = read_records(tmp_path / "j.jsonl")
    assert record["outcome"] == {"fitness": None, "tasks": {"a": None}}


def test_a_torn_last_line_is_skipped_and_cut_on_reopen(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        j.append("start")
        j.append("proposed", candidate={"id": "c1"})
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"seq": 3, "event": "fini')  # the process died mid-write
    assert len(read_records(path)) == 2
    with Journal(path) as j:
        assert path.read_bytes() == whole  # the torn tail is gone before anything is appended
        j.append("finished", id="c1", outcome={})
    assert [r["seq"] for r in read_records(path)] == [1, 2, 3]


def test_a_complete_but_bad_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps({"seq": 1, "event": "start"}) + "\nnot json\n")
    with pytest.raises(JournalError, match=r"j.jsonl:2: not a JSON record"):
        read_records(path)
    path.write_text(json.dumps({"seq": 1, "event": "party"}) + "\n")
    with pytest.raises(JournalError, match=r":1: not a journal record"):
        read_records(path)


def test_unknown_event_and_closed_journal_are_refused(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    with pytest.raises(ValueError, match="unknown journal event"):
        j.append("party")
    j.close()
    j.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        j.append("start")


def test_each_append_is_on_disk_before_it_returns(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    for i in range(5):
        j.append("proposed", candidate={"id": f"c{i}"})
        assert len(read_records(path)) == i + 1  # another reader sees it at once
    j.close()

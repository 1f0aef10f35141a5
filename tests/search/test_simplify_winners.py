"""Winners are simplified on the last funnel stage and the changed form is validated again."""

import json

from populations.candidate import Candidate, Outcome
from populations.journal import Journal
from populations.population import Population
from search.config import parse_config
from search.engine import funnel_plan
from search.validation import simplify_winners

PADDED = "hparams beta=0.9\nm = lerp(m, g, 1 - beta)\nu = m * 1.0\nupdate = sign(u) + 0.0 * g\n"


def test_a_padded_winner_is_simplified_and_validated_again(tmp_path):
    cfg = parse_config({
        "funnel": [{"name": "sel", "tasks": ["quadratic"], "preset": "tiny", "seeds": 2, "budget": 2}],
        "validation": {"tasks": ["quadratic_hard"], "preset": "tiny", "seeds": 3, "budget": 2, "baselines": ["adamw"]},
        "simplify": {"max_calls": 10, "seeds": 2}})
    with Journal(tmp_path / "journal.jsonl") as j:
        j.append("proposed", candidate=Candidate(PADDED, "mutation", (), "padded", "c000001").to_dict())
        j.append("finished", id="c000001", outcome=Outcome(0.9, "ok", stage="sel", depth=0).to_dict())
        j.append("validated", id="c000001", result={"fitness": 0.95, "winner": True, "verdict": "v"})
        pop = Population.from_records(j.records)
    logs = []
    assert simplify_winners(pop, cfg, funnel_plan(cfg), tmp_path, log=logs.append) == ["c000001"]
    record = json.loads((tmp_path / "simplified" / "c000001.json").read_text())
    assert record["calls"] <= 10 and record["original"].strip() != "" and len(record["original_samples"]) == 2
    # the identity factor and the zero term go; the momentum and the sign, which matter, stay
    assert record["changed"] and "* 1" not in record["simplified"] and "0 * g" not in record["simplified"]
    assert "lerp(m, g" in record["simplified"] and "sign(" in record["simplified"]
    held = json.loads((tmp_path / "validation" / "c000001-simplified" / "results.json").read_text())
    assert held["schema"] == "optforge.evaluate/1" and any("simplified: held-out fitness" in line for line in logs)
    assert simplify_winners(pop, cfg, funnel_plan(cfg), tmp_path, log=logs.append) == []  # done once

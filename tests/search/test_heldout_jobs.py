"""Meta-validation spread over an executor gives exactly the serial numbers (search.heldout_jobs)."""

import json

from populations.candidate import Candidate, Outcome
from populations.journal import Journal
from populations.population import Population
from search.config import parse_config
from search.executors import make_executor
from search.validation import meta_validate

RULE = "hparams beta=0.9\nm = lerp(m, g, 1 - beta)\nupdate = sign(m)\n"


def _population(path):
    j = Journal(path)
    j.append("proposed", candidate=Candidate(RULE, "mutation", (), "signum-like", "c000001").to_dict())
    j.append("finished", id="c000001", outcome=Outcome(0.9, "ok", stage="s", depth=0).to_dict())
    return j, Population.from_records(j.records)


def test_jobs_per_rule_and_task_reproduce_the_serial_validation(tmp_path):
    cfg = parse_config({"validation": {"tasks": ["quadratic_hard", "digits_mlp_deep"], "preset": "tiny",
                                       "seeds": 3, "budget": 2, "baselines": ["adamw", "sgd"]}})
    results = {}
    for kind in ("serial", "jobs"):
        run = tmp_path / kind
        journal, pop = _population(run / "journal.jsonl")
        steps = []
        if kind == "serial":
            meta_validate(pop, journal, cfg, log=lambda s: None, run_dir=run)
        else:
            with make_executor("serial") as executor:
                meta_validate(pop, journal, cfg, log=lambda s: None, run_dir=run, executor=executor,
                              progress=steps.append)
            assert len(steps) == 2 + 2 * 2  # AdamW per task, then sgd and the candidate per task
        journal.close()
        results[kind] = json.loads((run / "validation" / "c000001" / "results.json").read_text())
        assert pop.entries["c000001"].validation is not None
    a, b = results["serial"], results["jobs"]
    assert a["fitness_by_rule"] == b["fitness_by_rule"]
    assert [t["rules"] for t in a["tasks"]] == [t["rules"] for t in b["tasks"]]

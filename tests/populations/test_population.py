"""The population rebuilt from journal records: indexes, leaderboard, Pareto front, lineage."""

from populations.candidate import Candidate, Outcome
from populations.journal import Journal
from populations.population import Population

ADAM_LIKE = "m = lerp(m, g, 0.1)\nupdate = m\n"


def _propose(j, cid, text="update = g\n", origin="mutation", parents=(), h="", fp=""):
    cand = Candidate(text, origin, parents, f"made {cid}", cid)
    return j.append("proposed", candidate=cand.to_dict(), hash=h or cid, fingerprint=fp or cid)


def _finish(j, cid, fitness, status="ok", state_bytes=4.0, same_as=""):
    return j.append("finished", id=cid, outcome=Outcome(fitness, status, {"t": fitness},
                                                        state_bytes, 1.0, "", same_as).to_dict())


def test_replay_rebuilds_state_and_pending(tmp_path):
    with Journal(tmp_path / "j.jsonl") as j:
        j.append("start")
        j.append("reference", tasks={"t": 0.5}, lrs={"t": 0.01})
        _propose(j, "c000001", origin="seed")
        _propose(j, "c000002", parents=("c000001",))
        _propose(j, "c000003", parents=("c000001",))
        _finish(j, "c000002", 0.9)
        records = j.records
    pop = Population.from_records(records)
    assert pop.starts == 1 and pop.reference == {"proxy": {"t": {"losses": {"0": 0.5}}}}  # pre-funnel form
    assert [c.id for c in pop.pending()] == ["c000001", "c000003"]
    assert pop.next_id() == "c000004"
    assert pop.by_hash["c000002"] == "c000002" and pop.by_fingerprint == {"c000002": "c000002"}
    assert pop.trained_count == 1


def test_leaderboard_orders_complete_first_and_leaves_out_duplicates(tmp_path):
    with Journal(tmp_path / "j.jsonl") as j:
        for i in range(1, 6):
            _propose(j, f"c{i}")
        _finish(j, "c1", 0.8, status="hurdle")  # lower number, but it stopped at the hurdle
        _finish(j, "c2", 1.2)
        _finish(j, "c3", 0.95)
        _finish(j, "c4", 0.95, same_as="c3")  # a duplicate: not trained, not ranked
        _finish(j, "c5", 1e6, status="invalid")
        pop = Population.from_records(j.records)
    assert [e.id for e in pop.leaderboard()] == ["c3", "c2", "c1"]
    assert [e.id for e in pop.leaderboard(1)] == ["c3"]
    assert pop.trained_count == 3
    assert [(n, best) for n, _, best in pop.progress()] == [(1, float("inf")), (2, 1.2), (3, 0.95)]


def test_pareto_front_is_the_non_dominated_set(tmp_path):
    with Journal(tmp_path / "j.jsonl") as j:
        for cid, fit, mem in [("a", 1.0, 8.0), ("b", 0.9, 12.0), ("c", 1.1, 4.0),
                              ("d", 1.05, 8.0), ("e", 0.9, 16.0)]:
            _propose(j, cid)
            _finish(j, cid, fit, state_bytes=mem)
        pop = Population.from_records(j.records)
    assert [e.id for e in pop.pareto_front()] == ["b", "a", "c"]


def test_lineage_graph_has_parent_edges_with_the_change(tmp_path):
    with Journal(tmp_path / "j.jsonl") as j:
        _propose(j, "s", origin="seed")
        _propose(j, "k1", parents=("s",))
        _propose(j, "k2", origin="crossover", parents=("s", "k1"))
        _finish(j, "k1", 0.7)
        pop = Population.from_records(j.records)
    g = pop.lineage()
    assert set(g.edges) == {("s", "k1"), ("s", "k2"), ("k1", "k2")}
    assert g.edges["s", "k1"]["change"] == "made k1"
    assert g.nodes["k1"]["fitness"] == 0.7 and g.nodes["k2"]["status"] is None


def test_candidate_and_outcome_round_trip():
    cand = Candidate(ADAM_LIKE, "mutation", ("c1",), "insert", "c2", {"trial": 3})
    assert Candidate.from_dict(cand.to_dict()) == cand
    assert cand.program.name == "c2" and "m" in cand.program.route("default").body[0].target
    out = Outcome(0.9, "ok", {"a": 0.9}, 8.0, 2.5)
    assert Outcome.from_dict(out.to_dict()) == out and out.trained and out.complete
    dup = out.reused_by("c1")
    assert dup.same_as == "c1" and not dup.trained and dup.fitness == 0.9 and dup.wall_time_s == 0


def _staged(j, cid, stage, depth, fitness, promoted):
    score = {"fitness": fitness, "se": 0.1, "seeds": 1, "ratios": {"t": fitness}, "status": "ok", "error": ""}
    return j.append("staged", id=cid, stage=stage, depth=depth, tasks={}, score=score, promoted=promoted,
                    remeasure=False, wall_time_s=1.0, state_bytes=4.0)


def test_stage_records_are_kept_and_the_deepest_stage_ranks_first(tmp_path):
    with Journal(tmp_path / "j.jsonl") as j:
        for cid in ("a", "b", "c"):
            _propose(j, cid)
        _staged(j, "a", "cheap", 0, 0.7, promoted=False)
        _staged(j, "b", "cheap", 0, 0.9, promoted=True)
        _staged(j, "b", "full", 1, 1.1, promoted=False)
        _staged(j, "c", "cheap", 0, 0.8, promoted=True)
        remeasured = {"fitness": 1.3, "se": 0.05, "seeds": 3, "ratios": {"t": 1.3}, "status": "ok"}
        j.append("remeasured", id="c", stage="cheap", tasks={}, score=remeasured, wall_time_s=1.0)
        j.append("finished", id="a", outcome=Outcome(0.7, "hurdle", stage="cheap", depth=0).to_dict())
        j.append("finished", id="b", outcome=Outcome(1.1, "ok", stage="full", depth=1).to_dict())
        pop = Population.from_records(j.records)
    assert [r["stage"] for r in pop.entries["b"].stages] == ["cheap", "full"]
    assert sorted(pop.stage_fitnesses("cheap")) == [0.7, 0.9, 1.3]  # c's remeasured value counts
    assert pop.stage_fitnesses("cheap", exclude="a") == [0.9, 1.3]
    assert [e.id for e in pop.leaderboard()] == ["b", "a"]  # deeper first, whatever the fitness


def test_noisy_results_are_discounted_when_ranking_with_z():
    lucky = Outcome(0.90, "ok", depth=1, se=0.30)
    steady = Outcome(0.95, "ok", depth=1, se=0.02)
    assert lucky.rank_key() < steady.rank_key()  # by the mean alone the lucky one wins
    assert steady.rank_key(z=1.0) < lucky.rank_key(z=1.0)  # one standard error of doubt: it does not
    assert Outcome(2.0, "ok", depth=2).rank_key(1.0) < lucky.rank_key(1.0)  # deeper stage first
    assert lucky.rank_key() < Outcome(0.5, "failed", depth=2).rank_key()  # failed rules last
    unknown = Outcome.from_dict({**steady.to_dict(), "se": None})  # the journal writes NaN as null
    assert unknown.se != unknown.se

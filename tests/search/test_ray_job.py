"""A search submitted as a Ray job to a running head, as the README's "On a Ray cluster" walkthrough
does it: ``ray start --head``, then ``ray job submit -- optforge search ... --executor ray
--address auto``; the run folder is checked and the head is stopped (ray_head.py explains how,
without ``ray stop``). Also: configs/cluster.yaml passes Ray's own cluster-launcher validation, so
a typo in it fails here rather than on a user's ``ray up``."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray_head import local_ray_head, pids_with_env, ray_cli

from populations.journal import read_records
from populations.population import Population

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "configs" / "cluster.yaml"
TINY = {"name": "ray-job", "strategy": "random", "evaluations": 2, "seeds": ["adamw"],
        "proxy": {"tasks": ["quadratic"], "preset": "tiny", "budget": 2}, "validation": {"top_k": 0}}


@pytest.mark.slow
@pytest.mark.skipif(ray_cli() is None, reason="the `ray` command is not installed (pip install 'ray[default]')")
def test_search_submitted_as_a_ray_job_writes_its_run_folder(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    started = time.monotonic()
    with local_ray_head(tmp_path / "home") as head:
        up = time.monotonic()
        submit = head.job(["submit", "--submission-id", "optforge-tiny", "--",
                           "optforge", "search", str(config), "--out", str(run), "--executor", "ray",
                           "--address", "auto", "--no-progress"], timeout=300)
        output = submit.stdout + submit.stderr
        assert submit.returncode == 0, f"ray job submit failed:\n{output[-4000:]}\nray start:\n{head.log_tail()}"
        assert "Job 'optforge-tiny' succeeded" in output, output[-4000:]
        refused = head.job(["list"], timeout=60, token=False)  # the head wants its token
        assert refused.returncode != 0 and "Authentication required" in refused.stderr, refused.stderr[-2000:]
        # The evaluations ran as tasks of this head (not of a Ray the job started by itself).
        finished = [t for t in head.tasks() if t["type"] == "NORMAL_TASK" and t["state"] == "FINISHED"]
        marker = f"RAY_AUTH_TOKEN={head.env['RAY_AUTH_TOKEN']}"
    print(f"head up in {up - started:.1f} s, job and stop in {time.monotonic() - up:.1f} s; "
          f"{len(head.killed)} process(es) killed after the graceful stop")
    assert pids_with_env(marker) == [], "a process of the Ray head outlived it"

    records = read_records(run / "journal.jsonl")
    assert records[0]["event"] == "start" and records[0]["executor"] == "ray"
    population = Population.from_records(records)
    assert population.trained_count == 2 and len(finished) >= 2
    assert (records[-1]["event"], records[-1]["trained"]) == ("end", 2)
    leaderboard = (run / "leaderboard.md").read_text()
    ranked = population.leaderboard()
    assert len(ranked) == 2 and all(f"| {entry.id} |" in leaderboard for entry in ranked)


def _launcher_config(raw: dict) -> dict:
    """What `ray up` validates: the file with Ray's defaults filled in (the same two calls
    ray.autoscaler._private.commands._bootstrap_config makes before talking to any machine)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def _aws_alternative() -> dict:
    """configs/cluster.yaml with its commented AWS block (between ``# >>> aws`` and ``# <<< aws``)
    uncommented in place of its ``provider`` and ``auth``, as the file tells a reader to do."""
    text = CLUSTER_YAML.read_text()
    lines = text.splitlines()
    start, end = lines.index("# >>> aws"), lines.index("# <<< aws")
    block = yaml.safe_load("\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                                     for line in lines[start + 1:end]))
    shared = {k: v for k, v in yaml.safe_load(text).items() if k not in ("provider", "auth")}
    return {**shared, **block}


def test_cluster_yaml_passes_rays_own_launcher_validation():
    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    config = _launcher_config(raw)
    assert config["provider"]["type"] == "local"
    (node_type,) = config["available_node_types"].values()  # the local provider's one node type
    assert node_type["max_workers"] == len(raw["provider"]["worker_ips"])
    assert "~/optforge" in config["file_mounts"] and "~/.ray/auth_token" in config["file_mounts"]
    assert any("pip install" in c and "-e ~/optforge" in c for c in config["setup_commands"])
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert any("RAY_AUTH_MODE=token" in c and "ray start" in c for c in commands)


def test_the_commented_aws_alternative_passes_too():
    config = _launcher_config(_aws_alternative())
    assert config["provider"]["type"] == "aws"
    assert set(config["available_node_types"]) == {"head", "cpu", "gpu"}
    assert config["available_node_types"]["gpu"]["resources"]["GPU"] == 1


@pytest.mark.parametrize("typo", [{"setup_comands": []}, {"file_mount": {}}, {"upscaling_speed": "fast"}])
def test_a_typo_in_the_cluster_yaml_fails_validation(typo):
    """The negative control: the validation above can fail."""
    with pytest.raises(jsonschema.ValidationError):
        _launcher_config({**yaml.safe_load(CLUSTER_YAML.read_text()), **typo})


def test_a_typo_in_a_node_type_fails_validation():
    aws = _aws_alternative()
    aws["available_node_types"]["gpu"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError):
        _launcher_config(aws)

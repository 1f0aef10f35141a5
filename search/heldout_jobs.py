"""Meta-validation's training, spread over the executor: one job per rule and held-out task.

The held-out protocol (``evaluators.evaluate``) trains every rule on every task, tuning and then
fresh seeds, and is by far the longest part of a search's end (several minutes per rule on a
CPU). The runs of different rules and tasks do not depend on each other, except that every rule's
lr grid is placed relative to AdamW's update scale on the same task. So AdamW is measured first,
one job per task, then every (rule, task) pair as its own job with AdamW's runs in its cache,
on whatever executor the search uses (local processes, a Ray cluster). Each job returns the
entries it added to ``evaluate``'s run cache (the same keys and values a serial evaluation would
create: the runs are deterministic), and the caller then builds each candidate's report with
``evaluate`` over the merged cache: every run is a cache hit, so the numbers are exactly those of
a serial evaluation. A job that fails (a lost worker) just leaves its runs to that final call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping


def heldout_job(payload: dict) -> dict:
    """Train one rule on the single task of ``payload["settings"]``; returns the new cache entries.

    payload: ``text``, ``name`` (the rule), ``adamw`` (AdamW's canonical text), ``settings``
    (an ``evaluators.evaluate.Settings`` with one task), ``cache`` (AdamW's entries for it)."""
    from dsl.parser import parse
    from evaluators.evaluate import evaluate

    seed_cache = payload["cache"]
    cache = dict(seed_cache)
    rule = parse(payload["text"], name=payload["name"])
    evaluate(rule, {"adamw": parse(payload["adamw"], name="adamw")}, payload["settings"], cache=cache)
    return {k: v for k, v in cache.items() if k not in seed_cache}


def prewarm(executor, rules: Mapping[str, str], settings, adamw_text: str,
            progress: Callable[[int], None] | None = None, cache: dict | None = None) -> dict:
    """Run the held-out training of ``rules`` (name -> canonical text) on ``executor``; returns the
    run cache (``cache``, filled in) that ``evaluate`` then reads."""
    import concurrent.futures as cf

    cache = {} if cache is None else cache
    singles = [dataclasses.replace(settings, tasks=(task,)) for task in settings.tasks]

    def run(payloads: list[dict]) -> None:
        futures = [executor.submit(heldout_job, p) for p in payloads]
        for fut in cf.as_completed(futures):
            try:
                cache.update(fut.result())
            except Exception:  # noqa: BLE001 -- the final evaluate trains what is missing
                pass
            if progress:
                progress(1)

    common = {"adamw": adamw_text}
    run([{**common, "text": adamw_text, "name": "adamw", "settings": s, "cache": {}} for s in singles])
    adamw_runs = dict(cache)
    run([{**common, "text": text, "name": name, "settings": s, "cache": adamw_runs}
         for name, text in rules.items() if text != adamw_text for s in singles])
    return cache

"""The HTML page of an ``optforge evaluate`` folder, rendered from its results.json.

Sections (stable ids): ``run`` (settings, code version, machine, time and memory), ``fitness``
(every rule's fitness and the verdict), ``tasks`` (per task: tuned lr, validation loss mean and
spread, ratio to AdamW, Welch and bootstrap p against the candidate, steps to target),
``curves`` (the loss plots, inlined), ``profiles`` (AlgoPerf performance profile, when computed)
and ``diagnostics`` (``evaluators.diagnostics``: generalisation gap, update RMS, its ratio to
the weights, sharpness, steps to target; medians over the evaluation seeds).
"""

from __future__ import annotations

from pathlib import Path

from evaluators.results import write_text_atomic

from . import evaluation_data as ed
from . import html as h

SECTIONS = (("run", "Run"), ("fitness", "Fitness"), ("tasks", "Per task"), ("curves", "Curves"),
            ("profiles", "Profiles"), ("diagnostics", "Diagnostics"))


def _plots(results: dict, out: Path) -> list[Path]:
    """The loss plots listed in results.json, drawn again from the runs when a file is gone."""
    from evaluators.plots import plot_loss_curves

    names = [p for p in results.get("plots", []) if p.startswith("loss_")]
    paths = [out / p for p in names]
    if names and all(p.is_file() for p in paths):
        return paths
    cand = results["rule"]["label"]
    lrs = {t["task"]: {k: v["tuned_lr"] for k, v in t["rules"].items()} for t in results["tasks"]}
    return [plot_loss_curves(task, by_label, cand, out / f"loss_{task}.png", tuned_lr=lrs[task])
            for task, by_label in ed.eval_runs(results).items()]


def evaluate_html(results: dict, out: Path) -> str:
    from evaluators.resources import format_bytes

    s, prov, usage = results["settings"], results["provenance"], results.get("usage") or {}
    cand = results["rule"]["label"]
    run = h.section("run", "The run", h.definitions([
        ("candidate", f"{cand} ({results['rule'].get('source', '')})"),
        ("suite", f"{s['suite']} ({', '.join(t['name'] for t in s['tasks'])})"),
        ("preset / device", f"{s['preset']} / {s['device']}"),
        ("seeds", f"{s['seeds']} evaluation seeds {s.get('eval_seeds')}, lr tuned on seed "
                  f"{s.get('tune_seed', 0)}"),
        ("tuning", f"{s['tuner']}, {s['budget']} trials per rule and task"),
        ("code version", prov.get("code_version")), ("started", prov.get("created")),
        ("machine", f"{prov.get('platform')}, Python {prov.get('python')}, torch {prov.get('torch')}"),
        ("wall time", f"{results.get('wall_time_s', 0):.1f} s"),
        ("peak memory", "-" if usage.get("peak_memory_bytes") is None else
         f"{format_bytes(usage['peak_memory_bytes'])} ({usage.get('memory_kind', '?')})")]),
        h.code(results["rule"]["text"]))
    fits = results["fitness_by_rule"]
    fitness = h.section("fitness", "Fitness (geometric mean of val loss / AdamW's; lower is better)",
                        f"<p class='verdict'>{h.esc(results['verdict'])}</p>",
                        h.table(["rule", "fitness", "failed"],
                                [(k, v["value"], v["failed"]) for k, v in fits.items()]))
    tasks = []
    noise = results.get("seed_noise") or {}
    if noise:
        tasks.append(h.table(
            ["task", "AdamW seeds", "AdamW std / mean", "smallest detectable effect / mean"],
            [(t, n.get("seeds"), n.get("std_over_mean"), n.get("mde_over_mean"))
             for t, n in noise.items()]))
    tasks.append(h.para("p: the candidate against each rule on the evaluation seeds; steps to "
                        "target: median over seeds; diverged: seeds that diverged.", "note"))
    for t in results["tasks"]:
        rows = [(label, r["tuned_lr"], r["val_loss_mean"], r["val_loss_std"], r["ratio_to_adamw"],
                 r["status"], r["welch_p_vs_candidate"], r["bootstrap_p_vs_candidate"],
                 r["median_steps_to_target"], len(r["diverged_seeds"]))
                for label, r in t["rules"].items()]
        tasks += [f"<h3>{h.esc(t['task'])}</h3>",
                  h.table(["rule", "tuned lr", "val loss mean", "std", "/ AdamW", "status",
                           "p (Welch)", "p (bootstrap)", "steps to target", "diverged"], rows)]
    curves = [h.image(p, p.stem) for p in _plots(results, out)]
    prof = results.get("profiles")
    profiles = h.section("profiles", "Performance profiles (AlgoPerf, r_max = 4)",
                         h.image(out / "performance_profile.png", "performance profile"),
                         h.table(["rule", "score"], list(prof["scores"].items()))) if prof else \
        h.section("profiles", "Performance profiles",
                  h.para("Not computed for this suite (pass --profiles).", "note"))
    diag = h.section("diagnostics", "Diagnostics (medians over the evaluation seeds)",
                     h.para("Generalisation gap = final validation loss - final training loss; "
                            "update RMS = RMS of the applied step (lr included) at the evaluation "
                            "points; sharpness = top Hessian eigenvalue of the training loss at the "
                            "end (small tasks only).", "note"),
                     h.table(ed.DIAGNOSTIC_HEADERS, ed.diagnostics_rows(results)))
    body = [h.nav(SECTIONS), run, fitness, h.section("tasks", "Per task", *tasks),
            h.section("curves", "Loss curves (val solid, train dashed)", h.grid(curves)),
            profiles, diag]
    return h.page(f"optforge evaluate: {cand}", body, results["verdict"])


def write_evaluate_report(out_dir: str | Path) -> Path:
    """Write ``report.html`` beside an evaluation's results.json; returns its path."""
    out = Path(out_dir)
    results = ed.load(out / "results.json")
    if results is None:
        raise ValueError(f"{out / 'results.json'}: missing or not JSON")
    return write_text_atomic(out / "report.html", evaluate_html(results, out))

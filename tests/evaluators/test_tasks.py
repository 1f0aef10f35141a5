"""Tasks, offline data and suites: registry-driven smoke tests at the `tiny` preset.

Every registered task trains with AdamW (torch's, so these tests do not depend on the rule
language) at a known-good lr to below a validation loss measured on this machine (torch 2.13 CPU,
seed 0); the thresholds sit 10-20% above the measured values (4% for the character LMs, whose
losses start at 4.6) so they catch a broken task, not float noise. Measured final validation
losses (tiny preset, lr as in LEARNS; initial losses in brackets): quadratic 0.00018 (0.0061),
quadratic_hard 0.00085 (0.0072), quadratic_long 0.000093 (0.0073), rosenbrock 0.91 (5.7), linreg
0.29 (4.3), digits_logreg 0.16 (2.4), digits_mlp 0.125 (2.3), digits_mlp_wide 1.12 (2.31),
digits_mlp_deep 1.44 (2.31), digits_cnn 1.22 (2.33), digits_autoencoder 0.050 (0.26), charlm 3.46
(4.62), charlm_long 3.12 (4.57), charlm_deep 3.35 (4.85). The augmented digits tasks (wide, deep,
cnn) stay far from zero at the tiny preset: their validation images are perturbed copies.
"""

from __future__ import annotations

import re
import textwrap

import pytest
import torch

from evaluators import data, suites
from evaluators.ensemble import stackable
from evaluators.recipe import route_of
from evaluators.tasks import PRESETS, TASKS, get_task
from evaluators.tasks.digits import DigitsConfig
from evaluators.tasks.generated import QuadraticConfig
from evaluators.train import TORCH_ADAMW, run_training

# task -> (AdamW lr, validation loss it must beat at the tiny preset, seed 0)
LEARNS = {
    "quadratic": (0.03, 0.00022),
    "quadratic_hard": (0.03, 0.001),
    "quadratic_long": (0.03, 0.00011),
    "rosenbrock": (0.3, 1.0),
    "linreg": (0.3, 0.33),
    "digits_logreg": (0.1, 0.19),
    "digits_mlp": (0.03, 0.15),
    "digits_mlp_wide": (0.03, 1.3),
    "digits_mlp_deep": (0.03, 1.65),
    "digits_cnn": (0.03, 1.4),
    "digits_autoencoder": (0.03, 0.057),
    "charlm": (0.03, 3.6),
    "charlm_long": (0.03, 3.25),
    "charlm_deep": (0.01, 3.5),
}


def test_every_task_has_a_smoke_threshold_and_all_presets():
    assert set(LEARNS) == set(TASKS)
    for task in TASKS.values():
        assert set(task.presets) == set(PRESETS), task.name


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_trains_below_known_good_loss(name):
    lr, threshold = LEARNS[name]
    result = run_training(name, TORCH_ADAMW, lr, seed=0, preset="tiny")
    assert not result.diverged
    assert result.final_val_loss < threshold
    assert result.final_val_loss < 0.75 * result.val_curve[0][1]  # it learned something


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_is_seeded_and_stackable(name):
    task = get_task(name)
    a, b, c = task.build(0, "tiny"), task.build(0, "tiny"), task.build(1, "tiny")
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    xa, xb, xc = a.train_batch(3)[0], b.train_batch(3)[0], c.train_batch(3)[0]
    assert torch.equal(xa, xb)
    assert task.stackable and stackable(a.model)
    if name != "rosenbrock":  # full batch: the same every step and seed, only the start moves
        assert not torch.equal(xa, xc)
    same_start = all(torch.equal(pa, pc) for pa, pc in zip(a.model.parameters(),
                                                           c.model.parameters()))
    assert same_start == (getattr(task.config("tiny"), "start", "") == "fixed")
    for (va, _), (vc, _) in zip(a.val_batches, c.val_batches, strict=True):
        assert torch.equal(va, vc)  # every seed validates on the same data


def _routes(name: str) -> dict[str, str]:
    return {n: route_of(p) for n, p in get_task(name).build(0, "tiny").model.named_parameters()}


def test_routes_follow_muon_guidance():
    mlp = _routes("digits_mlp_deep")
    assert mlp["layers.0.weight"] == mlp["layers.1.weight"] == "matrix"
    assert mlp["layers.2.weight"] == "default"  # the head
    assert all(r == "default" for n, r in mlp.items() if n.endswith("bias"))
    lm = _routes("charlm")
    assert lm["tokens.weight"] == lm["positions.weight"] == lm["head.weight"] == "default"
    assert {lm[f"blocks.0.{k}.weight"] for k in ("qkv", "proj", "up", "down")} == {"matrix"}
    assert lm["blocks.0.ln1.weight"] == "default"
    cnn = _routes("digits_cnn")
    assert cnn["convs.0.weight"] == "matrix" and cnn["head.weight"] == "default"


def test_unknown_task_and_preset_are_clear_errors():
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(ValueError, match="no preset 'huge'"):
        get_task("digits_mlp").build(0, "huge")


def test_epoch_sampler_visits_every_sample_once_per_epoch():
    sampler = data.EpochSampler(10, 4, seed=0)
    first = torch.cat([sampler.indices(s) for s in range(5)])  # 20 draws = 2 epochs
    assert sorted(first[:10].tolist()) == list(range(10))
    assert sorted(first[10:].tolist()) == list(range(10))
    assert torch.equal(data.EpochSampler(10, 4, seed=0).indices(3), sampler.indices(3))


def test_digits_split_is_fixed_and_disjoint():
    d = data.digits()
    assert len(d.x_train) + len(d.x_val) == 1797 and len(d.x_val) == 359
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0
    rows = {tuple(r) for r in d.x_train.tolist()}
    assert sum(tuple(r) in rows for r in d.x_val.tolist()) < 30  # only exact duplicate images


def test_stdlib_corpus_is_deterministic_and_split_by_file():
    corpus = data.stdlib_corpus(200_000)
    assert len(corpus.train) == 200_000 and len(corpus.val) == 20_000
    assert not set(corpus.train_files) & set(corpus.val_files)
    assert int(corpus.train.max()) < data.VOCAB_SIZE
    assert "def " in data.decode(corpus.train[:20_000])
    assert corpus.fingerprint == data.stdlib_corpus(200_000).fingerprint


def test_shipped_suites_load_and_keep_apart():
    names = suites.suite_names()
    assert {"proxy", "selection", "heldout"} <= set(names)
    proxy, selection, heldout = (suites.load_suite(n) for n in ("proxy", "selection", "heldout"))
    assert "digits_mlp" in proxy.task_names() and "charlm" in proxy.task_names()
    assert "digits_mlp_wide" in selection.task_names() and "charlm_long" in selection.task_names()
    assert "digits_cnn" in heldout.task_names() and "charlm_deep" in heldout.task_names()
    tasks = [set(s.task_names()) for s in (proxy, selection, heldout)]
    assert not (tasks[0] & tasks[1] or tasks[0] & tasks[2] or tasks[1] & tasks[2])


@pytest.mark.parametrize("suite", ["selection", "heldout"])
def test_certifying_suites_use_large_validation_sets(suite):
    # the noise fix: every digits task validates on perturbed copies of half the images
    for name in suites.load_suite(suite).task_names():
        cfg = get_task(name).config("cpu")
        if isinstance(cfg, DigitsConfig):
            assert cfg.augmented and cfg.val_fraction == 0.5 and cfg.val_copies >= 2, name
            val = get_task(name).build(0, "tiny").val_batches
            assert sum(len(x) for x, _ in val) == 898  # 1 copy of the held-out half at tiny
        elif isinstance(cfg, QuadraticConfig):
            assert cfg.start == "fixed", name
        else:
            assert cfg.val_windows >= 256, name


def test_perturb_digits_translates_and_adds_noise():
    x = data.digits().x_val[:50]
    y = data.perturb_digits(x, data.generator("t"), max_shift=2)
    assert y.shape == x.shape and torch.equal(y, data.perturb_digits(x, data.generator("t"), 2))
    padded = torch.nn.functional.pad(x.reshape(-1, 8, 8), (2, 2, 2, 2))
    for img, out in zip(padded, y.reshape(-1, 8, 8)):  # each output is one of the 25 shifts
        assert any(torch.equal(img[dy:dy + 8, dx:dx + 8], out)
                   for dy in range(5) for dx in range(5))
    assert not torch.equal(y, x)
    noisy = data.perturb_digits(x, data.generator("t"), max_shift=1, noise=0.2)
    assert 0.0 <= float(noisy.min()) and float(noisy.max()) <= 1.0
    assert float((noisy - data.perturb_digits(x, data.generator("t"), 1)).abs().mean()) > 0.05


def test_augmented_stream_is_pure_in_seed_and_step():
    a, b = get_task("digits_mlp_deep").build(0, "tiny"), get_task("digits_mlp_deep").build(0, "tiny")
    assert torch.equal(a.train_batch(7)[0], b.train_batch(7)[0])
    assert torch.equal(a.train_batch(7)[1], b.train_batch(7)[1])
    # an image comes back in the next epoch perturbed afresh (same label, other pixels)
    sampler = data.EpochSampler(len(data.digits(0.5).x_train), 64, seed=0)
    first = sampler.indices(0)[0]
    step, pos = next((s, int(hit[0])) for s in range(1, 40)
                     if len(hit := (sampler.indices(s) == first).nonzero()))
    assert a.train_batch(0)[1][0] == a.train_batch(step)[1][pos]
    assert not torch.equal(a.train_batch(0)[0][0], a.train_batch(step)[0][pos])


def test_suite_from_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ntasks: [digits_mlp, {name: charlm, steps: {tiny: 5}}]\n")
    suite = suites.load_suite(str(path))
    assert suite.name == "mine" and suite.task_names() == ("digits_mlp", "charlm")
    assert suite.tasks[1].steps_for("tiny") == 5


@pytest.mark.parametrize("text, key", [
    ("name: x\ntasks: [digits_mlp]\nseeds: 3\n", "'seeds'"),
    ("name: x\ntasks: [{name: digits_mlp, stepz: {cpu: 3}}]\n", "'tasks[0].stepz'"),
    ("name: x\ntasks: [{name: digits_mlp, steps: {cpu: many}}]\n", "'tasks[0].steps.cpu'"),
    ("name: x\ntasks: [{name: digits_mlp, steps: {laptop: 3}}]\n", "'tasks[0].steps.laptop'"),
    ("name: x\ntasks: [digits_mlp, nope]\n", "'tasks[1].name'"),
    ("name: 3\ntasks: [digits_mlp]\n", "'name'"),
    ("tasks: [digits_mlp]\n", "'name'"),
    ("name: x\ntasks: digits_mlp\n", "'tasks'"),
])
def test_suite_errors_name_the_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ValueError, match=re.escape(key)):
        suites.load_suite(path)


def test_unknown_suite_name_lists_choices():
    with pytest.raises(ValueError, match="proxy"):
        suites.load_suite("no_such_suite")


def test_quadratic_starts():
    from evaluators.recipe import Recipe

    def start(mode: str, seed: int) -> torch.Tensor:
        cfg = QuadraticConfig(8, 1e2, 0.003, 4, Recipe(5, 5), target=1.0, start=mode)
        task = type(get_task("quadratic"))("q", {"tiny": cfg})
        return next(task.build(seed, "tiny").model.parameters()).detach()

    assert torch.equal(start("fixed", 0), start("fixed", 1))
    assert not torch.equal(start("signs", 0), start("signs", 1))
    assert not torch.equal(start("gaussian", 0), start("gaussian", 1))
    with pytest.raises(ValueError, match="quadratic start 'zero'"):
        QuadraticConfig(8, 1e2, 0.003, 4, Recipe(5, 5), target=1.0, start="zero")

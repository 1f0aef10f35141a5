"""`optforge export`: writes a working optimizer file atomically (or prints it), names the class
from the rule, records provenance, and answers bad input with exit code 2 and one line on stderr."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from search.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_export_writes_a_working_optimizer(tmp_path, capsys):
    out = tmp_path / "lion_opt.py"
    code, stdout, err = run(capsys, "export", "builtin:lion", "-o", str(out), "--fitness", "0.91")
    assert code == 0 and err == ""
    assert f"wrote {out}: class Lion" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lion_opt.py"]      # no temporary left behind
    mask = os.umask(0o022)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # readable like any file, not mkstemp's 0600
    module = load(out, "cli_lion_opt")
    assert "fitness: 0.91" in module.__doc__ and "source: builtin:lion" in module.__doc__
    p = torch.nn.Parameter(torch.ones(3))
    opt = module.Lion([p], lr=0.1)
    p.grad = torch.tensor([1.0, -2.0, 0.0])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([0.9, 1.1, 1.0]))


def test_class_name_option_and_stdout(tmp_path, capsys):
    code, stdout, _ = run(capsys, "export", "builtin:rmsprop_centered")
    assert code == 0 and "class RmspropCentered(torch.optim.Optimizer):" in stdout
    rule = tmp_path / "my-rule.opt"
    rule.write_text("update = sign(g)\n")
    code, stdout, _ = run(capsys, "export", str(rule), "--class-name", "SignDescent", "-o", "-")
    assert code == 0 and "class SignDescent(torch.optim.Optimizer):" in stdout
    code, stdout, _ = run(capsys, "export", str(rule))
    assert code == 0 and "class MyRule(torch.optim.Optimizer):" in stdout


def test_export_replaces_an_existing_file(tmp_path, capsys):
    out = tmp_path / "opt.py"
    out.write_text("old contents\n")
    assert run(capsys, "export", "builtin:adam", "-o", str(out))[0] == 0
    assert out.read_text().startswith('"""Adam: an optimizer exported by optforge')


@pytest.mark.parametrize("args, message", [
    (["builtin:nope"], "unknown builtin rule 'nope'"),
    (["{missing}"], "no such file"),
    (["{bad_rule}"], "bad.opt:1:"),
    (["builtin:adam", "--class-name", "1st"], "invalid class name '1st'"),
    (["builtin:adam", "--class-name", "class"], "invalid class name 'class'"),
    (["builtin:adam", "-o", "{tmp}"], "is a directory"),
    (["builtin:adam", "-o", "{tmp}/no/such/dir/opt.py"], "does not exist"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    bad = tmp_path / "bad.opt"
    bad.write_text("update = g +\n")
    fill = {"missing": str(tmp_path / "missing.opt"), "bad_rule": str(bad), "tmp": str(tmp_path)}
    code, out, err = run(capsys, "export", *[a.format(**fill) for a in args])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.opt"]

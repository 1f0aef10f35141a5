"""Hostile input: every case raises one exact RuleError subclass with one exact one-line message
naming file:line:col; nothing but RuleErrors ever escapes the parser (hypothesis over random text,
token soup and bytes); the text is never evaluated; the limits accept what they should."""

from __future__ import annotations

import builtins
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import DIRECTORY, HOSTILE, token_soup

import dsl
from dsl import RuleError, RuleSyntaxError, RuleValidationError, parse, parse_file, to_text
from dsl.parser import MAX_DEPTH, MAX_HPARAMS, MAX_NAME_LENGTH, MAX_SOURCE_BYTES, MAX_STATEMENTS

CLASSES = {"RuleSyntaxError": RuleSyntaxError, "RuleValidationError": RuleValidationError}


def write_case(directory: Path, content) -> Path:
    path = directory / "rule.opt"
    if content is DIRECTORY:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path


def test_table_is_big_enough():
    assert len(HOSTILE) >= 40
    assert {cls for _, cls, _ in HOSTILE.values()} == set(CLASSES)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file(case, tmp_path):
    content, cls, suffix = HOSTILE[case]
    path = write_case(tmp_path, content)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(RuleError) as info:
        warnings.simplefilter("always")
        parse_file(path)
    assert [str(w.message) for w in caught] == []     # Python's SyntaxWarnings would reach stderr
    err = info.value
    assert type(err) is CLASSES[cls]
    assert str(err) == f"{path}{suffix}"
    assert "\n" not in str(err) and "Traceback" not in str(err)
    assert err.file == str(path)
    where = suffix.split(": ", 1)[0].lstrip(":")
    parts = [int(x) for x in where.split(":")] if where else []
    assert [err.line, err.col][: len(parts)] == parts
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)  # nothing chained


@pytest.mark.parametrize("case", sorted(k for k, (c, _, _) in HOSTILE.items() if isinstance(c, str)))
def test_hostile_text_without_a_file_name(case):
    content, cls, suffix = HOSTILE[case]
    with pytest.raises(CLASSES[cls]) as info:
        parse(content)
    if suffix.startswith(": file is"):
        assert str(info.value) == f"rule text is longer than {MAX_SOURCE_BYTES} bytes"
    else:
        assert str(info.value) == suffix[1:].lstrip(" ")
        assert info.value.file is None


def test_text_is_never_evaluated(monkeypatch):
    calls = []

    def trap(*args, **kwargs):
        calls.append(args)
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", trap)
    monkeypatch.setattr(builtins, "exec", trap)
    p = parse("hparams b=0.9\nm = lerp(m, g, 1 - b)\nupdate = sign(m)")
    assert to_text(p) == "hparams b=0.9\nm = lerp(m, g, 1 - b)\nupdate = sign(m)\n"
    for content, _, _ in HOSTILE.values():
        if isinstance(content, str):
            with pytest.raises(RuleError):
                parse(content)
    assert calls == []


# -- never anything but RuleError -------------------------------------------------------------------
def _parse_or_rule_error(text: str):
    try:
        p = parse(text, filename="f.opt")
    except RuleError as exc:
        msg = str(exc)
        assert msg.startswith("f.opt") and "\n" not in msg and "\r" not in msg
        return None
    assert isinstance(p, dsl.Program)
    return p


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_raises_only_rule_errors(text):
    _parse_or_rule_error(text)


@settings(max_examples=300, deadline=None)
@given(token_soup)
def test_token_soup_raises_only_rule_errors(text):
    p = _parse_or_rule_error(text)
    if p is not None:
        assert parse(to_text(p)) == p


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | token_soup.map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_random_bytes_raise_only_rule_errors(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.opt"
        path.write_bytes(data)
        try:
            parse_file(path)
        except RuleError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(path))


# -- limits accept what they should ------------------------------------------------------------
@pytest.mark.parametrize("text, canonical", [
    ("a = g; update = a", "a = g\nupdate = a\n"),
    ("update\t=\tg  # (((( not code\n", "update = g\n"),
    ("update = g  # " + "(" * 200, "update = g\n"),
    ("hparams a=1\r\nupdate = g * a\r\n", "hparams a=1\nupdate = g * a\n"),
    ("update = g * 0x10 + 1_000 * w", "update = g * 16 + 1000 * w\n"),
    ("update = g * 1e-400", "update = g * 0\n"),
    # an hparam written as an integer stays one, a float stays a float (`5.` is 5.0): printed so
    ("hparams a=-1 b=+2 c=.5 d=5. e=1E+3 f=-0.0\nupdate = g",
     "hparams a=-1 b=2 c=0.5 d=5.0 e=1000.0 f=-0.0\nupdate = g\n"),
    ("update = " + "(" * MAX_DEPTH + "g" + ")" * MAX_DEPTH, "update = g\n"),
    ("update = g" + "+1" * MAX_DEPTH, "update = g" + " + 1" * MAX_DEPTH + "\n"),
    ("update = " + "-" * MAX_DEPTH + "g", "update = " + "-(" * (MAX_DEPTH - 1) + "-g" + ")" * (MAX_DEPTH - 1) + "\n"),
    ("x" * MAX_NAME_LENGTH + " = g\nupdate = " + "x" * MAX_NAME_LENGTH,
     "x" * MAX_NAME_LENGTH + " = g\nupdate = " + "x" * MAX_NAME_LENGTH + "\n"),
    ("m = g\n" * (MAX_STATEMENTS - 1) + "update = m", "m = g\n" * (MAX_STATEMENTS - 1) + "update = m\n"),
    ("step = g * 2\nupdate = step", "step = g * 2\nupdate = step\n"),       # a temporary may be called step
    ("route = g\nupdate = route", "route = g\nupdate = route\n"),            # so may a plain variable `route`
    ("update = h * g", "update = h * g\n"),
])
def test_edge_inputs_that_are_valid(text, canonical):
    assert to_text(parse(text)) == canonical


def test_many_hparams_up_to_the_limit():
    names = [f"a{i}" for i in range(MAX_HPARAMS)]
    p = parse("hparams " + " ".join(f"{n}={i}" for i, n in enumerate(names)) + "\nupdate = g")
    assert list(p.hparams) == names and p.hparams["a7"] == 7.0
    with pytest.raises(RuleSyntaxError, match=f"more than {MAX_HPARAMS} hparams"):
        parse("hparams " + " ".join(f"a{i}=1" for i in range(MAX_HPARAMS + 1)) + "\nupdate = g")


def test_byte_order_mark_is_accepted_in_files(tmp_path):
    path = tmp_path / "bom.opt"
    path.write_bytes(b"\xef\xbb\xbf# doc\nupdate = sign(g)\n")
    p = parse_file(path)
    assert to_text(p) == "# doc\nupdate = sign(g)\n" and p.name == "bom"


def test_parse_file_limit_is_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.opt"
    path.write_bytes(b"#" * (MAX_SOURCE_BYTES + 1))
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: pytest.fail("opened an oversized file"))
    with pytest.raises(RuleSyntaxError, match=f"file is {MAX_SOURCE_BYTES + 1} bytes"):
        parse_file(path)


def test_file_errors_carry_the_file_name_in_every_form(tmp_path):
    path = tmp_path / "r.opt"
    path.write_text("update = foo(g)\n")
    with pytest.raises(RuleSyntaxError) as info:
        parse_file(path)
    e = info.value
    assert (e.file, e.line, e.col) == (str(path), 1, 10)
    assert e.message == "unknown primitive 'foo' (see `optforge primitives`)"
    again = e.with_file("other.opt")
    assert type(again) is RuleSyntaxError and str(again) == "other.opt:1:10: " + e.message


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_endless_device_is_refused_after_a_bounded_read():
    with pytest.raises(RuleSyntaxError) as info:
        parse_file("/dev/zero")        # reports size 0 and never ends
    assert str(info.value) == f"/dev/zero: file is more than {MAX_SOURCE_BYTES} bytes; a rule may have at most " \
                              f"{MAX_SOURCE_BYTES}"


@pytest.mark.parametrize("spec, message", [
    ("rule\x00.opt", "'rule\\x00.opt': not a valid file name"),
    ("builtin:../optimizers/adam", "not a builtin rule name: '../optimizers/adam' (see `optforge show --list`)"),
    ("builtin:/etc/passwd", "not a builtin rule name: '/etc/passwd' (see `optforge show --list`)"),
    ("builtin:a\x00b", "not a builtin rule name: 'a\\x00b' (see `optforge show --list`)"),
    ("builtin:", "not a builtin rule name: '' (see `optforge show --list`)"),
])
def test_hostile_rule_specs(spec, message):
    with pytest.raises(RuleError) as info:
        dsl.load_rule(spec)
    assert str(info.value) == message
    assert dsl.load_rule("builtin:adam").name == "adam"

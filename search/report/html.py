"""Building blocks of optforge's self-contained HTML reports.

Every report is one file that reads the same when moved alone: images are PNG bytes inlined as
``data:`` URIs, the style sheet is inline, there are no scripts and no external fonts, tables are
real ``<table>`` elements (wide ones scroll inside their own box, so the page itself never
overflows a laptop's 1280-pixel window), and rule text wraps inside ``<pre>`` blocks. Sections
carry stable ``id`` attributes that tests and links rely on.

Everything that comes from data is escaped here (``esc``); callers pass plain strings.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;
 margin:0;background:#f6f7f9;color:#1d232b;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px;box-sizing:border-box}
h1{font-size:1.6em;margin:.6em 0 .2em}
h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:2px solid #d4d9e0;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
section{background:#fff;border:1px solid #e1e5ea;border-radius:8px;padding:4px 20px 16px;
 margin:18px 0;overflow-wrap:anywhere}
nav{font-size:.92em}nav a{margin-right:1em;white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0;overflow-wrap:normal}
th,td{border:1px solid #dde2e8;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.good td{background:#eef8ee}tr.bad td{background:#fbeeee}
pre{background:#f3f4f6;border:1px solid #e1e5ea;border-radius:6px;padding:8px 10px;
 white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85em;margin:.4em 0}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:4px 16px}
.note{color:#56606b;font-size:.9em}.verdict{font-weight:500}
details summary{cursor:pointer;color:#1f5fa8}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:.92em}
dt{font-weight:600}dd{margin:0}
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def fmt(x, spec: str = ".4g") -> str:
    """A number as a table shows it: '-' for missing, 'inf' for infinite."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if isinstance(x, float) and math.isnan(x):
            return "-"
        if isinstance(x, float) and math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return format(x, spec) if isinstance(x, float) else str(x)
    return str(x)


def page(title: str, body: Sequence[str], subtitle: str = "") -> str:
    """A whole document: title, an index of the sections passed, then the sections."""
    sub = f"<p class='note'>{esc(subtitle)}</p>" if subtitle else ""
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{esc(title)}</h1>{sub}{''.join(body)}</main></body></html>")


def nav(links: Iterable[tuple[str, str]]) -> str:
    return "<nav>" + "".join(f"<a href='#{esc(i)}'>{esc(t)}</a>" for i, t in links) + "</nav>"


def section(sid: str, title: str, *parts: str) -> str:
    return f"<section id='{esc(sid)}'><h2>{esc(title)}</h2>{''.join(parts)}</section>"


def para(text: str, cls: str = "") -> str:
    attr = f" class='{esc(cls)}'" if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def table(headers: Sequence[str], rows: Iterable[Sequence], classes: Sequence[str] | None = None,
          numeric: Sequence[bool] | None = None) -> str:
    """A real table in a scrolling box; numbers are formatted with `fmt` and right-aligned."""
    rows = list(rows)
    numeric = list(numeric) if numeric is not None else [
        bool(rows) and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
        for i in range(len(headers))]
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for k, row in enumerate(rows):
        cls = f" class='{esc(classes[k])}'" if classes and classes[k] else ""
        cells = "".join(f"<td class='num'>{esc(fmt(v))}</td>" if numeric[i]
                        else f"<td>{esc(fmt(v))}</td>" for i, v in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}" \
           "</tbody></table></div>"


def definitions(items: Iterable[tuple[str, object]]) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(fmt(v))}</dd>" for k, v in items) + "</dl>"


def code(text: str) -> str:
    return f"<pre>{esc(text.rstrip())}</pre>"


def details(summary: str, inner: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{inner}</details>"


def link(href: str, text: str) -> str:
    return f"<a href='{esc(href)}'>{esc(text)}</a>"


def grid(parts: Sequence[str]) -> str:
    """Side by side where the window is wide enough (plots of the same kind)."""
    return f"<div class='grid'>{''.join(parts)}</div>"


def image(path: str | Path, alt: str) -> str:
    """A PNG file inlined as a data URI ('' when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{data}'>"

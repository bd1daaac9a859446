"""A one-file HTML report: text, tables and plots, with images embedded as base64 data URIs.

The file needs no network, no JavaScript and no other files, so it can be mailed, attached to a
ticket or opened from a results folder years later. All text is HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.io import atomic_write_text

__all__ = ["Section", "write_report"]

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".svg": "image/svg+xml", ".webp": "image/webp"}
_PERCENT_HINTS = ("top", "acc", "recall", "precision", "f1")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.1em}.subtitle{color:#666;margin-top:0}
nav ol{columns:2;color:#444}section{margin:2em 0;border-top:1px solid #ddd;padding-top:.5em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f3f3f3;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.caption{color:#555;font-size:.9em}
"""


@dataclass
class Section:
    """One titled block of the report; every part is optional except the title."""

    title: str
    text: str = ""  # plain text; blank lines separate paragraphs
    table: list[dict] | None = None  # rows of one table; columns in order of first appearance
    images: list[str] = field(default_factory=list)  # image files (PNG from cnnlstm.viz), embedded
    caption: str = ""  # shown under the images (or under the table when there are none)


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _paragraphs(text: str) -> str:
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n")]
    return "".join(f"<p>{'<br>'.join(_esc(line) for line in b.splitlines())}</p>\n" for b in blocks if b)


def _cell(key: str, value: Any) -> tuple[str, bool]:
    """(escaped text, is numeric) for one table cell."""
    if value is None:
        return "&mdash;", False
    if isinstance(value, bool):
        return _esc(value), False
    if isinstance(value, int):
        return _esc(value), True
    if isinstance(value, float):
        if math.isfinite(value) and 0 <= value <= 1 and any(h in key.lower() for h in _PERCENT_HINTS):
            return f"{value:.1%}", True
        return _esc(f"{value:.4g}"), True
    return _esc(value), False


def _table(rows: Sequence[dict]) -> str:
    if not rows:
        return '<p class="caption">(empty table)</p>\n'
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = [_cell(str(c), row.get(c)) for c in columns]
        body.append("<tr>" + "".join(f'<td class="num">{t}</td>' if num else f"<td>{t}</td>" for t, num in cells)
                    + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"


def _image(path: str | os.PathLike, alt: str) -> str:
    p = Path(path)
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    mime = _MIME.get(p.suffix.lower(), "image/png")
    return f'<img src="data:{mime};base64,{data}" alt="{_esc(alt or p.name)}">'


def _section(i: int, s: Section) -> str:
    parts = [f'<section id="s{i}">\n<h2>{_esc(s.title)}</h2>\n', _paragraphs(s.text)]
    if s.table is not None:
        parts.append(_table(s.table))
    missing = [str(p) for p in s.images if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"section {s.title!r}: image file(s) not found: {missing}")
    if s.images:
        imgs = "\n".join(_image(p, s.caption) for p in s.images)
        cap = f"<figcaption>{_esc(s.caption)}</figcaption>" if s.caption else ""
        parts.append(f"<figure>\n{imgs}\n{cap}</figure>\n")
    elif s.caption:
        parts.append(f'<p class="caption">{_esc(s.caption)}</p>\n')
    parts.append("</section>\n")
    return "".join(parts)


def render_report(*, title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The report as one HTML string (what :func:`write_report` writes)."""
    nav = ""
    if len(sections) > 2:
        items = "".join(f'<li><a href="#s{i}">{_esc(s.title)}</a></li>' for i, s in enumerate(sections))
        nav = f"<nav><ol>{items}</ol></nav>\n"
    sub = f'<p class="subtitle">{_esc(subtitle)}</p>\n' if subtitle else ""
    body = "".join(_section(i, s) for i, s in enumerate(sections))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>{_esc(title)}</h1>\n{sub}{nav}{body}</body>\n</html>\n")


def write_report(path: str | os.PathLike, *, title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """Write a self-contained HTML report (atomically, readable by others); returns its path."""
    bad = [type(s).__name__ for s in sections if not isinstance(s, Section)]
    if bad:
        raise TypeError(f"sections must be Section objects; got {bad}")
    text = render_report(title=title, sections=sections, subtitle=subtitle)  # fails before touching disk
    return str(atomic_write_text(path, text))

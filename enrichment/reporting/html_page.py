"""The shared chrome of our HTML pages (the report, and later the review page): one
self-contained document with inline CSS, no JavaScript, no fonts or files from elsewhere,
so a page renders offline, air-gapped and from a mail attachment.

The helpers escape every text they are given; only the `*_html` arguments are trusted
markup, built by these helpers or by the chart functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

# One palette for the page and its charts; the status colours pass WCAG AA on white.
COLOURS = {
    "healthy": "#1b7f3b",
    "warning": "#b45309",
    "critical": "#b91c1c",
    "no_data": "#52525b",
    "ink": "#1f2933",
    "muted": "#5f6b7a",
    "rule": "#d9dee5",
    "accent": "#1d4ed8",
    "low": "#d97706",
}

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6f9;color:var(--ink);font:15px/1.45 system-ui,-apple-system,
 "Segoe UI",Roboto,sans-serif}
main{max-width:78rem;margin:0 auto;padding:1.25rem 1.5rem 2.5rem}
h1{font-size:1.5rem;margin:0}
h2{font-size:1.1rem;margin:2rem 0 .6rem}
p{margin:.35rem 0}
.muted{color:var(--muted)}
.small{font-size:.85rem}
.banner{background:#fff;border:1px solid var(--rule);border-left:.6rem solid var(--status);
 border-radius:.5rem;padding:1rem 1.25rem;display:flex;gap:1.25rem;align-items:flex-start;
 flex-wrap:wrap}
.banner .what{flex:1 1 26rem}
.pill{display:inline-block;background:var(--status);color:#fff;font-weight:700;
 letter-spacing:.04em;border-radius:999px;padding:.3rem .9rem;font-size:1.05rem}
.banner ul{margin:.4rem 0 0;padding-left:1.2rem}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:.75rem;margin-top:1rem}
@media (max-width:52rem){.cards{grid-template-columns:repeat(2,1fr)}}
.card{background:#fff;border:1px solid var(--rule);border-radius:.5rem;padding:.7rem .9rem}
.card .label{font-size:.8rem;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:1.45rem;font-weight:650;margin:.15rem 0}
.card.bad{border-color:var(--status);box-shadow:inset 0 0 0 1px var(--status)}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:.75rem}
.grid.three{grid-template-columns:repeat(3,minmax(0,1fr))}
@media (max-width:56rem){.grid,.grid.three{grid-template-columns:minmax(0,1fr)}}
figure{background:#fff;border:1px solid var(--rule);border-radius:.5rem;margin:0;
 padding:.7rem .8rem}
figcaption{font-weight:650;margin-bottom:.3rem}
figure svg{width:100%;height:auto;display:block}
figure .note{font-size:.8rem;color:var(--muted);margin-top:.3rem}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid var(--rule);
 border-radius:.5rem;overflow:hidden}
th,td{text-align:left;vertical-align:top;padding:.45rem .7rem;border-bottom:1px solid var(--rule)}
thead th{background:#eef1f5;font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;
 color:var(--muted)}
td.num{text-align:right;white-space:nowrap}
td.nowrap{white-space:nowrap}
td.text{max-width:32rem;overflow-wrap:anywhere}
.tag{display:inline-block;border-radius:.3rem;padding:0 .4rem;font-size:.8rem;
 font-weight:650;color:#fff;background:var(--muted)}
.tag.critical{background:var(--critical)}.tag.warning{background:var(--warning)}
.tag.ok{background:var(--healthy)}.tag.info{background:var(--accent)}.tag.FAILING{background:var(--critical)}
.empty{background:#fff;border:1px dashed var(--rule);border-radius:.5rem;padding:.7rem .9rem;
 color:var(--muted)}
code{font:.85em ui-monospace,SFMono-Regular,Menlo,monospace;background:#eef1f5;
 border-radius:.25rem;padding:0 .25rem;overflow-wrap:anywhere}
footer{margin-top:2rem;font-size:.8rem;color:var(--muted)}
"""


def _root_vars() -> str:
    """The palette as CSS custom properties, so the CSS above names colours, not values."""
    return ":root{" + ";".join(f"--{k}:{v}" for k, v in COLOURS.items()) + "}"


def page(title: str, body_html: str, *, status: str = "no_data") -> str:
    """The whole document; `status` colours the page's status elements."""
    colour = COLOURS.get(status, COLOURS["no_data"])
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_root_vars()}{CSS}</style></head>"
        f'<body style="--status:{colour}"><main>{body_html}</main></body></html>'
    )


def card(label: str, value: str, hint: str = "", *, bad: bool = False) -> str:
    """One figure in a box: a label, the value, and a line of context."""
    hint_html = f'<div class="small muted">{escape(hint)}</div>' if hint else ""
    return (
        f'<div class="card{" bad" if bad else ""}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div>{hint_html}</div>'
    )


def tag(text: str, kind: str = "") -> str:
    """A small coloured label (kind: critical, warning, ok, FAILING or none)."""
    return f'<span class="tag {escape(kind)}">{escape(text)}</span>'


Cell = str | tuple[str, str]  # text, or (html, css class) for markup built by these helpers


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """A table; a cell is text (escaped) or (trusted html, css class)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(_cell(c) for c in row)}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(cell: Cell) -> str:
    if isinstance(cell, tuple):
        markup, css = cell
        return f'<td class="{escape(css)}">{markup}</td>'
    return f"<td>{escape(cell)}</td>"


def section(title: str, body_html: str, *, note: str = "") -> str:
    note_html = f'<p class="small muted">{escape(note)}</p>' if note else ""
    return f"<section><h2>{escape(title)}</h2>{note_html}{body_html}</section>"


def empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'

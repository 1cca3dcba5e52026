"""Every HTML page's templates: one Jinja2 environment over `templates/`, for the report page
and the review page alike.

One self-contained document per page: inline CSS (`_style.html`), no JavaScript (but the
review page's one optional, nonce'd script, `_keys.html`), no fonts or files from elsewhere,
so a page renders offline, air-gapped and from a mail attachment.
Autoescape is on for every template whatever its name: notes, reasons and model names are
untrusted. The only markup a template takes unescaped is a chart's SVG (`charts`), which
escapes every text it draws.
"""

from __future__ import annotations

import functools
import json
import pathlib
from datetime import datetime
from typing import Any, NamedTuple

import jinja2
from markupsafe import Markup

from enrichment.core import text
from enrichment.core.models import utcnow

TEMPLATES_DIR = pathlib.Path(__file__).parent / "templates"

# One palette for the pages and their charts; the status colours pass WCAG AA on white.
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


class Card(NamedTuple):
    """One key figure; `bad`: its threshold is crossed (outlined in the status colour)."""

    label: str
    value: str
    hint: str = ""
    bad: bool = False


class Figure(NamedTuple):
    """A chart with its title and the line under it (`_macros.html` draws these pieces)."""

    title: str
    chart: Markup
    note: str


class Part(NamedTuple):
    """A section's table rows, the line under its title, and what it says instead of the
    table when it has no rows ('': the table, even empty)."""

    rows: list
    note: str = ""
    empty: str = ""


def _utc(at: datetime | None) -> str:
    return "—" if at is None else f"{at:%Y-%m-%d %H:%M} UTC"


def _since(at: datetime) -> str:
    return text.duration((utcnow() - at).total_seconds())


def _due(at: datetime) -> str:
    """A deadline as people say it: "due in 40 min" or "overdue by 2 h"."""
    left_s = (at - utcnow()).total_seconds()
    if left_s < 0:
        return f"overdue by {text.duration(-left_s)}"
    return f"due in {text.duration(left_s)}"


def _hm(at: datetime) -> str:
    return f"{at:%H:%M} UTC"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _pretty(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)


@functools.cache
def environment() -> jinja2.Environment:
    """The one environment, made on first use (the templates are read once per process)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template whatever its name: notes and reasons are untrusted
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        utc=_utc, since=_since, duration=text.duration, pct=_pct, pretty=_pretty, due=_due, hm=_hm
    )
    env.globals["colours"] = COLOURS
    return env


def render(template: str, **context: Any) -> str:
    """A whole page as text, for a caller that is not a Starlette route."""
    return environment().get_template(template).render(context)

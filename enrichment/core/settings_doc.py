"""docs/configuration.md, generated from the settings' fields: one table per section.

    python -m enrichment.core.settings_doc            # rewrite docs/configuration.md
    python -m enrichment.core.settings_doc --check    # exit 1 if it is stale

(`make config-docs` and `enrichment config-docs` run the first.)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import Field, fields
from pathlib import Path

from enrichment.core.settings import Settings
from enrichment.core.settings_env import default_of

DOC_PATH = Path("docs/configuration.md")
COMMAND = "make config-docs"

INTRO = f"""# Configuration

<!-- Generated from the settings' fields (enrichment/core/settings.py and
settings_sections.py) by `{COMMAND}`; edit those, not this file. -->

Everything is an environment variable, read once per process at start-up; durations are
seconds. A wrong value stops the process at start-up with one line naming the variable and
what it accepts. `ENRICHMENT_VAR_DIR` (default `./var`) says where the embedded database,
broker and demo logs live. Per-tenant settings (weight, caps, budgets, alert thresholds and
routes, batch mode) live in `tenants.settings`: see the README.
"""


def render() -> str:
    """The whole page: the fleet's own settings first, then one table per section."""
    tables = [_table("Fleet", Settings)]
    tables += [_table(title, cls) for title, cls in _sections(Settings)]
    return "\n".join([INTRO, *tables])


def _sections(cls: type) -> list[tuple[str, type]]:
    found = []
    for f in fields(cls):
        if "section" in f.metadata:
            inner = type(f.default_factory())
            found += [(f.metadata["section"], inner), *_sections(inner)]
    return found


def _table(title: str, cls: type) -> str:
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    rows = [_row(f, cls) for f in fields(cls) if "env" in f.metadata]
    head = ["| variable | default | accepts | what it does |", "|---|---|---|---|"]
    summary = " ".join(line.strip() for line in doc.splitlines())
    return "\n".join([f"## {title}", "", summary, "", *head, *rows, ""])


def _row(f: Field, cls: type) -> str:
    meta = f.metadata
    shown = meta["shown"] or _shown(default_of(f))
    cells = [f"`{meta['env']}`", shown, _accepts(f, cls), meta["doc"]]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _shown(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _accepts(f: Field, cls: type) -> str:
    meta, value = f.metadata, default_of(f)
    if meta["choices"]:
        return " or ".join(f"`{c}`" for c in meta["choices"])
    if isinstance(value, bool):
        return "`0` or `1`"
    if not isinstance(value, int | float):
        return "text" if f.default is not None or meta["derive"] else "text (optional)"
    low, high = meta["low"], meta["high"]
    kind = "whole number" if isinstance(value, int) else "number"
    if isinstance(low, str):
        low = next(g.metadata["env"] for g in fields(cls) if g.name == low)
    low = f"{low:g}" if isinstance(low, float) else (low or 0)
    return f"{kind} in [{low}, {high:g}]" if high is not None else f"{kind} ≥ {low}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="settings_doc", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--out", type=Path, default=DOC_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        fresh = args.out.exists() and args.out.read_text() == text
        if not fresh:
            print(f"{args.out} is stale: run `{COMMAND}`", file=sys.stderr)
        return 0 if fresh else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The shipped labelled sets are what `scripts/data/` writes, and nothing installed imports it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from enrichment.tooling import labelled
from scripts.data import build_labelled, build_styles

ROOT = Path(__file__).resolve().parent.parent
INSTALLED = ("enrichment", "workers")


def _as_json(lines: list[dict]) -> list[dict]:
    return [json.loads(json.dumps(line, ensure_ascii=False)) for line in lines]


def test_the_ops_set_is_what_build_labelled_writes():
    # Given the shipped ops set, when the builder runs in memory, then the records match.
    shipped = list(labelled.read_lines(build_labelled.OUT))
    assert _as_json(build_labelled.build()) == shipped
    assert len(shipped) == 328


@pytest.mark.parametrize("style", build_styles.STYLES)
def test_each_styled_set_is_what_build_styles_writes(style):
    shipped = list(labelled.read_lines(build_styles.path_for(style)))
    assert _as_json(build_styles.build(style)) == shipped
    assert shipped


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_nothing_installed_imports_the_scripts():
    # Given every module that ships, then none imports `scripts` (it is not installed).
    paths = [p for top in INSTALLED for p in (ROOT / top).rglob("*.py")]
    offenders = [
        str(p.relative_to(ROOT))
        for p in paths
        if any(n == "scripts" or n.startswith("scripts.") for n in _imported(p))
    ]
    assert paths and offenders == []

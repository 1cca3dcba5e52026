"""The layout holds: imports run one way, the domain has no Celery, the product no tooling.

Layers, bottom to top (docs/architecture.md):
    core  <  providers, ingestion, delivery, reviews, alerting, history
          <  batches, metrics, experiments  <  reporting  <  workers  <  api  <  tooling  <  cli
A module may import its own layer's package and anything below it; packages of one rank are
siblings: none imports another. `batches` (Message Batches) drives the provider against the
database; `metrics` measures and exports, and reads alerting's severities and provider pages;
`experiments` (variants, shadows, the cascade) drives the providers with what reviews hold;
`history` (retention, the pruner, archives, erasure) removes and keeps what the others wrote;
`reporting` (the report, its page and charts) presents what metrics, alerting and reviews
hold. Nothing under `enrichment/` imports Celery; `workers/`
holds the Celery app. Every import counts, including the ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYER_OF_PREFIX = {
    "enrichment.core": "core",
    "enrichment.providers": "providers",
    "enrichment.ingestion": "ingestion",
    "enrichment.alerting": "alerting",
    "enrichment.metrics": "metrics",
    "enrichment.reporting": "reporting",
    "enrichment.delivery": "delivery",
    "enrichment.reviews": "reviews",
    "enrichment.batches": "batches",
    "enrichment.experiments": "experiments",
    "enrichment.history": "history",
    "workers": "workers",
    "beat_schedule": "workers",
    "enrichment.api": "api",
    "enrichment.tooling": "tooling",
    "enrichment.cli": "cli",
}
RANKS = {
    "core": 0,
    "providers": 1,
    "ingestion": 1,
    "delivery": 1,
    "reviews": 1,
    "history": 1,
    "alerting": 1,
    "batches": 2,
    "metrics": 2,
    "experiments": 2,
    "reporting": 3,
    "workers": 4,
    "api": 5,
    "tooling": 6,
    "cli": 7,
}
CELERY = ("celery", "kombu")


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (the longest matching prefix)."""
    matches = [p for p in LAYER_OF_PREFIX if module == p or module.startswith(p + ".")]
    return LAYER_OF_PREFIX[max(matches, key=len)] if matches else None


def imported_modules(source: str, module: str) -> list[str]:
    """Every module `source` imports, absolute, wherever the import statement sits."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            found += [f"{base}.{alias.name}" for alias in node.names]
    return found


def violations(module: str, source: str) -> list[str]:
    """What is wrong with the imports of `module`, one line each."""
    own = layer_of(module)
    problems = []
    for target in imported_modules(source, module):
        top = target.split(".")[0]
        if module.startswith("enrichment") and top in CELERY:
            problems.append(f"{module} imports {target}: Celery belongs in workers/")
            continue
        theirs = layer_of(target)
        if own is None or theirs is None or theirs == own:
            continue
        if RANKS[theirs] >= RANKS[own]:
            problems.append(
                f"{module} ({own}) imports {target} ({theirs}): a layer above or beside"
            )
    return problems


def project_modules() -> list[tuple[str, Path]]:
    files = [*ROOT.joinpath("enrichment").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")]
    files.append(ROOT / "beat_schedule.py")
    out = []
    for path in sorted(files):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


@pytest.mark.parametrize(("module", "path"), project_modules(), ids=lambda v: str(v))
def test_imports_run_one_way(module, path):
    assert violations(module, path.read_text()) == []


def test_every_module_has_a_layer():
    # The package root `enrichment` itself holds no code; everything else sits in a layer.
    missing = [m for m, _ in project_modules() if m != "enrichment" and layer_of(m) is None]
    assert missing == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("enrichment.core.pipeline", "from celery import chain", "Celery belongs in workers/"),
        ("enrichment.metrics.monitor", "import kombu", "Celery belongs in workers/"),
        ("enrichment.core.models", "from enrichment.alerting import alerts", "above or beside"),
        ("enrichment.alerting.notices", "from enrichment.reporting import words", "above"),
        ("enrichment.alerting.alerts", "from enrichment.metrics import monitor", "above"),
        ("enrichment.reviews.calibration", "from enrichment.alerting import alerts", "beside"),
        ("enrichment.metrics.prom", "from enrichment.batches import submit", "beside"),
        ("enrichment.reporting.reports", "from workers.tasks import app", "above"),
        ("enrichment.reporting.pages", "from enrichment.api import review_session", "above"),
        ("enrichment.api.deps", "from enrichment.tooling import demo", "above or beside"),
        ("enrichment.providers.local", "from enrichment.ingestion import ingest", "beside"),
        ("workers.tasks", "from enrichment.api import app", "above or beside"),
        ("enrichment.core.db", "def f():\n    from enrichment.cli import main", "above"),
        ("enrichment.core.states", "from ..alerting import alerts", "above or beside"),
    ],
)
def test_the_checker_catches_each_kind_of_break(module, source, expected):
    found = violations(module, source)
    assert len(found) == 1 and expected in found[0]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("enrichment.reporting.reports", "from enrichment.core import selection"),
        ("enrichment.api.deps", "from workers.tasks import enqueue_chain"),
        ("enrichment.tooling.demo", "from enrichment.metrics import monitor"),
        ("enrichment.metrics.cadence", "from enrichment.alerting.alerts import WARNING"),
        ("enrichment.reporting.reports", "from enrichment.reviews import calibration"),
        ("workers.tasks", "from celery import chain"),
        ("enrichment.core.pipeline", "from . import states"),
    ],
)
def test_the_checker_allows_downward_imports(module, source):
    assert violations(module, source) == []


def test_every_html_page_renders_from_one_template_folder_and_one_environment():
    # The report page and the review page share reporting's templates and environment.
    folders = {p.parent for p in ROOT.joinpath("enrichment").rglob("*.html")}
    sources = ROOT.joinpath("enrichment").rglob("*.py")
    makers = [p for p in sources if "jinja2.Environment(" in p.read_text()]
    assert folders == {ROOT / "enrichment" / "reporting" / "templates"}
    assert makers == [ROOT / "enrichment" / "reporting" / "pages.py"]

"""docs/configuration.md is generated from the settings' fields and kept fresh; each default
is stated once, in its field, and from_env reads every field from its variable."""

from __future__ import annotations

import json
from dataclasses import Field, fields
from pathlib import Path

import pytest

from enrichment.core import experiments, settings_doc
from enrichment.core.settings import ConfigurationError, Settings
from enrichment.core.settings_env import default_of
from enrichment.core.settings_sections import BreakerConfig

ROOT = Path(__file__).resolve().parent.parent


def settings_fields(cls: type = Settings) -> list[tuple[tuple[str, ...], Field]]:
    """(path, field) for every setting, sections walked: (("routing", "pagerduty", "url"), f)."""
    found = []
    for f in fields(cls):
        if "section" in f.metadata:
            inner = type(f.default_factory())
            found += [((f.name, *path), g) for path, g in settings_fields(inner)]
        else:
            found.append(((f.name,), f))
    return found


def value_at(settings: Settings, path: tuple[str, ...]) -> object:
    for name in path:
        settings = getattr(settings, name)
    return settings


def test_the_configuration_page_is_fresh():
    page = ROOT / settings_doc.DOC_PATH
    assert page.read_text() == settings_doc.render(), (
        f"{settings_doc.DOC_PATH} is stale: run `{settings_doc.COMMAND}`"
        " (or `enrichment config-docs`) and commit it"
    )


def test_the_page_lists_every_variable_with_its_default():
    page = settings_doc.render()
    for _path, f in settings_fields():
        row = next(line for line in page.splitlines() if f"| `{f.metadata['env']}` |" in line)
        assert (f.metadata["shown"] or settings_doc._shown(default_of(f))) in row


def test_the_check_names_the_command_when_the_page_is_stale(tmp_path, capsys):
    out = tmp_path / "configuration.md"
    out.write_text("# stale\n")

    assert settings_doc.main(["--check", "--out", str(out)]) == 1
    assert "run `make config-docs`" in capsys.readouterr().err
    assert settings_doc.main(["--out", str(out)]) == 0
    assert settings_doc.main(["--check", "--out", str(out)]) == 0


@pytest.fixture
def clean_env(monkeypatch):
    """No setting's variable set (conftest sets the database and broker for the others)."""
    for _path, f in settings_fields():
        monkeypatch.delenv(f.metadata["env"], raising=False)
    return monkeypatch


def test_with_nothing_set_from_env_gives_the_field_defaults(clean_env):
    assert Settings.from_env() == Settings()
    assert Settings.from_env().confidence_threshold == Settings.confidence_threshold == 0.7


def other_value(f: Field) -> tuple[str, object]:
    """A valid value unlike the default, as the variable's text and as the parsed value."""
    default, meta = default_of(f), f.metadata
    if meta["choices"]:
        choice = next(c for c in meta["choices"] if c != default)
        return choice, choice
    if isinstance(default, bool):
        return "1", True
    if isinstance(default, int | float):
        value = meta["high"] if meta["high"] is not None else default + 1
        return str(value), type(default)(value)
    if meta["env"] == "ENRICHMENT_EXPERIMENT":  # JSON, parsed at start-up
        raw = '{"name": "e1", "variants": [{"name": "a", "prompt_version": "v1"}]}'
        return raw, experiments.parse(json.loads(raw))
    if meta["env"] == "DATABASE_URL":  # its scheme is checked at start-up
        return "sqlite:///set-database-url.db", "sqlite:///set-database-url.db"
    if meta["env"] in ("SLACK_WEBHOOK_URL", "ENRICHMENT_PAGERDUTY_URL"):  # checked at start-up
        return (
            f"https://set-{meta['env'].lower()}.test/",
            f"https://set-{meta['env'].lower()}.test/",
        )
    return f"set-{meta['env'].lower()}", f"set-{meta['env'].lower()}"


def test_every_field_is_read_from_its_variable(clean_env):
    expected = {}
    for path, f in settings_fields():
        raw, expected[path] = other_value(f)
        clean_env.setenv(f.metadata["env"], raw)

    settings = Settings.from_env()

    assert {path: value_at(settings, path) for path in expected} == expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("ENRICHMENT_BREAKER_PROBE_MAX_S", "5", "='5' must be >= 15.0"),
        ("ENRICHMENT_MAX_RETRIES", "five", "='five' is not a whole number"),
        ("ENRICHMENT_CLAIM_ORDER", "lifo", "='lifo': choose 'fair' or 'fifo'"),
        ("ENRICHMENT_AI_BURST", "51", "=51 must be in [1, 50]"),
        (
            "ENRICHMENT_EXPERIMENT",
            '{"name": "e1"}',
            ": the experiment needs 'variants': a list of 1 to 8 objects",
        ),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_variable(clean_env, name, raw, message):
    clean_env.setenv(name, raw)
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env()
    assert str(info.value) == name + message  # the variable, its value, what it accepts


def test_a_bound_may_name_an_earlier_field(clean_env):
    clean_env.setenv("ENRICHMENT_BREAKER_PROBE_INITIAL_S", "2")
    clean_env.setenv("ENRICHMENT_BREAKER_PROBE_MAX_S", "3")
    assert BreakerConfig.from_env() == BreakerConfig(probe_initial_s=2.0, probe_max_s=3.0)

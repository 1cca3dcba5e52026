"""requirements.lock (make lock) pins each pyproject.toml dependency, runtime and dev, hashed."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for each `name==version` entry of the lock."""
    text = (ROOT / "requirements.lock").read_text()
    pins = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", entry)
        if m:
            pins[canonicalize_name(m[1])] = (m[2], entry.count("--hash=sha256:"))
    return pins


def test_every_dependency_is_pinned_in_range_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = project["project"]["dependencies"] + project["project"]["optional-dependencies"]["dev"]
    wanted += project["build-system"]["requires"]
    pins = _pins()
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        assert name in pins, f"{spec} is not in requirements.lock: run make lock"
        version, _ = pins[name]
        assert spec.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {spec}: run make lock"
        )
    assert all(hashes for _, hashes in pins.values()), "a pin without --hash: run make lock"

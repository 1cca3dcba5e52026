"""Archives of history rows: gzip JSON Lines per tenant and day, each folder with a manifest.

Layout: `{directory}/{tenant}/{day}/{table}-{part:05d}.jsonl.gz` and one `manifest.json` per
tenant and day listing its parts (table, rows, bytes, sha256). A call writes a new part and
never rewrites an earlier one: the part is written to a temporary file, then linked to its
name, which fails if the name exists; the manifest is replaced atomically (temporary file +
rename) under an exclusive lock on the folder (flock), so two pruners on one host never lose
each other's entries. A part written but not yet in the manifest (a crash between the two)
is ignored on restore: only the manifest's parts, with their checksums, are read.

Values: datetimes and dates as ISO 8601, Decimal as a string, bytes as base64, UUID as a
string; restore turns them back by the column's type (history/restore.py). A directory
only: fsspec (object stores) is not in the lock, so mount or sync the folder to a bucket.
Erasure (history/erasure.py) is the one writer that replaces parts: `rewrite` writes the
scrubbed part and its new checksum the same way.
"""

from __future__ import annotations

import base64
import fcntl
import gzip
import hashlib
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = 1
_PART = re.compile(r"^(?P<table>[a-z_][a-z0-9_]*)-(?P<n>\d{5,})\.jsonl\.gz$")
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


class ArchiveError(ValueError):
    """An archive that cannot be read as asked: missing, or a part that fails its checksum.
    The message is one line that names the file."""


def safe_name(tenant: str) -> str:
    """The tenant's folder name: letters, digits, '-' and '_' as they are, anything else
    (including '.', so never '..') as %XX, so no name can leave the archive directory."""
    out = _SAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), tenant)
    return out or "%00"


def tenant_dir(directory: str | Path, tenant: str) -> Path:
    return Path(directory) / safe_name(tenant)


def day_dir(directory: str | Path, tenant: str, day: date) -> Path:
    return tenant_dir(directory, tenant) / day.isoformat()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot archive a {type(value).__name__} value")


def encode(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The rows as gzip JSON Lines (mtime 0: the same rows give the same bytes)."""
    lines = (json.dumps(dict(r), default=_json_value, separators=(",", ":")) for r in rows)
    text = "".join(f"{line}\n" for line in lines)
    return gzip.compress(text.encode(), mtime=0)


def decode(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(data).decode().splitlines() if line]


def archive_rows(
    directory: str | Path,
    tenant: str,
    table: str,
    day: date,
    rows: Sequence[Mapping[str, Any]],
) -> Path:
    """Write `rows` of `table` (one tenant's, of one day) as a new part; return its path.

    The part is in the day's manifest when this returns. Called before the rows are deleted:
    if it raises, nothing was archived and nothing must be deleted.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", table):
        raise ValueError(f"bad table name {table!r}")
    folder = day_dir(directory, tenant, day)
    folder.mkdir(parents=True, exist_ok=True)
    data = encode(rows)
    with _locked(folder):
        manifest = _load(folder) if (folder / MANIFEST).exists() else _new(tenant, day)
        path = _link_new_part(folder, table, data)
        manifest["parts"].append(_entry(path.name, table, len(rows), data))
        _write_manifest(folder, manifest)
    return path


def _new(tenant: str, day: date) -> dict[str, Any]:
    return {"format": FORMAT, "tenant": tenant, "day": day.isoformat(), "parts": []}


def _entry(name: str, table: str, rows: int, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    return {"file": name, "table": table, "rows": rows, "bytes": len(data), "sha256": digest}


def _link_new_part(folder: Path, table: str, data: bytes) -> Path:
    """The next free `{table}-NNNNN.jsonl.gz`, created whole: link(2) refuses an existing
    name, so an earlier part is never overwritten (even by a writer that holds no lock)."""
    taken = [int(m["n"]) for p in folder.iterdir() if (m := _PART.match(p.name))]
    n = max(taken, default=0) + 1
    tmp = _temp_file(folder, data)
    try:
        while True:
            path = folder / f"{table}-{n:05d}.jsonl.gz"
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                n += 1
    finally:
        tmp.unlink()


def _temp_file(folder: Path, data: bytes) -> Path:
    fd, name = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(name)


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    tmp = _temp_file(folder, json.dumps(manifest, indent=1).encode())
    os.replace(tmp, folder / MANIFEST)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _load(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArchiveError(f"no archive at {folder} (no {MANIFEST})") from None
    except ValueError:
        raise ArchiveError(f"{path} is not a readable manifest (not JSON)") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("parts"), list):
        raise ArchiveError(f"{path} is not a manifest (no parts list)")
    return manifest


def manifest(directory: str | Path, tenant: str, day: date) -> dict[str, Any]:
    """The tenant's manifest for `day`; ArchiveError when there is none."""
    return _load(day_dir(directory, tenant, day))


def days(directory: str | Path, tenant: str, *, since: date | None = None) -> list[date]:
    """The days archived for the tenant (folders with a manifest), oldest first; only from
    `since` on, if given."""
    root = tenant_dir(directory, tenant)
    if not root.is_dir():
        return []
    found = []
    for sub in root.iterdir():
        try:
            day = date.fromisoformat(sub.name)
        except ValueError:
            continue
        if (sub / MANIFEST).is_file() and (since is None or day >= since):
            found.append(day)
    return sorted(found)


def read_part(folder: Path, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One part's rows, after its checksum matched the manifest's; ArchiveError otherwise."""
    path = folder / str(entry["file"])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArchiveError(f"{path} is in the manifest but missing") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ArchiveError(f"{path} is corrupted: its sha256 differs from the manifest's")
    try:
        return decode(data)
    except (OSError, EOFError, ValueError):
        raise ArchiveError(f"{path} matches its checksum but is not gzip JSON Lines") from None


def read_day(
    directory: str | Path, tenant: str, day: date, *, table: str | None = None
) -> list[tuple[str, list[dict[str, Any]]]]:
    """(table, rows) of every part of the day (only `table`'s if given), in manifest order;
    every part's checksum is checked before any row is returned."""
    folder = day_dir(directory, tenant, day)
    parts = [p for p in _load(folder)["parts"] if table is None or p["table"] == table]
    return [(p["table"], read_part(folder, p)) for p in parts]


RowEdit = Callable[[str, dict[str, Any]], dict[str, Any] | None]


def rewrite(
    directory: str | Path, tenant: str, edit: RowEdit, *, since: date | None = None
) -> dict[str, int]:
    """Apply `edit(table, row)` (the changed row, or None for unchanged) to every archived
    row of the tenant (of the days from `since` on); a part with a changed row is replaced
    (temporary file + rename) and its manifest entry updated. Returns rows changed per
    table. Erasure only."""
    changed: dict[str, int] = {}
    for day in days(directory, tenant, since=since):
        folder = day_dir(directory, tenant, day)
        with _locked(folder):
            manifest, touched = _load(folder), False
            for entry in manifest["parts"]:
                n = _rewrite_part(folder, entry, edit)
                if n:
                    changed[entry["table"]] = changed.get(entry["table"], 0) + n
                    touched = True
            if touched:
                _write_manifest(folder, manifest)
    return changed


def _rewrite_part(folder: Path, entry: dict[str, Any], edit: RowEdit) -> int:
    rows, n = read_part(folder, entry), 0
    for i, row in enumerate(rows):
        new = edit(entry["table"], row)
        if new is not None:
            rows[i], n = new, n + 1
    if n:
        data = encode(rows)
        os.replace(_temp_file(folder, data), folder / entry["file"])
        entry.update(_entry(entry["file"], entry["table"], len(rows), data))
    return n

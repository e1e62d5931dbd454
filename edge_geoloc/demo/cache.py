"""A content-keyed cache of generated inputs (synthetic areas), so a second demo run skips generating them.

An entry is a folder named after what built it: a readable prefix plus a hash of the parameters and of the
generator's source code, so changing the seed, the size or the simulator itself gives a new entry instead of a
stale one. An entry is built in a temporary folder and renamed into place (a crash never leaves half an entry),
and carries a manifest of sha256 hashes; an entry that fails its check is logged and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edge_geoloc.artifacts import atomic_write_json, sha256_file
from edge_geoloc.demo.runfolder import MANIFEST_NAME, hash_tree, link_or_copy

log = logging.getLogger(__name__)


def source_fingerprint(folders: Iterable[Path]) -> str:
    """sha256 over the ``.py`` files of ``folders`` (paths and contents): changes when the generator changes."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.py")) + sorted(Path(folder).rglob("*.yaml")):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(prefix: str, params: dict[str, Any], fingerprint: str) -> str:
    """``<prefix>-<12 hex>``: the hash covers the parameters and the generator's fingerprint."""
    blob = json.dumps({"params": params, "code": fingerprint}, sort_keys=True, default=str).encode()
    return f"{prefix}-{hashlib.sha256(blob).hexdigest()[:12]}"


def link_entry(entry: Path, dst: Path) -> None:
    """Hard-link (or copy) every file of a cache entry, its manifest left out, into ``dst``."""
    for path in sorted(p for p in entry.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        link_or_copy(path, dst / path.relative_to(entry))


def entry_is_valid(entry: Path) -> bool:
    """True when the entry's manifest exists and every file matches its recorded size and sha256."""
    try:
        files = json.loads((entry / MANIFEST_NAME).read_text(encoding="utf-8"))["files"]
    except (OSError, KeyError, json.JSONDecodeError):
        return False
    for rel, info in files.items():
        path = entry / rel
        if not path.is_file() or path.stat().st_size != info["bytes"] or sha256_file(path) != info["sha256"]:
            return False
    return True


def cached_build(cache_root: str | Path, key: str, build: Callable[[Path], None],
                 params: dict[str, Any] | None = None) -> tuple[Path, bool]:
    """Return ``(entry folder, hit)``; on a miss ``build(tmp_folder)`` fills a new entry, renamed into place."""
    cache_root = Path(cache_root)
    entry = cache_root / key
    if entry.is_dir():
        if entry_is_valid(entry):
            log.info("cache hit: %s", entry)
            return entry, True
        log.warning("cache entry %s failed its sha256 check; rebuilding it", entry)
        shutil.rmtree(entry)
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".{key}."))
    try:
        build(tmp)
        atomic_write_json(tmp / MANIFEST_NAME, {"key": key, "params": params or {}, "files": hash_tree(tmp)})
        tmp.rename(entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("cache miss: built %s", entry)
    return entry, False

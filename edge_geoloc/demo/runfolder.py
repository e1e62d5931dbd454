"""Timestamped run folders and per-step output manifests for the demo.

A demo run lives in ``<out>/<UTC timestamp>/`` and never overwrites an earlier run: the folder is created with
``exist_ok=False`` and gets a ``-1``, ``-2`` ... suffix when two runs start in the same second. Each step writes
into its own ``NN_name/`` sub-folder and finishes by writing ``manifest.json`` listing every file it wrote with
its size and sha256. ``--from-step N`` adopts steps ``1..N-1`` from an earlier run: their manifests are checked
(missing manifest = the step never finished; missing file or hash mismatch = corrupt) before the files are
hard-linked (or copied) into the new run, so the new run is complete on its own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_geoloc.artifacts import atomic_write_json, sha256_file

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
RUN_RECORD_NAME = "run.json"
MANIFEST_FORMAT = "edge_geoloc.demo.step"
MANIFEST_VERSION = 1


class StepOutputError(RuntimeError):
    """An earlier step's output is missing or corrupt, so a later step cannot reuse it."""


@dataclass(frozen=True)
class StepManifest:
    """What a finished step wrote: files (relative path -> sha256 and size) and its measured metrics."""

    step: int
    name: str
    files: dict[str, dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the process (all threads) during the step: comparable on a busy machine
    finished_utc: str = ""

    def to_json(self) -> dict[str, Any]:
        """The ``manifest.json`` document."""
        return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "step": self.step, "name": self.name,
                "files": self.files, "metrics": self.metrics, "duration_s": self.duration_s,
                "cpu_s": self.cpu_s, "finished_utc": self.finished_utc}


def utc_stamp(now: datetime | None = None) -> str:
    """``20261122T024100Z``: sortable, filesystem-safe."""
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def new_run_dir(out_root: str | Path, now: datetime | None = None) -> Path:
    """Create and return a fresh run folder under ``out_root``; never reuses an existing folder."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    stamp = utc_stamp(now)
    for attempt in range(1000):
        candidate = out_root / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir(exist_ok=False)
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not create a new run folder under {out_root} (1000 runs in the same second?)")


def list_runs(out_root: str | Path) -> list[Path]:
    """Run folders under ``out_root`` (those with a run record), oldest first."""
    out_root = Path(out_root)
    if not out_root.is_dir():
        return []
    return sorted(p for p in out_root.iterdir() if p.is_dir() and (p / RUN_RECORD_NAME).is_file())


def latest_run_with(out_root: str | Path, step_dirs: list[str]) -> Path | None:
    """The newest run under ``out_root`` in which every folder of ``step_dirs`` has a manifest, else the newest."""
    runs = list_runs(out_root)
    for run in reversed(runs):
        if all((run / name / MANIFEST_NAME).is_file() for name in step_dirs):
            return run
    return runs[-1] if runs else None


def step_dir_name(number: int, name: str) -> str:
    """``NN_name``: the folder of a step inside a run."""
    return f"{number:02d}_{name}"


def hash_tree(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file below ``folder`` (except the manifest), keyed by relative POSIX path."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST_NAME:
            continue
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by ``None`` and tuples by lists (strict JSON, readable anywhere)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


def write_step_manifest(step_dir: Path, number: int, name: str, metrics: dict[str, Any],
                        duration_s: float, cpu_s: float = 0.0) -> StepManifest:
    """Seal a finished step: hash everything it wrote and record its metrics."""
    manifest = StepManifest(step=number, name=name, files=hash_tree(step_dir), metrics=json_safe(metrics),
                            duration_s=round(duration_s, 3), cpu_s=round(cpu_s, 3), finished_utc=utc_stamp())
    atomic_write_json(step_dir / MANIFEST_NAME, manifest.to_json())
    return manifest


def read_step_manifest(step_dir: Path, number: int, name: str) -> StepManifest:
    """Read a step's manifest; a missing or unreadable one means the step did not finish."""
    path = step_dir / MANIFEST_NAME
    hint = f"re-run with --from-step {number} (or earlier) to produce it again"
    if not path.is_file():
        raise StepOutputError(f"step {number} ({name}) output is missing: no {path}; {hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise StepOutputError(f"step {number} ({name}) manifest {path} is unreadable ({err}); {hint}") from err
    if data.get("format") != MANIFEST_FORMAT or data.get("step") != number or data.get("name") != name:
        raise StepOutputError(f"{path} is not the manifest of step {number} ({name}); {hint}")
    return StepManifest(step=number, name=name, files=data["files"], metrics=data.get("metrics", {}),
                        duration_s=data.get("duration_s", 0.0), cpu_s=data.get("cpu_s", 0.0),
                        finished_utc=data.get("finished_utc", ""))


def verify_step(step_dir: Path, number: int, name: str) -> StepManifest:
    """Check that every file a step recorded is present with the recorded size and sha256."""
    manifest = read_step_manifest(step_dir, number, name)
    hint = f"re-run with --from-step {number} (or earlier) to produce it again"
    for rel, info in manifest.files.items():
        path = step_dir / rel
        if not path.is_file():
            raise StepOutputError(f"step {number} ({name}) output is missing: {path}; {hint}")
        if path.stat().st_size != info["bytes"] or sha256_file(path) != info["sha256"]:
            raise StepOutputError(f"step {number} ({name}) output is corrupt (sha256 mismatch): {path}; {hint}")
    return manifest


def adopt_step(src_step_dir: Path, dst_step_dir: Path, number: int, name: str) -> StepManifest:
    """Verify an earlier run's step and link (or copy) its files into this run's step folder."""
    manifest = verify_step(src_step_dir, number, name)
    if dst_step_dir.exists():
        raise FileExistsError(f"{dst_step_dir} already exists; a run folder is never written twice")
    for rel in [*manifest.files, MANIFEST_NAME]:
        link_or_copy(src_step_dir / rel, dst_step_dir / rel)
    return manifest


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (cheap, read-only use), falling back to a copy across file systems."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class StepTimer:
    """Wall time and process CPU time of a step, for its manifest."""

    def __enter__(self) -> StepTimer:
        self.start_s, self.start_cpu_s = time.perf_counter(), time.process_time()
        self.elapsed_s = self.cpu_s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_s = time.perf_counter() - self.start_s
        self.cpu_s = time.process_time() - self.start_cpu_s

"""The step runner: runs the demo's steps in order inside one run folder, or adopts earlier ones.

Each step is a function ``run(ctx) -> metrics`` that writes only into ``ctx.step_dir`` and reads earlier
steps through ``ctx.step(n)`` (always the verified copy inside this run). When a step finishes, the runner seals
its folder with a sha256 manifest and logs every file it wrote. Steps before ``from_step`` are taken from an
earlier run after their manifests are checked, so a missing or corrupt artifact stops the run with a message
naming the file and the ``--from-step`` that rebuilds it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.config import to_dict
from edge_geoloc.demo.config import DemoConfig
from edge_geoloc.demo.layout import RunLayout
from edge_geoloc.demo.runfolder import (
    RUN_RECORD_NAME,
    StepManifest,
    StepOutputError,
    StepTimer,
    adopt_step,
    json_safe,
    step_dir_name,
    utc_stamp,
    verify_step,
    write_step_manifest,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One demo step: a number (``--from-step`` uses it), a folder name, a title and its function."""

    number: int
    name: str
    title: str
    run: Callable[[StepContext], dict[str, Any]]


@dataclass
class StepContext:
    """What a running step sees: its own output folder, the config, and the finished earlier steps."""

    run_dir: Path
    step_dir: Path
    config: DemoConfig
    cache_dir: Path
    manifests: dict[int, StepManifest]
    names: dict[int, str]

    @property
    def layout(self) -> RunLayout:
        """The run folder's named paths (the demo's step folders and artifacts)."""
        return RunLayout(self.run_dir)

    def step(self, number: int) -> Path:
        """Folder of an earlier, finished step of this run."""
        if number not in self.manifests:
            raise StepOutputError(f"step {number} has not finished in {self.run_dir}")
        return self.run_dir / step_dir_name(number, self.names[number])

    def metrics(self, number: int) -> dict[str, Any]:
        """Metrics an earlier, finished step recorded in its manifest."""
        self.step(number)
        return self.manifests[number].metrics


def run_steps(steps: Sequence[Step], run_dir: Path, config: DemoConfig, cache_dir: Path,
              from_step: int = 1, reuse_run: Path | None = None) -> dict[int, StepManifest]:
    """Run ``steps`` (adopting those before ``from_step`` from ``reuse_run``); returns every step's manifest."""
    check_from_step(steps, from_step, reuse_run)
    if reuse_run is not None:
        warn_if_config_differs(reuse_run, config)
    names = {s.number: s.name for s in steps}
    manifests: dict[int, StepManifest] = {}
    record = _start_record(run_dir, config, from_step, reuse_run)
    for step in steps:
        step_dir = run_dir / step_dir_name(step.number, step.name)
        if step.number < from_step:
            manifests[step.number] = _adopt(step, reuse_run, step_dir)
            record["steps"].append({"step": step.number, "name": step.name, "title": step.title,
                                    "status": "reused", "from": str(reuse_run)})
        else:
            ctx = StepContext(run_dir, step_dir, config, cache_dir, manifests, names)
            manifests[step.number] = _execute_recorded(step, ctx, len(steps), record)
            record["steps"].append({"step": step.number, "name": step.name, "title": step.title, "status": "ran",
                                    "duration_s": manifests[step.number].duration_s,
                                    "cpu_s": manifests[step.number].cpu_s})
        atomic_write_json(run_dir / RUN_RECORD_NAME, record)
    record["finished_utc"] = utc_stamp()
    atomic_write_json(run_dir / RUN_RECORD_NAME, record)
    return manifests


def check_from_step(steps: Sequence[Step], from_step: int, reuse_run: Path | None) -> None:
    """Fail before any work when ``from_step`` is not a step or has no earlier run to reuse."""
    numbers = [s.number for s in steps]
    if from_step not in numbers:
        raise ValueError(f"--from-step {from_step} is not a step; valid steps: {numbers}")
    if from_step > numbers[0] and reuse_run is None:
        raise StepOutputError(f"--from-step {from_step} needs an earlier run to take steps {numbers[0]}.."
                              f"{from_step - 1} from; none was found (run the whole demo once, or pass --reuse DIR)")


def _start_record(run_dir: Path, config: DemoConfig, from_step: int, reuse_run: Path | None) -> dict[str, Any]:
    record = {"format": "edge_geoloc.demo.run", "version": 1, "started_utc": utc_stamp(),
              "profile": config.profile, "seed": config.seed, "from_step": from_step,
              "reused_run": str(reuse_run) if reuse_run else None, "config": json_safe(to_dict(config)),
              "steps": []}
    atomic_write_json(run_dir / RUN_RECORD_NAME, record)
    return record


def warn_if_config_differs(reuse_run: Path, config: DemoConfig) -> list[str]:
    """Top-level config keys in which the reused run differs from this one (logged: reused steps keep theirs)."""
    try:
        old = json.loads((reuse_run / RUN_RECORD_NAME).read_text(encoding="utf-8")).get("config", {})
    except (OSError, json.JSONDecodeError):
        return []
    new = json_safe(to_dict(config))
    differing = sorted(k for k in new if k not in ("profile",) and old.get(k) != new[k])
    if differing:
        log.warning("the reused run %s had a different config for: %s; its reused steps keep their own settings",
                    reuse_run, ", ".join(differing))
    return differing


def _adopt(step: Step, reuse_run: Path | None, step_dir: Path) -> StepManifest:
    if reuse_run is None:
        raise StepOutputError(f"step {step.number} ({step.name}) has no earlier run to be reused from")
    src = reuse_run / step_dir_name(step.number, step.name)
    manifest = adopt_step(src, step_dir, step.number, step.name)
    log.info("step %d (%s): reused from %s (%d files, sha256 verified)", step.number, step.name, src,
             len(manifest.files))
    return manifest


def _execute_recorded(step: Step, ctx: StepContext, total: int, record: dict[str, Any]) -> StepManifest:
    """Run a step; if it fails, the run record says which step failed and why before the error propagates."""
    try:
        return _execute(step, ctx, total)
    except BaseException as err:
        record["steps"].append({"step": step.number, "name": step.name, "status": "failed", "error": repr(err)})
        record["failed_utc"] = utc_stamp()
        atomic_write_json(ctx.run_dir / RUN_RECORD_NAME, record)
        log.error("step %d (%s) failed: %s. Steps 1..%d of %s are complete; after fixing, continue with "
                  "--from-step %d --reuse %s", step.number, step.name, err, step.number - 1, ctx.run_dir,
                  step.number, ctx.run_dir)
        raise


def _execute(step: Step, ctx: StepContext, total: int) -> StepManifest:
    log.info("=== step %d/%d: %s ===", step.number, total, step.title)
    ctx.step_dir.mkdir(parents=True, exist_ok=False)
    with StepTimer() as timer:
        metrics = step.run(ctx)
    manifest = write_step_manifest(ctx.step_dir, step.number, step.name, metrics, timer.elapsed_s, timer.cpu_s)
    verify_step(ctx.step_dir, step.number, step.name)
    _log_written(step, ctx.step_dir, manifest, timer.elapsed_s)
    return manifest


def _log_written(step: Step, step_dir: Path, manifest: StepManifest, elapsed_s: float) -> None:
    total_bytes = sum(info["bytes"] for info in manifest.files.values())
    log.info("step %d (%s) done in %.1f s (%.1f CPU-s): wrote %d files (%.1f MB) to %s", step.number, step.name,
             elapsed_s, manifest.cpu_s, len(manifest.files), total_bytes / 1e6, step_dir)
    for rel in _headline_files(manifest.files):
        log.info("    %s", step_dir / rel)


def _headline_files(files: dict[str, Any], limit: int = 12) -> list[str]:
    """The files worth naming in the log: top-level ones first, then one line per sub-folder."""
    top = [rel for rel in files if "/" not in rel]
    folders: dict[str, int] = {}
    for rel in files:
        if "/" in rel:
            folders[rel.split("/")[0]] = folders.get(rel.split("/")[0], 0) + 1
    lines = top[:limit] + [f"{name}/ ({count} files)" for name, count in sorted(folders.items())]
    return lines

"""What several demo steps do alike: cached datasets, the run's areas, labelled pairs, ONNX export, the runtime
config. Every piece of work is a call into a component's public API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import edge_geoloc.data as data_package
import edge_geoloc.sim as sim_package
from edge_geoloc.config import to_dict, with_overrides
from edge_geoloc.data.pairs import DronePairConfig, write_synthetic_drone_pairs
from edge_geoloc.demo.cache import cache_key, cached_build, link_entry, source_fingerprint
from edge_geoloc.demo.config import DemoConfig
from edge_geoloc.demo.layout import RunLayout
from edge_geoloc.demo.runner import StepContext
from edge_geoloc.export.config import ExportConfig
from edge_geoloc.export.onnx_export import export_checkpoint
from edge_geoloc.runtime.config import RuntimeConfig
from edge_geoloc.sim import Area, load_area

log = logging.getLogger(__name__)

GENERATOR_PACKAGES = (sim_package, data_package)  # their code keys the dataset cache


def cached_dataset(ctx: StepContext, name: str, params: dict[str, Any], write: Callable[[Path], Any]) -> Path:
    """Render a dataset once per (params, sim + data code) into the cache and link it into this step."""
    fingerprint = source_fingerprint([Path(package.__file__).parent for package in GENERATOR_PACKAGES])
    entry, hit = cached_build(ctx.cache_dir / "datasets", cache_key(name, params, fingerprint),
                              lambda d: write(d / "data"), params)
    dst = ctx.step_dir / "data" / name
    link_entry(entry / "data", dst)
    log.info("dataset %s: %s (%s)", name, dst, "cached" if hit else "rendered")
    return dst


def run_area(layout: RunLayout, role: str) -> Area:
    """The ``source`` or ``target`` area of this run."""
    return load_area(layout.area(role))


def drone_pairs(ctx: StepContext, area: Area, name: str, seed: int, pairs: DronePairConfig) -> Path:
    """A labelled drone pair dataset of ``area`` (``write_synthetic_drone_pairs``), cached."""
    params = {"area": area.metadata(), "seed": seed, **to_dict(pairs)}
    return cached_dataset(ctx, name, params, lambda root: write_synthetic_drone_pairs(area, root, pairs, seed))


def eval_pairs_config(config: DemoConfig) -> DronePairConfig:
    """The labelled pairs that only measure: like the training pairs, fewer."""
    return replace(config.localizer_data, count=config.eval_pairs.count)


def export_onnx(checkpoint: Path, out_path: Path, cfg: ExportConfig) -> dict[str, Any]:
    """``export_checkpoint`` (parity-gated); returns the sidecar's parity block."""
    result = export_checkpoint(checkpoint, out_path, cfg)
    return {"onnx": out_path.name, "parity": result.sidecar.get("parity", {})}


def runtime_config(config: DemoConfig, layout: RunLayout | None = None) -> RuntimeConfig:
    """The demo's runtime section on ONNX Runtime (CPU); with the run's ``layout`` and a ``matcher`` section, the
    global search is the exported learned map matcher."""
    overrides: dict[str, Any] = {"backend": {"kind": "onnxruntime", "device": "cpu"}}
    if layout is not None and config.matcher is not None:
        overrides["global_search"] = {"kind": "matcher", "model": str(layout.matcher_onnx)}
    return with_overrides(config.runtime, overrides)

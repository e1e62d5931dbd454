"""Steps 2 and 3: train on the source area, export to ONNX, build the target tile index.

Every piece of work is a call into a component's public API: the sim's dataset writers, the retrieval and
localizer trainers, the retrieval metrics, ``edge_geoloc.export.export_checkpoint`` (with its parity gate) and
the runtime's ``build-index``. Training data are rendered once per seed and cached like the areas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_geoloc.config import deep_merge, from_dict
from edge_geoloc.demo.cache import cache_key, cached_build, source_fingerprint
from edge_geoloc.demo.components import require
from edge_geoloc.demo.runner import StepContext
from edge_geoloc.models.checkpoint import load_model

log = logging.getLogger(__name__)

RETRIEVAL_CKPT = "retrieval/final.safetensors"
LOCALIZER_CKPT = "localizer/last.safetensors"


def _package_dirs(*modules: str) -> list[Path]:
    import importlib

    return [Path(importlib.import_module(m).__file__).parent for m in modules]


def cached_dataset(ctx: StepContext, name: str, params: dict[str, Any], write: Callable[[Path], Any]) -> Path:
    """Render a dataset once per (params, sim + data code) into the cache and link it into this step."""
    from edge_geoloc.demo.steps import _link_entry

    fingerprint = source_fingerprint(_package_dirs("edge_geoloc.sim", "edge_geoloc.data"))
    key = cache_key(name, params, fingerprint)
    entry, hit = cached_build(ctx.cache_dir / "datasets", key, lambda d: write(d / "data"), params)
    dst = ctx.step_dir / "data" / name
    _link_entry(entry / "data", dst)
    log.info("dataset %s: %s (%s)", name, dst, "cached" if hit else "rendered")
    return dst


def load_area_role(ctx: StepContext, role: str) -> Any:
    """The ``source`` or ``target`` area of this run (``edge_geoloc.sim.load_area``)."""
    from edge_geoloc.demo.steps import area_dir

    load_area = require("edge_geoloc.sim", "load_area", "sim")
    return load_area(area_dir(ctx, role))


# ---------------------------------------------------------------- step 2: train
def step_train(ctx: StepContext) -> dict[str, Any]:
    """Render the training data, train both models on the source area, measure retrieval R@1 on the target."""
    source, target = load_area_role(ctx, "source"), load_area_role(ctx, "target")
    retrieval_root = university_tree(ctx, source, "retrieval_source")
    target_tree = university_tree(ctx, target, "retrieval_target")
    metrics: dict[str, Any] = {"retrieval": train_retrieval_model(ctx, retrieval_root)}
    metrics["retrieval"]["target"] = retrieval_recall(ctx.step_dir / RETRIEVAL_CKPT, target_tree)
    train_pairs = drone_pairs(ctx, source, "localizer_train", ctx.config.seed)
    val_section = {**ctx.config.localizer_data, **ctx.config.eval_pairs}  # smaller than the training set
    val_pairs = drone_pairs(ctx, source, "localizer_val", ctx.config.seed + 1000, val_section)
    metrics["localizer"] = train_localizer_model(ctx, train_pairs, val_pairs)
    return metrics


def university_tree(ctx: StepContext, area: Any, name: str) -> Path:
    """A University-1652-layout tree of ``area`` (drone views + satellite tiles per location)."""
    write_tree = require("edge_geoloc.sim.datasets", "write_university_tree", "sim (write_university_tree)")
    params = {"area": area.metadata(), "seed": ctx.config.seed, **ctx.config.retrieval_data}
    return cached_dataset(ctx, name, params,
                          lambda root: write_tree(root, area, seed=ctx.config.seed, **ctx.config.retrieval_data))


def drone_pairs(ctx: StepContext, area: Any, name: str, seed: int, section: dict[str, Any] | None = None) -> Path:
    """A labelled drone pair dataset of ``area`` (``edge_geoloc.data.pairs.write_synthetic_drone_pairs``)."""
    write_pairs = require("edge_geoloc.data.pairs", "write_synthetic_drone_pairs", "localizer data (pairs)")
    pair_cfg_cls = require("edge_geoloc.data.pairs", "DronePairConfig", "localizer data (pairs)")
    section = ctx.config.localizer_data if section is None else section
    pair_cfg = from_dict(pair_cfg_cls, section)
    params = {"area": area.metadata(), "seed": seed, **section}
    return cached_dataset(ctx, name, params, lambda root: write_pairs(area, root, pair_cfg, seed))


def train_retrieval_model(ctx: StepContext, data_root: Path) -> dict[str, Any]:
    """``edge_geoloc.train.retrieval_trainer.train_retrieval`` with the demo's section; returns its eval."""
    cfg_cls = require("edge_geoloc.train.retrieval_trainer", "RetrievalTrainConfig", "retrieval trainer")
    train = require("edge_geoloc.train.retrieval_trainer", "train_retrieval", "retrieval trainer")
    fixed = {"data": {"dataset": "synthetic", "root": str(data_root), "num_workers": 0},
             "run": {"out_dir": str(ctx.step_dir / "retrieval"), "seed": ctx.config.seed, "device": "cpu",
                     "resume": False}}
    cfg = from_dict(cfg_cls, deep_merge(ctx.config.retrieval, fixed))
    results = train(cfg)
    return {"source": _recall_summary(results.get("eval", {}))}


def _recall_summary(results: dict[str, dict]) -> dict[str, float]:
    """Drone -> satellite recall@1/5 and AP (the first protocol the metrics report)."""
    for key, value in results.items():
        if key.startswith("drone_to_satellite/"):
            return {k: float(value[k]) for k in ("recall_at_1", "recall_at_5", "ap") if k in value}
    return {}


def retrieval_recall(checkpoint: Path, tree: Path) -> dict[str, float]:
    """R@1 / R@5 / AP of a retrieval checkpoint on another area's tree (``evaluate_folders``)."""
    evaluate_folders = require("edge_geoloc.evaluate.retrieval_metrics", "evaluate_folders", "retrieval metrics")
    university = require("edge_geoloc.data.university", "University1652", "retrieval data")
    model, _ = load_model(checkpoint)
    return _recall_summary(evaluate_folders(model, university(tree)))


def train_localizer_model(ctx: StepContext, train_root: Path, val_root: Path) -> dict[str, Any]:
    """``edge_geoloc.train.localizer_trainer.fit`` on the source pairs; returns the last epoch's metrics."""
    trainer = "edge_geoloc.train.localizer_trainer"
    cfg_cls = require(trainer, "LocalizerTrainConfig", "localizer trainer")
    fixed = {"data": {"format": "pairs", "train": str(train_root), "val": str(val_root)},
             "out_dir": str(ctx.step_dir / "localizer"), "device": "cpu", "resume": False}
    cfg = from_dict(cfg_cls, deep_merge(ctx.config.localizer, fixed))
    model = require(trainer, "build_model", "localizer trainer")(cfg.model)
    pair_dataset = require("edge_geoloc.data.pairs", "dataset_for_model", "localizer data (pairs)")
    sets = [pair_dataset(root, model, read_ground_truth=True, align_north_up=cfg.data.align_north_up)
            for root in (train_root, val_root)]
    require(trainer, "fit", "localizer trainer")(cfg, *sets)
    read_meta = require("edge_geoloc.artifacts", "read_checkpoint_meta", "artifacts")
    return dict(read_meta(ctx.step_dir / LOCALIZER_CKPT).extra.get("metrics", {}))


# ---------------------------------------------------------------- step 3: export + index
def runtime_config(ctx: StepContext) -> Any:
    """The ``RuntimeConfig`` of the demo's ``runtime`` section, on ONNX Runtime (CPU)."""
    cfg_cls = require("edge_geoloc.runtime.config", "RuntimeConfig", "runtime")
    return from_dict(cfg_cls, deep_merge(ctx.config.runtime, {"backend": {"kind": "onnxruntime", "device": "cpu"}}))


def export_onnx(ctx: StepContext, checkpoint: Path, out_path: Path, section: dict[str, Any]) -> dict[str, Any]:
    """``edge_geoloc.export.export_checkpoint`` (parity-gated); returns the sidecar's parity block."""
    cfg = from_dict(require("edge_geoloc.export.config", "ExportConfig", "export"), section)
    result = require("edge_geoloc.export.onnx_export", "export_checkpoint", "export")(checkpoint, out_path, cfg)
    return {"onnx": out_path.name, "parity": result.sidecar.get("parity", {})}


def step_export(ctx: StepContext) -> dict[str, Any]:
    """Export both models to ONNX and build the tile index of the target orthophoto with the ONNX encoder."""
    from edge_geoloc.demo.steps import area_dir

    train_dir = ctx.step(2)
    metrics = {
        "retrieval": export_onnx(ctx, train_dir / RETRIEVAL_CKPT, ctx.step_dir / "retrieval.onnx",
                                 ctx.config.export),
        "localizer": export_onnx(ctx, train_dir / LOCALIZER_CKPT, ctx.step_dir / "localizer.onnx",
                                 ctx.config.export),
    }
    build = require("edge_geoloc.runtime.index_cli", "build", "runtime (tile index)")
    index = build([area_dir(ctx, "target") / "ortho.tif"], ctx.step_dir / "retrieval.onnx",
                  ctx.step_dir / "index", runtime_config(ctx))
    metrics["index"] = {"tiles": len(index), "embed_dim": int(index.embed_dim)}
    return metrics

"""Steps 2 and 3: train on the source area, export to ONNX, build the target tile index.

Every piece of work is a call into a component's public API: the sim's dataset writers, the retrieval and
localizer trainers, the retrieval metrics, ``export_checkpoint`` (with its parity gate) and the runtime's index
builder. Training data are rendered once per seed and cached like the areas.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_geoloc.artifacts import read_checkpoint_meta
from edge_geoloc.config import with_overrides
from edge_geoloc.data.pairs import dataset_for_model
from edge_geoloc.data.university import University1652
from edge_geoloc.demo.parts import cached_dataset, drone_pairs, eval_pairs_config, export_onnx, run_area, runtime_config
from edge_geoloc.demo.runner import StepContext
from edge_geoloc.evaluate.retrieval_metrics import evaluate_folders
from edge_geoloc.models.checkpoint import load_model
from edge_geoloc.runtime.index_cli import build as build_index
from edge_geoloc.sim import Area
from edge_geoloc.sim.datasets import write_university_tree
from edge_geoloc.train.localizer_trainer import build_model, fit
from edge_geoloc.train.retrieval_trainer import train_retrieval

VALIDATION_SEED_OFFSET = 1000


# ---------------------------------------------------------------- step 2: train
def step_train(ctx: StepContext) -> dict[str, Any]:
    """Render the training data, train both models on the source area, measure retrieval R@1 on the target."""
    layout, cfg = ctx.layout, ctx.config
    source, target = run_area(layout, "source"), run_area(layout, "target")
    retrieval_root = university_tree(ctx, source, "retrieval_source")
    target_tree = university_tree(ctx, target, "retrieval_target")
    metrics: dict[str, Any] = {"retrieval": train_retrieval_model(ctx, retrieval_root)}
    metrics["retrieval"]["target"] = retrieval_recall(layout.retrieval_checkpoint, target_tree)
    train_pairs = drone_pairs(ctx, source, "localizer_train", cfg.seed, cfg.localizer_data)
    val_pairs = drone_pairs(ctx, source, "localizer_val", cfg.seed + VALIDATION_SEED_OFFSET, eval_pairs_config(cfg))
    metrics["localizer"] = train_localizer_model(ctx, train_pairs, val_pairs)
    return metrics


def university_tree(ctx: StepContext, area: Area, name: str) -> Path:
    """A University-1652-layout tree of ``area`` (drone views + satellite tiles per location), cached."""
    section, seed = ctx.config.retrieval_data, ctx.config.seed
    params = {"area": area.metadata(), "seed": seed, **section}
    return cached_dataset(ctx, name, params, lambda root: write_university_tree(root, area, seed=seed, **section))


def train_retrieval_model(ctx: StepContext, data_root: Path) -> dict[str, Any]:
    """``train_retrieval`` with the demo's section on the source tree; returns its evaluation."""
    cfg = with_overrides(ctx.config.retrieval, {
        "data": {"dataset": "synthetic", "root": str(data_root), "num_workers": 0},
        "run": {"out_dir": str(ctx.layout.retrieval_run), "seed": ctx.config.seed, "device": "cpu",
                "resume": False}})
    results = train_retrieval(cfg)
    return {"source": _recall_summary(results.get("eval", {}))}


def _recall_summary(results: dict[str, dict]) -> dict[str, float]:
    """Drone -> satellite recall@1/5 and AP (the first protocol the metrics report)."""
    for key, value in results.items():
        if key.startswith("drone_to_satellite/"):
            return {k: float(value[k]) for k in ("recall_at_1", "recall_at_5", "ap") if k in value}
    return {}


def retrieval_recall(checkpoint: Path, tree: Path) -> dict[str, float]:
    """R@1 / R@5 / AP of a retrieval checkpoint on another area's tree."""
    model, _ = load_model(checkpoint, expected_kind="retrieval")
    return _recall_summary(evaluate_folders(model, University1652(tree)))


def train_localizer_model(ctx: StepContext, train_root: Path, val_root: Path) -> dict[str, Any]:
    """The localizer trainer's ``fit`` on the source pairs; returns the last epoch's metrics."""
    base = ctx.config.localizer
    cfg = replace(base, data=replace(base.data, format="pairs", train=str(train_root), val=str(val_root)),
                  out_dir=str(ctx.layout.localizer_run), device="cpu", resume=False)
    model = build_model(cfg.model)
    sets = [dataset_for_model(root, model, read_ground_truth=True, align_north_up=cfg.data.align_north_up)
            for root in (train_root, val_root)]
    fit(cfg, *sets)
    return dict(read_checkpoint_meta(ctx.layout.localizer_checkpoint).extra.get("metrics", {}))


# ---------------------------------------------------------------- step 3: export + index
def step_export(ctx: StepContext) -> dict[str, Any]:
    """Export both models to ONNX and build the tile index of the target orthophoto with the ONNX encoder."""
    layout, export_cfg = ctx.layout, ctx.config.export
    metrics = {"retrieval": export_onnx(layout.retrieval_checkpoint, layout.retrieval_onnx, export_cfg),
               "localizer": export_onnx(layout.localizer_checkpoint, layout.localizer_onnx, export_cfg)}
    index = build_index([layout.ortho("target")], layout.retrieval_onnx, layout.index_dir, runtime_config(ctx.config))
    metrics["index"] = {"tiles": len(index), "embed_dim": int(index.embed_dim)}
    return metrics

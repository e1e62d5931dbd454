"""Steps 2 and 3: train on the source area, export to ONNX, build the target tile index.

Every piece of work is a call into a component's public API: the sim's dataset writers, the retrieval and
localizer trainers, the retrieval metrics, ``export_checkpoint`` (with its parity gate) and the runtime's index
builder. Training data are rendered once per seed and cached like the areas.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_geoloc.artifacts import read_checkpoint_meta
from edge_geoloc.config import with_overrides
from edge_geoloc.data.pairs import dataset_for_model
from edge_geoloc.data.university import University1652
from edge_geoloc.demo.parts import cached_dataset, drone_pairs, eval_pairs_config, export_onnx, run_area, runtime_config
from edge_geoloc.demo.runner import StepContext
from edge_geoloc.evaluate.map_recall import RecallQueries, onboard_queries, tile_recall
from edge_geoloc.evaluate.retrieval_metrics import evaluate_folders
from edge_geoloc.models.checkpoint import load_model
from edge_geoloc.runtime.classical import NccConfig, NccMatcher
from edge_geoloc.runtime.index_cli import build as build_index
from edge_geoloc.sim import Area, generate_area
from edge_geoloc.sim.datasets import write_university_tree
from edge_geoloc.train.localizer_trainer import build_model, fit
from edge_geoloc.train.map_matcher import runtime_matcher, train_map_matcher
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
    if cfg.matcher is not None:
        metrics["matcher"] = train_matcher_model(ctx)
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
            summary = {k: float(value[k]) for k in ("recall_at_1", "recall_at_5", "ap") if k in value}
            if value.get("num_gallery"):  # one positive per drone query: a random ranking hits 1 / |gallery|
                summary["chance_at_1"] = 100.0 / float(value["num_gallery"])
            return summary
    return {}


def retrieval_recall(checkpoint: Path, tree: Path) -> dict[str, float]:
    """R@1 / R@5 / AP of a retrieval checkpoint on another area's tree."""
    model, _ = load_model(checkpoint, expected_kind="retrieval")
    return _recall_summary(evaluate_folders(model, University1652(tree)))


def matcher_queries(ctx: StepContext) -> list[RecallQueries]:
    """Held-out on-board frames under the flight's condition: over the target area (the training styles, a layout
    the matcher never saw) and over an area of a style never trained on."""
    cfg, spec = ctx.config, ctx.config.matcher_eval
    pairs, seed = cfg.matcher.pairs, cfg.seed + 7
    target, t = run_area(ctx.layout, "target"), cfg.target_area
    other = generate_area(spec.other_style, cfg.seed + spec.other_seed_offset, t.size_m, t.gsd_m,
                          condition=t.condition)
    return [onboard_queries("target_area", target, cfg.flight.condition, pairs, spec.queries, seed, spec.margin_m),
            onboard_queries(f"style_{spec.other_style}", other, cfg.flight.condition, pairs, spec.queries, seed,
                            spec.margin_m)]


def _area_map(area: Area) -> tuple:
    """(image, west, north, m_per_px) of an area's orthophoto in its local east/north metres."""
    return area.ortho, -area.size_m / 2, area.size_m / 2, area.gsd_m


def train_matcher_model(ctx: StepContext) -> dict[str, Any]:
    """Train the learned map matcher on the synthetic world (never on the target area); its on-board R@1 over the
    index's tiles on held-out frames (the learning curve every ``validate_every`` steps) beside NCC's."""
    cfg, layout = ctx.config, ctx.layout
    tests, index = matcher_queries(ctx), cfg.runtime.index

    def recall(matcher: Any, queries: RecallQueries) -> dict[str, float]:
        return tile_recall(matcher, queries, index.tile_size_m, index.stride_m, index.stride_m / 2)

    final: dict[str, dict[str, float]] = {}  # the trainer validates the final model last: its figures are kept

    def curve(model: Any) -> dict[str, float]:
        final.update({q.name: recall(runtime_matcher(model, *_area_map(q.map)), q) for q in tests})
        return {name: r["r1_contains"] for name, r in final.items()}

    run = replace(cfg.matcher.run, out_dir=str(layout.matcher_run), seed=cfg.seed + 1, threads=cfg.threads)
    train_map_matcher(replace(cfg.matcher, run=run), curve)
    ncc = NccConfig(cfg.matcher.pairs.query_ground_size_m, 1.0)
    out: dict[str, Any] = {q.name: {"matcher": final[q.name], "ncc": recall(NccMatcher(*_area_map(q.map), ncc), q)}
                           for q in tests}
    with (layout.matcher_run / "metrics.csv").open(newline="", encoding="utf-8") as f:
        out["learning_curve"] = [{k: float(v) for k, v in row.items() if v not in ("", "nan")}
                                 for row in csv.DictReader(f) if row.get(tests[0].name) not in (None, "", "nan")]
    out["steps"], out["batch_size"] = cfg.matcher.optim.steps, cfg.matcher.optim.batch_size
    return out


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
    if ctx.config.matcher is not None:
        metrics["matcher"] = export_onnx(layout.matcher_checkpoint, layout.matcher_onnx, export_cfg)
    index = build_index([layout.ortho("target")], layout.retrieval_onnx, layout.index_dir, runtime_config(ctx.config))
    metrics["index"] = {"tiles": len(index), "embed_dim": int(index.embed_dim)}
    return metrics

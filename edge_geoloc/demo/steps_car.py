"""The car's loop (``edge-geoloc demo --vehicle car``): the demo's steps for a ground panorama in an urban drive.

The same run folder, cache, step runner, field logger, log dataset and report as the drone's; what differs is
the vehicle (docs/runtime.md, "Cars"): no retrieval, each frame is localized in the aerial patch around the
GNSS / fused prior by the ground localizer, and the visual fix goes through the same fusion.

The ground localizer is the learned BEV matcher (``runtime.learned_ground``): the map matcher's network on the
bird's-eye view of the north-up panorama, trained with the position loss on rendered views of areas of the
training styles (never the target area), exported to ONNX and loaded by the runtime from its sidecar
(``Pipeline.from_config``, camera ``panorama``). The classical BEV + NCC matcher is the baseline row.

2 train    the BEV matcher on rendered ground views (cached), its learning curve on labelled target pairs
3 export   matcher.onnx (parity-gated); the target map as the car's patch source (tiles without embeddings)
4 drive    the urban drive (panorama, heading, GNSS with multipath) through the runtime, logged to MCAP;
           GNSS only vs fused, lateral / longitudinal, share of frames fused worse
5 adapt    coarse-GPS pairs from the logs (no ground truth) -> ``adapt_matcher`` (self-distillation with outlier
           filtering) -> re-export -> labelled target pairs: teacher vs adapted (paired bootstrap), BEV + NCC,
           patch centre -> the same drive again with the adapted matcher
6 report   the drone's report, with the car rows
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.config import to_dict, with_overrides
from edge_geoloc.data.ground_bev_pairs import (
    GroundBevPairSource,
    coarse_pairs_from_dataset,
    load_or_render_views,
)
from edge_geoloc.data.ground_pairs import write_synthetic_ground_pairs
from edge_geoloc.demo.flight import fly as fly_flight
from edge_geoloc.demo.flight import read_flight
from edge_geoloc.demo.parts import cached_dataset, export_onnx, run_area, runtime_config
from edge_geoloc.demo.report import ReportInputs, build_report
from edge_geoloc.demo.runner import StepContext
from edge_geoloc.demo.steps_fly import build_log_dataset, fly_logged, simulate_target_flight
from edge_geoloc.demo.steps_report import read_target_ortho, report_steps
from edge_geoloc.evaluate.car_metrics import centre_errors, drive_comparison, heatmap_errors, pair_error_stats
from edge_geoloc.evaluate.statistics import paired_bootstrap
from edge_geoloc.fieldlog.step import MapPatchSpec
from edge_geoloc.geo import EnuFrame
from edge_geoloc.models.checkpoint import load_model
from edge_geoloc.runtime.backends import load_backend
from edge_geoloc.runtime.classical_ground import BevNccLocalizer
from edge_geoloc.runtime.learned_ground import learned_bev_localizer
from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.replay import FlightData
from edge_geoloc.runtime.tile_build import MapPatchesOnly, build_tile_index
from edge_geoloc.runtime.trajectory import read_trajectory
from edge_geoloc.train.map_matcher import MatcherRunConfig, MatcherTrainConfig, train_map_matcher
from edge_geoloc.train.matcher_adaptation import adapt_matcher, mode_errors_m, window_modes

LOCALIZER = "learned_bev_matcher"
EVAL_PAIRS_SEED_OFFSET = 3000


# ---------------------------------------------------------------- step 2: train the BEV matcher
def step_car_train(ctx: StepContext) -> dict[str, Any]:
    """Train the learned BEV matcher on rendered views of the training styles' areas (never the target area)."""
    spec, layout = ctx.config.ground_matcher, ctx.layout
    views_dir = cached_dataset(ctx, "ground_bev_views", to_dict(spec.pairs),
                               lambda root: load_or_render_views(spec.pairs, root))
    views = load_or_render_views(spec.pairs, views_dir)
    curve_pairs, _ = coarse_pairs_from_dataset(labelled_pairs(ctx, ctx.config.flight.condition), spec.pairs,
                                               read_ground_truth=True)

    def learning_curve(model: Any) -> dict[str, float]:  # reported only: nothing is chosen on the target pairs
        errors, _ = mode_errors_m(model, curve_pairs)
        return {"target_mean_m": float(errors.mean()), "target_median_m": float(np.median(errors))}

    run = MatcherRunConfig(out_dir=str(layout.matcher_run), seed=ctx.config.seed + 1, threads=ctx.config.threads,
                           validate_every=spec.validate_every)
    cfg = MatcherTrainConfig(model=spec.model, model_kwargs=spec.pairs.matcher_kwargs(), optim=spec.optim, run=run)
    train_map_matcher(cfg, learning_curve, GroundBevPairSource(views, spec.pairs, seed=ctx.config.seed + 1))
    with (layout.matcher_run / "metrics.csv").open(newline="", encoding="utf-8") as f:
        curve = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    return {"localizer": LOCALIZER, "views": int(len(views.bevs)), "areas": len(views.maps),
            "steps": spec.optim.steps, "batch_size": spec.optim.batch_size, "train_s": curve[-1]["seconds"],
            "learning_curve": [r for r in curve if "target_mean_m" in r]}


# ---------------------------------------------------------------- step 3: export, the patch source
def step_car_export(ctx: StepContext) -> dict[str, Any]:
    """The matcher to ONNX (parity gate); the target orthophoto as a tile index without retrieval embeddings."""
    layout = ctx.layout
    exported = export_onnx(layout.matcher_checkpoint, layout.matcher_onnx, ctx.config.export)
    index = build_tile_index([layout.ortho("target")], MapPatchesOnly(), ctx.config.runtime.index,
                             out_dir=layout.index_dir)
    return {"index": {"tiles": len(index), "embed_dim": int(index.embed_dim)}, "exported_models": [exported]}


# ---------------------------------------------------------------- step 4: drive, logging
def car_pipeline(ctx: StepContext, matcher_onnx: Path) -> Pipeline:
    """The car's runtime: no retrieval encoder; the exported matcher (its sidecar: panorama BEVs) in the patch
    around the prior, on ONNX Runtime."""
    return Pipeline.from_config(None, matcher_onnx, ctx.layout.index_dir, runtime_config(ctx.config))


def step_drive(ctx: StepContext) -> dict[str, Any]:
    """Drive the target area through the car's runtime with the field logger on; GNSS only vs fused."""
    layout = ctx.layout
    flight = read_flight(simulate_target_flight(ctx, run_area(layout, "target")))
    pipeline = car_pipeline(ctx, layout.matcher_onnx)
    loc = pipeline.localizer
    patch = MapPatchSpec(layout.ortho("target"), float(loc.aerial_size_m), int(loc.aerial_px))
    metrics = fly_logged(ctx, flight, pipeline, patch)
    metrics["vehicle"] = "car"
    metrics["pipeline"] = {"retrieval": None, "localizer": LOCALIZER, "model": layout.matcher_onnx.name,
                           "camera": "panorama", "alignment": "north_up", "fusion": ctx.config.runtime.fusion.mode}
    metrics["drive"] = drive_errors(layout.teacher_replay / "trajectory.csv", flight)
    return metrics


def drive_errors(trajectory_csv: Path, flight: FlightData) -> dict[str, Any]:
    """GNSS only (last fix held) vs fused, with lateral / longitudinal errors along the true heading."""
    table = read_trajectory(trajectory_csv)
    if flight.truth is None or len(flight.truth["heading_rad"]) != len(table["stamp_s"]):
        raise ValueError(f"{trajectory_csv}: one trajectory row per frame with a true heading is needed")
    enu = EnuFrame(float(table["truth_lat_deg"][0]), float(table["truth_lon_deg"][0]))
    truth = np.column_stack(enu.to_enu(table["truth_lat_deg"], table["truth_lon_deg"])[:2])
    errors = {prefix: np.column_stack(enu.to_enu(table[f"{prefix}_lat_deg"], table[f"{prefix}_lon_deg"])[:2]) - truth
              for prefix in ("fused", "gnss_held")}
    return drive_comparison(errors["fused"], errors["gnss_held"], flight.truth["heading_rad"])


# ---------------------------------------------------------------- step 5: adapt from the logs, redeploy
def step_car_adapt(ctx: StepContext) -> dict[str, Any]:
    """Log dataset -> adapt the matcher -> re-export -> teacher vs adapted on labelled pairs -> drive again."""
    layout = ctx.layout
    metrics: dict[str, Any] = {"dataset": build_log_dataset(ctx), "adaptation": adapt_from_logs(ctx)}
    metrics["export"] = export_onnx(student_checkpoint(ctx), layout.adapted_onnx, ctx.config.export)
    metrics["localizer_eval"] = ground_localizer_eval(ctx)
    flight = read_flight(layout.flight_dir)
    pipeline = car_pipeline(ctx, layout.adapted_onnx)
    metrics["flight"] = fly_flight(flight, pipeline, layout.adapted_replay, pipeline.cfg.pipeline.min_confidence)
    metrics["drive"] = drive_errors(layout.adapted_replay / "trajectory.csv", flight)
    return metrics


def student_checkpoint(ctx: StepContext) -> Path:
    return ctx.layout.adaptation_dir / "student" / "final.safetensors"  # written by adapt_matcher's fine-tuning


def adapt_from_logs(ctx: StepContext) -> dict[str, Any]:
    """``adapt_matcher`` of the step-2 matcher on the coarse-GPS pairs of the drive's logs (no ground truth)."""
    layout, spec = ctx.layout, ctx.config.ground_matcher
    pairs, made = coarse_pairs_from_dataset(layout.adapt_dataset, spec.pairs)
    teacher, _ = load_model(layout.matcher_checkpoint, expected_kind="matcher")
    cfg = with_overrides(ctx.config.ground_adaptation, {"seed": ctx.config.seed})
    result = adapt_matcher(teacher, pairs, cfg, layout.adaptation_dir)
    student_modes, _ = window_modes(result.student, pairs.bevs, pairs.tiles)
    shift_m = np.hypot(*(student_modes - result.pseudo).T) * teacher.m_per_px
    return {"samples": made.samples, "no_heading": made.no_heading, "rejected": len(made.rejected),
            "kept": int(result.kept.sum()), "keep_quantile": cfg.keep_quantile, "steps": cfg.steps,
            "teacher_vs_student": {"median_m": float(np.median(shift_m)), "mean_m": float(shift_m.mean())}}


def labelled_pairs(ctx: StepContext, condition: str | None) -> Path:
    """Labelled ground pairs of the target area seen under ``condition`` (only measure; cached)."""
    area = run_area(ctx.layout, "target")
    pairs = replace(ctx.config.ground_eval, condition=condition, random_conditions=0)
    seed = ctx.config.seed + EVAL_PAIRS_SEED_OFFSET
    params = {"area": area.metadata(), "seed": seed, **to_dict(pairs)}
    return cached_dataset(ctx, f"ground_target_eval_{condition}", params,
                          lambda out: write_synthetic_ground_pairs(area, out, pairs, seed))


def ground_localizer_eval(ctx: StepContext) -> dict[str, Any]:
    """Per condition (as the drive sees it, across the gap; as the map was taken, the easy row): the exported
    matcher before and after adaptation (paired bootstrap of the change), BEV + NCC, and the patch centre."""
    conditions = dict.fromkeys((ctx.config.flight.condition, ctx.config.target_area.condition))
    return {str(condition): _pair_errors(ctx, labelled_pairs(ctx, condition)) for condition in conditions}


def _pair_errors(ctx: StepContext, root: Path) -> dict[str, Any]:
    layout, loc = ctx.layout, ctx.config.ground_localizer
    errors = {name: heatmap_errors(root, _onnx_factory(path))
              for name, path in (("teacher", layout.matcher_onnx), ("adapted", layout.adapted_onnx))}
    rows = {name: pair_error_stats(e) for name, e in errors.items()}
    rows["adapted"]["vs_teacher"] = paired_bootstrap(errors["teacher"], errors["adapted"], seed=ctx.config.seed)
    rows["classical_bev_ncc"] = pair_error_stats(heatmap_errors(
        root, lambda size_m: BevNccLocalizer(replace(loc, aerial_size_m=size_m))))
    rows["patch_centre"] = pair_error_stats(centre_errors(root))
    return rows


def _onnx_factory(onnx_path: Path) -> Any:
    """``make(aerial_size_m)``: the exported matcher's BEV localizer, as the runtime builds it."""
    backend = load_backend(onnx_path, kind="onnxruntime", device="cpu")
    return lambda size_m: learned_bev_localizer(backend, aerial_size_m=size_m)


# ---------------------------------------------------------------- step 6: report
def step_car_report(ctx: StepContext) -> dict[str, Any]:
    """The demo's report of the drive before and after adaptation, with the car's rows."""
    layout, drive, adapt = ctx.layout, ctx.metrics(4), ctx.metrics(5)
    ortho = read_target_ortho(layout)
    gap = adapt["localizer_eval"][str(ctx.config.flight.condition)]
    car = {**drive["drive"], "adapted": adapt["drive"], "pipeline": drive["pipeline"],
           "ground_localizer": adapt["localizer_eval"], "dataset": adapt["dataset"]}
    inputs = ReportInputs(
        trajectories={"teacher": layout.teacher_replay / "trajectory.csv",
                      "adapted": layout.adapted_replay / "trajectory.csv"},
        outages_s=[tuple(o) for o in drive.get("outages_s", [])],
        ortho_rgb=ortho.image, latlon_to_pixel=ortho.georef.latlon_to_pixel,
        metrics={"vehicle": "car", "car": car, "adaptation": adapt["adaptation"],
                 "localizer": {"teacher": gap["teacher"], "adapted": gap["adapted"]},
                 "counters": {"teacher": drive.get("counters", {}), "adapted": adapt["flight"].get("counters", {})}},
        steps=report_steps(ctx), title=ctx.config.report.title, dpi=ctx.config.report.dpi)
    summary = build_report(inputs, layout.report_dir)
    return {"flight": summary["flight"]["all"],
            "car": {k: car[k] for k in ("gnss_only", "fused", "share_fused_worse", "adapted")}}

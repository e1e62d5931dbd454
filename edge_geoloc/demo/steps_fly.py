"""Steps 4 and 5: fly the target area with degraded GNSS while logging; adapt from the logs; fly again.

Step 4 simulates the target flight (cached per seed), runs it through the runtime with the teacher models
(ONNX Runtime) and the field logger. Step 5 turns the logs into an adaptation dataset
(``edge_geoloc.fieldlog``), adapts the localizer (``edge_geoloc.train.adaptation.adapt``), re-exports it
(parity-gated), measures teacher vs adapted on a labelled target set, and flies the same flight again.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_geoloc.config import to_dict, with_overrides
from edge_geoloc.demo.flight import fly as fly_flight
from edge_geoloc.demo.flight import load_pipeline, outage_intervals, read_flight
from edge_geoloc.demo.hypotheses import relocalization_figures
from edge_geoloc.demo.parts import cached_dataset, drone_pairs, eval_pairs_config, export_onnx, run_area, runtime_config
from edge_geoloc.demo.runner import StepContext
from edge_geoloc.evaluate.localization_metrics import localization_errors
from edge_geoloc.fieldlog.dataset import build_pairs_from_logs
from edge_geoloc.fieldlog.logger import FieldLogger
from edge_geoloc.fieldlog.step import MapPatchSpec
from edge_geoloc.geo.heatmap import heatmap_mode
from edge_geoloc.models.checkpoint import load_model
from edge_geoloc.runtime.backends import load_backend
from edge_geoloc.runtime.pipeline import BackendLocalizer, Pipeline
from edge_geoloc.runtime.query_alignment import align_query
from edge_geoloc.runtime.replay import FlightData, measured_attitude, truth_latlon
from edge_geoloc.runtime.trajectory import read_trajectory
from edge_geoloc.sim import Area
from edge_geoloc.sim.flight import simulate_flight
from edge_geoloc.train.adaptation import AdaptConfig, adapt, open_target, validate
from edge_geoloc.types import CameraFrame

EVAL_PAIRS_SEED_OFFSET = 2000
QUERY_THUMBNAIL_PX = 128  # the report's query images


def simulate_target_flight(ctx: StepContext, area: Area) -> Path:
    """The degraded-GNSS flight over the target area, cached per seed (the run's seed drives the flight)."""
    flight_cfg = with_overrides(ctx.config.flight, {"seed": ctx.config.seed})
    params = {"area": area.metadata(), **to_dict(flight_cfg)}
    return cached_dataset(ctx, "flight", params, lambda root: simulate_flight(area, root, flight_cfg))


def patch_spec(ctx: StepContext) -> MapPatchSpec:
    """The map patch the field logger references around each coarse position (the localizer's input size)."""
    pairs = ctx.config.localizer_data
    return MapPatchSpec(ctx.layout.ortho("target"), float(pairs.aerial_size_m), int(pairs.aerial_px))


def adaptation_config(ctx: StepContext) -> AdaptConfig:
    """The adaptation section, seeded by the run."""
    return with_overrides(ctx.config.adaptation, {"seed": ctx.config.seed})


# ---------------------------------------------------------------- step 4: fly with the teacher, logging
def step_fly(ctx: StepContext) -> dict[str, Any]:
    """Fly the target flight through the runtime (teacher models) with the field logger on."""
    layout, runtime = ctx.layout, runtime_config(ctx.config, ctx.layout)
    area = run_area(layout, "target")
    flight = read_flight(simulate_target_flight(ctx, area))
    pipeline = load_pipeline(layout.retrieval_onnx, layout.localizer_onnx, layout.index_dir, runtime, flight)
    metrics = fly_logged(ctx, flight, pipeline, patch_spec(ctx))
    metrics["global_search"] = {"kind": runtime.global_search.kind, "model": Path(runtime.global_search.model).name}
    metrics["relocalization"] = relocalization_figures(read_trajectory(layout.teacher_replay / "trajectory.csv"),
                                                       metrics["outages_s"])
    samples = heatmap_samples(ctx, area, flight, layout.teacher_replay / "trajectory.csv", layout.localizer_onnx)
    np.savez_compressed(layout.teacher_heatmaps, **samples)
    return metrics


def fly_logged(ctx: StepContext, flight: FlightData, pipeline: Pipeline, patch: MapPatchSpec) -> dict[str, Any]:
    """Replay ``flight`` through ``pipeline`` into the teacher replay folder with the field logger on; returns the
    flight's metrics with the logger's counters and the GNSS outages."""
    layout = ctx.layout
    logger = FieldLogger(layout.fieldlog_dir, ctx.config.fieldlog)
    try:
        metrics = fly_flight(flight, pipeline, layout.teacher_replay, pipeline.cfg.pipeline.min_confidence, logger,
                             patch)
    finally:
        logger.close()
    metrics["fieldlog"] = {k: v for k, v in vars(logger.counters).items() if isinstance(v, (int, float))}
    metrics["outages_s"] = outage_intervals(flight.meta)
    return metrics


def heatmap_samples(ctx: StepContext, area: Area, flight: FlightData, trajectory_csv: Path, localizer_onnx: Path,
                    centres: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A few frames, the aerial patch around the coarse position before each, and the localizer's heat map.

    Without ``centres`` (step 4) frames are spread evenly over the flight and each patch is centred on the
    fused estimate of the previous frame (the raw GNSS fix before the filter starts); step 5 passes step 4's
    frames and centres so both models see the same inputs.
    """
    n = len(flight.frame_paths)
    if centres is None:
        idx = np.linspace(1, n - 2, ctx.config.report.heatmap_frames).round().astype(int)
        table = read_trajectory(trajectory_csv)
        centres = np.array([_coarse_latlon(table, i) for i in idx])
    else:
        idx, centres = centres[:, 0].astype(int), centres[:, 1:]
    spec, locate = patch_spec(ctx), _localizer(localizer_onnx, flight)
    out: dict[str, list] = {"frame_index": [], "query": [], "aerial": [], "truth_px": [], "heatmap": [],
                            "peak_px": [], "error_m": []}
    for i, (lat, lon) in zip(idx, centres, strict=True):
        _sample(out, area, flight, int(i), lat, lon, spec, locate)
    samples = {k: np.asarray(v) for k, v in out.items()}
    samples["centres"] = np.column_stack([idx, centres])
    return samples


def _coarse_latlon(table: dict[str, np.ndarray], i: int) -> tuple[float, float]:
    for prefix in ("fused", "gnss_held"):
        lat, lon = table[f"{prefix}_lat_deg"][i - 1], table[f"{prefix}_lon_deg"][i - 1]
        if np.isfinite(lat) and np.isfinite(lon):
            return float(lat), float(lon)
    return float(table["truth_lat_deg"][i]), float(table["truth_lon_deg"][i])


def _localizer(onnx_path: Path, flight: FlightData) -> Any:
    """``locate(frame_index, query, aerial)``: the localizer on the frame aligned as the pipeline aligns it
    (north-up / scale from the flight's measured heading and height, when the artifact asks for it)."""
    localizer = BackendLocalizer(load_backend(onnx_path, kind="onnxruntime", device="cpu"))
    hfov = float(flight.meta.get("camera", {}).get("hfov_deg") or 0.0)

    def locate(i: int, query: np.ndarray, aerial: np.ndarray) -> np.ndarray:
        stamp = float(flight.frame_stamps_s[i])
        frame = CameraFrame(stamp, query, f"frame_{i:06d}", *measured_attitude(flight, stamp))
        return localizer.locate(align_query(frame, localizer.alignment, hfov), aerial)

    return locate


def _sample(out: dict[str, list], area: Area, flight: FlightData, i: int, lat: float, lon: float,
            spec: MapPatchSpec, locate: Any) -> None:
    east, north = area.latlon_to_local(lat, lon)
    aerial, georef = area.aerial_patch(float(east), float(north), spec.size_m, spec.px)
    query = cv2.imread(str(flight.frame_paths[i]), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    heat = np.asarray(locate(i, query, aerial), dtype=np.float32)
    truth_px = np.array(georef.latlon_to_pixel(*truth_latlon(flight, float(flight.frame_stamps_s[i]))))
    peak = (np.array(heatmap_mode(heat)) + 0.5) * (aerial.shape[0] / heat.shape[0])  # pixel centre, patch pixels
    out["frame_index"].append(i)
    out["query"].append(cv2.resize(query, (QUERY_THUMBNAIL_PX, QUERY_THUMBNAIL_PX), interpolation=cv2.INTER_AREA))
    out["aerial"].append(aerial)
    out["truth_px"].append(truth_px)
    out["heatmap"].append(heat)
    out["peak_px"].append(peak)
    out["error_m"].append(float(localization_errors(peak[None], truth_px[None], georef.m_per_px)["distance_m"][0]))


# ---------------------------------------------------------------- step 5: adapt, re-export, fly again
def step_adapt(ctx: StepContext) -> dict[str, Any]:
    """Dataset from the logs -> adapt -> validate teacher vs adapted -> re-export -> fly the same flight."""
    layout, runtime = ctx.layout, runtime_config(ctx.config, ctx.layout)
    dataset_report = build_log_dataset(ctx)
    report = adapt_localizer(ctx)
    metrics: dict[str, Any] = {"dataset": dataset_report, "adaptation": report}
    metrics["localizer_eval"] = validate_localizers(ctx, layout.localizer_checkpoint, layout.student_checkpoint)
    metrics["export"] = export_onnx(layout.student_checkpoint, layout.adapted_onnx, ctx.config.export)
    area = run_area(layout, "target")
    flight = read_flight(layout.flight_dir)
    pipeline = load_pipeline(layout.retrieval_onnx, layout.adapted_onnx, layout.index_dir, runtime, flight)
    metrics["flight"] = fly_flight(flight, pipeline, layout.adapted_replay, runtime.pipeline.min_confidence)
    teacher_samples = np.load(layout.teacher_heatmaps)
    samples = heatmap_samples(ctx, area, flight, layout.adapted_replay / "trajectory.csv", layout.adapted_onnx,
                              centres=teacher_samples["centres"])
    np.savez_compressed(layout.adapted_heatmaps, **samples)
    metrics["target_ortho"] = str(layout.ortho("target"))
    return metrics


def build_log_dataset(ctx: StepContext) -> dict[str, Any]:
    """The adaptation pair dataset cut from the step-4 field logs."""
    layout = ctx.layout
    report = build_pairs_from_logs(layout.fieldlog_dir, layout.adapt_dataset, ortho=layout.ortho("target"),
                                   **ctx.config.dataset)
    return {k: v for k, v in vars(report).items() if isinstance(v, (int, float, str))}


def adapt_localizer(ctx: StepContext) -> dict[str, Any]:
    """``adapt`` of the step-2 teacher on the unlabeled log dataset; writes the student checkpoint."""
    cfg, layout = adaptation_config(ctx), ctx.layout
    teacher, _ = load_model(layout.localizer_checkpoint, expected_kind="localizer")
    result = adapt(teacher, open_target(layout.adapt_dataset, teacher, cfg), cfg, layout.adaptation_dir)
    return {k: v for k, v in result.report.items() if k not in ("config", "distance_histogram")}


def validate_localizers(ctx: StepContext, teacher_ckpt: Path, student_ckpt: Path) -> dict[str, Any]:
    """Teacher vs adapted metric error on a labelled target-area pair set (never seen by adaptation)."""
    area = run_area(ctx.layout, "target")
    seen_as_flown = replace(eval_pairs_config(ctx.config), condition=ctx.config.flight.condition, random_conditions=0)
    eval_dir = drone_pairs(ctx, area, "localizer_target_eval", ctx.config.seed + EVAL_PAIRS_SEED_OFFSET, seen_as_flown)
    models = {name: load_model(path, expected_kind="localizer")[0]
              for name, path in (("teacher", teacher_ckpt), ("adapted", student_ckpt))}
    return validate(models, eval_dir, adaptation_config(ctx))

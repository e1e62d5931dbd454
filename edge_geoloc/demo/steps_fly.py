"""Steps 4 and 5: fly the target area with degraded GNSS while logging; adapt from the logs; fly again.

Step 4 simulates the target flight (cached per seed), runs it through the runtime with the teacher models
(ONNX Runtime) and the field logger. Step 5 turns the logs into an adaptation dataset
(``edge_geoloc.fieldlog``), adapts the localizer (``edge_geoloc.train.adaptation.adapt``), re-exports it
(parity-gated), measures teacher vs adapted on a labelled target set, and flies the same flight again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.config import deep_merge, from_dict, to_dict
from edge_geoloc.demo.components import require
from edge_geoloc.demo.flight import fly as fly_flight
from edge_geoloc.demo.flight import load_pipeline, outage_intervals, read_flight
from edge_geoloc.demo.runner import StepContext
from edge_geoloc.demo.steps_train import (
    LOCALIZER_CKPT,
    cached_dataset,
    drone_pairs,
    export_onnx,
    load_area_role,
    runtime_config,
)
from edge_geoloc.fieldlog.step import MapPatchSpec
from edge_geoloc.models.checkpoint import load_model
from edge_geoloc.runtime.trajectory import read_trajectory
from edge_geoloc.types import CameraFrame

log = logging.getLogger(__name__)

EVAL_PAIRS_SEED_OFFSET = 2000
TEACHER_REPLAY = "replay_teacher"
ADAPTED_REPLAY = "replay_adapted"
REPLAY_MODULE = "edge_geoloc.runtime.replay"


def simulate_target_flight(ctx: StepContext, area: Any) -> Path:
    """The degraded-GNSS flight over the target area (``edge_geoloc.sim.simulate_flight``), cached per seed."""
    simulate = require("edge_geoloc.sim.flight", "simulate_flight", "sim (simulate_flight)")
    flight_cfg_cls = require("edge_geoloc.sim.flight", "FlightConfig", "sim (simulate_flight)")
    flight_cfg = from_dict(flight_cfg_cls, deep_merge({"seed": ctx.config.seed}, ctx.config.flight))
    params = {"area": area.metadata(), **to_dict(flight_cfg)}
    return cached_dataset(ctx, "flight", params, lambda root: simulate(area, root, flight_cfg))


def patch_spec(ctx: StepContext, area_tif: Path) -> MapPatchSpec:
    """The map patch the field logger references around each coarse position (the localizer's input size)."""
    pairs = from_dict(require("edge_geoloc.data.pairs", "DronePairConfig", "localizer data (pairs)"),
                      ctx.config.localizer_data)
    return MapPatchSpec(area_tif, float(pairs.aerial_size_m), int(pairs.aerial_px))


def _fieldlog_config(ctx: StepContext) -> Any:
    return from_dict(require("edge_geoloc.fieldlog.config", "FieldLogConfig", "field logger"), ctx.config.fieldlog)


# ---------------------------------------------------------------- step 4: fly with the teacher, logging
def step_fly(ctx: StepContext) -> dict[str, Any]:
    """Fly the target flight through the runtime (teacher models) with the field logger on."""
    from edge_geoloc.demo.steps import area_dir

    area = load_area_role(ctx, "target")
    flight = read_flight(simulate_target_flight(ctx, area))
    export_dir, runtime = ctx.step(3), runtime_config(ctx)
    pipeline = load_pipeline(export_dir / "retrieval.onnx", export_dir / "localizer.onnx", export_dir / "index",
                             runtime, flight)
    logger_cls = require("edge_geoloc.fieldlog.logger", "FieldLogger", "field logger")
    logger = logger_cls(ctx.step_dir / "fieldlog", _fieldlog_config(ctx))
    try:
        metrics = fly_flight(flight, pipeline, ctx.step_dir / TEACHER_REPLAY, runtime.pipeline.min_confidence,
                             logger, patch_spec(ctx, area_dir(ctx, "target") / "ortho.tif"))
    finally:
        logger.close()
    metrics["fieldlog"] = {k: v for k, v in vars(logger.counters).items() if isinstance(v, (int, float))}
    metrics["outages_s"] = outage_intervals(flight.meta)
    samples = heatmap_samples(ctx, area, flight, ctx.step_dir / TEACHER_REPLAY / "trajectory.csv",
                              export_dir / "localizer.onnx")
    np.savez_compressed(ctx.step_dir / "heatmaps_teacher.npz", **samples)
    return metrics


def heatmap_samples(ctx: StepContext, area: Any, flight: Any, trajectory_csv: Path, localizer_onnx: Path,
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
    spec = patch_spec(ctx, Path())
    locate = _localizer(localizer_onnx, flight)
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


def _localizer(onnx_path: Path, flight: Any) -> Any:
    """``locate(frame_index, query, aerial)``: the localizer on the frame aligned as the pipeline aligns it
    (north-up / scale from the flight's measured heading and height, when the artifact asks for it)."""
    load_backend = require("edge_geoloc.runtime.backends", "load_backend", "runtime (backends)")
    backend_localizer = require("edge_geoloc.runtime.pipeline", "BackendLocalizer", "runtime (pipeline)")
    align_query = require("edge_geoloc.runtime.query_alignment", "align_query", "runtime (query alignment)")
    measured_attitude = require(REPLAY_MODULE, "measured_attitude", "runtime (replay)")
    localizer = backend_localizer(load_backend(onnx_path, kind="onnxruntime", device="cpu"))
    hfov = float(flight.meta.get("camera", {}).get("hfov_deg") or 0.0)

    def locate(i: int, query: np.ndarray, aerial: np.ndarray) -> np.ndarray:
        stamp = float(flight.frame_stamps_s[i])
        frame = CameraFrame(stamp, query, f"frame_{i:06d}", *measured_attitude(flight, stamp))
        return localizer.locate(align_query(frame, localizer.alignment, hfov), aerial)

    return locate


def _sample(out: dict[str, list], area: Any, flight: Any, i: int, lat: float, lon: float,
            spec: MapPatchSpec, locate: Any) -> None:
    import cv2

    east, north = area.latlon_to_local(lat, lon)
    aerial, georef = area.aerial_patch(float(east), float(north), spec.size_m, spec.px)
    query = cv2.imread(str(flight.frame_paths[i]), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    heat = np.asarray(locate(i, query, aerial), dtype=np.float32)
    stamp, truth = flight.frame_stamps_s[i], flight.truth
    truth_latlon = (np.interp(stamp, truth["stamp_s"], truth["lat_deg"]), np.interp(stamp, truth["stamp_s"],
                                                                                     truth["lon_deg"]))
    truth_px = np.array(georef.latlon_to_pixel(*truth_latlon))
    scale = aerial.shape[0] / heat.shape[0]
    peak = (np.array(np.unravel_index(int(np.argmax(heat)), heat.shape)) + 0.5) * scale
    out["frame_index"].append(i)
    out["query"].append(cv2.resize(query, (128, 128), interpolation=cv2.INTER_AREA))
    out["aerial"].append(aerial)
    out["truth_px"].append(truth_px)
    out["heatmap"].append(heat)
    out["peak_px"].append(peak)
    out["error_m"].append(float(np.linalg.norm(peak - truth_px) * georef.m_per_px))


# ---------------------------------------------------------------- step 5: adapt, re-export, fly again
def step_adapt(ctx: StepContext) -> dict[str, Any]:
    """Dataset from the logs -> adapt -> validate teacher vs adapted -> re-export -> fly the same flight."""
    from edge_geoloc.demo.steps import area_dir

    dataset_dir, dataset_report = build_log_dataset(ctx, ctx.step(4) / "fieldlog", ctx.step_dir / "adapt_dataset")
    student_ckpt, report = adapt_localizer(ctx, dataset_dir)
    metrics: dict[str, Any] = {"dataset": dataset_report, "adaptation": report}
    metrics["localizer_eval"] = validate_localizers(ctx, ctx.step(2) / LOCALIZER_CKPT, student_ckpt)
    metrics["export"] = export_onnx(ctx, student_ckpt, ctx.step_dir / "localizer_adapted.onnx", ctx.config.export)
    area = load_area_role(ctx, "target")
    flight = read_flight(ctx.step(4) / "data" / "flight")
    export_dir, runtime = ctx.step(3), runtime_config(ctx)
    pipeline = load_pipeline(export_dir / "retrieval.onnx", ctx.step_dir / "localizer_adapted.onnx",
                             export_dir / "index", runtime, flight)
    metrics["flight"] = fly_flight(flight, pipeline, ctx.step_dir / ADAPTED_REPLAY, runtime.pipeline.min_confidence)
    teacher_samples = np.load(ctx.step(4) / "heatmaps_teacher.npz")
    samples = heatmap_samples(ctx, area, flight, ctx.step_dir / ADAPTED_REPLAY / "trajectory.csv",
                              ctx.step_dir / "localizer_adapted.onnx", centres=teacher_samples["centres"])
    np.savez_compressed(ctx.step_dir / "heatmaps_adapted.npz", **samples)
    metrics["target_ortho"] = str(area_dir(ctx, "target") / "ortho.tif")
    return metrics


def build_log_dataset(ctx: StepContext, log_dir: Path, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The adaptation pair dataset cut from the field logs (``edge_geoloc.fieldlog`` dataset builder)."""
    from edge_geoloc.demo.steps import area_dir

    build = require("edge_geoloc.fieldlog.dataset", "build_pairs_from_logs", "field logger (dataset from-logs)")
    report = build(log_dir, out_dir, ortho=area_dir(ctx, "target") / "ortho.tif", **ctx.config.dataset)
    return out_dir, {k: v for k, v in vars(report).items() if isinstance(v, (int, float, str))}


def adapt_localizer(ctx: StepContext, dataset_dir: Path) -> tuple[Path, dict[str, Any]]:
    """``edge_geoloc.train.adaptation.adapt`` of the step-2 teacher on the unlabeled log dataset."""
    module = "edge_geoloc.train.adaptation"
    cfg = from_dict(require(module, "AdaptConfig", "adaptation"), {"seed": ctx.config.seed, **ctx.config.adaptation})
    teacher, _ = load_model(ctx.step(2) / LOCALIZER_CKPT, expected_kind="localizer")
    target = require(module, "open_target", "adaptation")(dataset_dir, teacher, cfg)
    result = require(module, "adapt", "adaptation")(teacher, target, cfg, ctx.step_dir / "adaptation")
    report = {k: v for k, v in result.report.items() if k not in ("config", "distance_histogram")}
    return ctx.step_dir / "adaptation" / "student.safetensors", report


def validate_localizers(ctx: StepContext, teacher_ckpt: Path, student_ckpt: Path) -> dict[str, Any]:
    """Teacher vs adapted metric error on a labelled target-area pair set (never seen by adaptation)."""
    module = "edge_geoloc.train.adaptation"
    area = load_area_role(ctx, "target")
    flight_condition = {"condition": ctx.config.flight.get("condition"), "random_conditions": 0}
    section = {**ctx.config.localizer_data, **ctx.config.eval_pairs, **flight_condition}  # seen as the flight sees
    eval_dir = drone_pairs(ctx, area, "localizer_target_eval", ctx.config.seed + EVAL_PAIRS_SEED_OFFSET, section)
    cfg = from_dict(require(module, "AdaptConfig", "adaptation"), {"seed": ctx.config.seed, **ctx.config.adaptation})
    models = {name: load_model(path, expected_kind="localizer")[0]
              for name, path in (("teacher", teacher_ckpt), ("adapted", student_ckpt))}
    return require(module, "validate", "adaptation")(models, eval_dir, cfg)

"""Replay a flight (camera frames + NMEA log, optionally ground truth) through the pipeline.

A flight folder (what ``edge_geoloc.sim.simulate_flight`` writes, and what a recorded flight is converted to)::

    frames/<index:06d>.jpg   camera frames
    gnss.nmea                NMEA 0183 log (GGA, RMC, GST...), read by :func:`edge_geoloc.sensors.read_nmea_file`
    frames.csv               optional: index,stamp_s of each frame (optionally heading_rad, altitude_agl_m)
    truth.csv                optional ground truth: stamp_s,lat_deg,lon_deg,... (one row per frame without
                             frames.csv)
    flight.json              optional: area dir, camera (``hfov_deg``), rates, events; ``gnss_time_offset_s`` is
                             added to NMEA stamps when the NMEA log is on another clock than the frames;
                             ``sensors.file`` names the per-frame heading / height measurements
    sensors.csv              optional (as declared): stamp_s,heading_rad,altitude_agl_m measured on board

Each frame's ``CameraFrame.heading_rad`` / ``altitude_agl_m`` come from those measurements (sensors file, else
``frames.csv`` columns), never from ``truth.csv``; the camera's field of view from ``flight.json`` fills
``camera.hfov_deg`` of the runtime config when that is unknown (:func:`with_flight_camera`).

Bad input costs the frame, not the flight: a frame listed (``frames.csv`` or the frame numbering) but
missing, a frame that does not decode, an unparseable row of ``sensors.csv`` / ``frames.csv`` and a frame
whose heading or height measurement is more than ``max_sensor_gap_s`` away are skipped and counted
(:class:`InputCounters`, reported under ``input`` in the replay's counters); garbage NMEA lines are rejected
and counted by the NMEA reader (``gnss_reader``). Only a folder that cannot be a flight at all (no frames, no
way to stamp them, unreadable ``flight.json``) raises :class:`FlightError`, whose message is one line.

Outputs: ``trajectory.csv`` (the demo's trajectory table, one row per frame), ``trajectory.geojson`` (truth,
GNSS, fused lines and visual fixes), ``errors.json`` (GNSS only / visual only / fused error statistics when
there is ground truth) and ``summary.json`` (counters, latency).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.replay_flight import (
    FlightData,
    FlightError,
    InputCounters,
    measured_attitude,
    read_flight,
    with_flight_camera,
)
from edge_geoloc.runtime.trajectory import (
    TrajectoryRow,
    error_stats,
    position_errors_m,
    read_trajectory,
    write_trajectory,
)
from edge_geoloc.types import CameraFrame, FusedState, GnssFix

log = logging.getLogger(__name__)

__all__ = ["FlightData", "FlightError", "InputCounters", "ReplayResult", "error_table", "format_error_table",
           "measured_attitude", "read_flight", "replay", "trajectory_geojson", "with_flight_camera", "write_outputs"]


@dataclass
class ReplayResult:
    rows: list[TrajectoryRow]
    counters: dict
    wall_s: float


def replay(pipeline: Pipeline, flight: FlightData, speed: float | None = None, max_frames: int | None = None,
           on_state: Callable[[int, CameraFrame, FusedState], None] | None = None,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
           max_sensor_gap_s: float = 1.0) -> ReplayResult:
    """Feed the flight through ``pipeline`` in stamp order, as fast as possible (``speed=None``) or paced at
    ``speed`` x real time; when paced and the pipeline falls behind, frames it could not reach in time are
    dropped (counted), as on board. A frame that does not decode is skipped and counted (its GNSS fixes are
    still fused); heading / height further than ``max_sensor_gap_s`` from a measurement are left unknown."""
    start, rows = clock(), []
    t0 = float(flight.frame_stamps_s[0])
    held: GnssFix | None = None
    gnss_iter = _gnss_between(flight.gnss)
    next(gnss_iter)
    for i, (stamp, path) in enumerate(zip(flight.frame_stamps_s, flight.frame_paths, strict=True)):
        if max_frames is not None and i >= max_frames:
            break
        fixes = gnss_iter.send(float(stamp))
        for fix in fixes[:-1]:
            pipeline.add_gnss(fix)
        held = fixes[-1] if fixes else held
        if speed is not None and not _keep_pace(clock() - start, (stamp - t0) / speed, sleep):
            pipeline.drop_frame()
            if fixes:
                pipeline.add_gnss(fixes[-1])
            continue
        frame = _load_frame(path, stamp, flight, i, max_sensor_gap_s)
        if frame is None:
            if fixes:
                pipeline.add_gnss(fixes[-1])
            continue
        state = pipeline.process(frame, fixes[-1] if fixes else None)
        rows.append(_row(flight, stamp, fixes[-1] if fixes else None, held, state))
        if on_state:
            on_state(i, frame, state)
    counters = {**asdict(pipeline.counters), "gnss_reader": flight.gnss_reader, "input": asdict(flight.input)}
    return ReplayResult(rows, counters, clock() - start)


def _keep_pace(elapsed_s: float, due_s: float, sleep: Callable[[float], None], late_s: float = 0.1) -> bool:
    """Wait until the frame is due; False when it is already more than ``late_s`` late (drop it)."""
    if elapsed_s < due_s:
        sleep(due_s - elapsed_s)
        return True
    return elapsed_s - due_s <= late_s


def _gnss_between(fixes: list[GnssFix]) -> Iterator[list[GnssFix]]:
    """Coroutine: send a frame stamp, receive the fixes with stamps up to it not yet handed out."""
    ordered = sorted(fixes, key=lambda f: f.stamp_s)
    j = 0
    batch: list[GnssFix] = []
    while True:
        stamp = yield batch
        batch = []
        while j < len(ordered) and ordered[j].stamp_s <= stamp:
            batch.append(ordered[j])
            j += 1


def _load_frame(path: Path, stamp: float, flight: FlightData, index: int,
                max_sensor_gap_s: float) -> CameraFrame | None:
    """The frame with its measured heading / height; None (logged, counted) when the file does not decode."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        flight.input.frames_corrupt += 1
        log.warning("skipping frame %s: cannot decode it as an image", path)
        return None
    heading, altitude = measured_attitude(flight, float(stamp), max_sensor_gap_s)
    height_measured = flight.meta.get("kind") != "car"  # a car measures no height above ground
    if flight.sensors is not None and (heading is None or (altitude is None and height_measured)):
        flight.input.sensor_gaps += 1
    return CameraFrame(float(stamp), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"frame_{index:06d}", heading, altitude)


def truth_latlon(flight: FlightData, stamp_s: float) -> tuple[float, float]:
    """The true position at ``stamp_s`` (linear in time between truth samples); NaN without a truth table."""
    if flight.truth is None:
        return math.nan, math.nan
    truth = flight.truth
    return (float(np.interp(stamp_s, truth["stamp_s"], truth["lat_deg"])),
            float(np.interp(stamp_s, truth["stamp_s"], truth["lon_deg"])))


def _row(flight: FlightData, stamp: float, gnss: GnssFix | None, held: GnssFix | None,
         state: FusedState) -> TrajectoryRow:
    truth_lat, truth_lon = truth_latlon(flight, stamp)
    fix = state.visual_fix
    return TrajectoryRow(
        stamp_s=float(stamp), truth_lat_deg=truth_lat, truth_lon_deg=truth_lon,
        gnss_lat_deg=gnss.lat_deg if gnss else None, gnss_lon_deg=gnss.lon_deg if gnss else None,
        gnss_held_lat_deg=held.lat_deg if held else None, gnss_held_lon_deg=held.lon_deg if held else None,
        fused_lat_deg=state.lat_deg if state.initialized else None,
        fused_lon_deg=state.lon_deg if state.initialized else None,
        fused_sigma_m=state.horizontal_sigma_m if state.initialized else None,
        gnss_used=int(state.gnss_used), visual_used=int(state.visual_used),
        visual_lat_deg=fix.lat_deg if fix else None, visual_lon_deg=fix.lon_deg if fix else None,
        visual_confidence=fix.confidence if fix else None, total_ms=state.latency.total_ms)


def error_table(trajectory_csv: str | Path, min_confidence: float) -> dict[str, dict[str, float]]:
    """Error statistics (m) against ground truth: GNSS only (latest fix held), visual only (fixes at or above
    ``min_confidence``), fused; ``coverage`` is the fraction of frames with an estimate."""
    table = read_trajectory(trajectory_csv)
    visual = position_errors_m(table, "visual")
    visual[~(table["visual_confidence"] >= min_confidence)] = math.nan
    return {"gnss_only": _stats(position_errors_m(table, "gnss_held")), "visual_only": _stats(visual),
            "fused": _stats(position_errors_m(table, "fused"))}


def _stats(errors: np.ndarray) -> dict[str, float]:
    stats = error_stats(errors)
    finite = errors[np.isfinite(errors)]
    stats["median_m"] = float(np.median(finite)) if finite.size else math.nan
    return stats


def format_error_table(errors: dict[str, dict[str, float]]) -> str:
    lines = [f"{'source':<12}{'mean_m':>9}{'median_m':>10}{'p95_m':>9}{'max_m':>9}{'coverage':>10}"]
    for name, s in errors.items():
        lines.append(f"{name:<12}{s['mean_m']:>9.2f}{s['median_m']:>10.2f}{s['p95_m']:>9.2f}{s['max_m']:>9.2f}"
                     f"{s['coverage']:>10.2f}")
    return "\n".join(lines)


def trajectory_geojson(rows: list[TrajectoryRow]) -> dict:
    """GeoJSON FeatureCollection: truth / GNSS / fused LineStrings and visual fixes as a MultiPoint."""
    def line(lat_key: str, lon_key: str) -> list[list[float]]:
        return [[getattr(r, lon_key), getattr(r, lat_key)] for r in rows
                if getattr(r, lat_key) is not None and math.isfinite(getattr(r, lat_key))]

    features = []
    for name, lat_key, lon_key in (("truth", "truth_lat_deg", "truth_lon_deg"),
                                   ("gnss", "gnss_lat_deg", "gnss_lon_deg"),
                                   ("fused", "fused_lat_deg", "fused_lon_deg")):
        coords = line(lat_key, lon_key)
        if len(coords) >= 2:
            features.append({"type": "Feature", "properties": {"name": name},
                             "geometry": {"type": "LineString", "coordinates": coords}})
    visual = line("visual_lat_deg", "visual_lon_deg")
    if visual:
        features.append({"type": "Feature", "properties": {"name": "visual_fixes"},
                         "geometry": {"type": "MultiPoint", "coordinates": visual}})
    return {"type": "FeatureCollection", "features": features}


def write_outputs(result: ReplayResult, out_dir: str | Path, min_confidence: float,
                  has_truth: bool) -> dict | None:
    """Write trajectory CSV + GeoJSON, summary.json and (with truth) errors.json; returns the error table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_trajectory(out / "trajectory.csv", result.rows)
    (out / "trajectory.geojson").write_text(json.dumps(trajectory_geojson(result.rows)), encoding="utf-8")
    errors = error_table(out / "trajectory.csv", min_confidence) if has_truth and result.rows else None
    if errors is not None:
        (out / "errors.json").write_text(json.dumps(errors, indent=2), encoding="utf-8")
    total = np.array([r.total_ms for r in result.rows if r.total_ms is not None])
    summary = {"frames": len(result.rows), "wall_s": result.wall_s, "counters": result.counters,
               "total_ms": {"mean": float(total.mean()), "p50": float(np.percentile(total, 50)),
                            "p90": float(np.percentile(total, 90)), "max": float(total.max())} if total.size else {}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return errors

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

Outputs: ``trajectory.csv`` (the demo's trajectory table, one row per frame), ``trajectory.geojson`` (truth,
GNSS, fused lines and visual fixes), ``errors.json`` (GNSS only / visual only / fused error statistics when
there is ground truth) and ``summary.json`` (counters, latency).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.runtime.config import RuntimeConfig
from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.trajectory import (
    TrajectoryRow,
    error_stats,
    position_errors_m,
    read_trajectory,
    write_trajectory,
)
from edge_geoloc.types import CameraFrame, FusedState, GnssFix

log = logging.getLogger(__name__)


class FlightError(ValueError):
    """A flight folder is missing something the replay needs."""


@dataclass(frozen=True)
class FlightData:
    """What the replay reads from a flight folder."""

    root: Path
    frame_paths: list[Path]
    frame_stamps_s: np.ndarray  # (F,)
    gnss: list[GnssFix]
    truth: dict[str, np.ndarray] | None  # columns of truth.csv as float arrays
    meta: dict
    gnss_reader: dict[str, int]  # the NMEA reader's counters (rejected_<reason>, fixes, lines...)
    sensors: dict[str, np.ndarray] | None = None  # on-board measurements: stamp_s, heading_rad, altitude_agl_m


def read_flight(flight_dir: str | Path) -> FlightData:
    """Read frames, NMEA fixes (bad sentences rejected and counted), stamps and truth of a flight folder."""
    from edge_geoloc.sensors import NmeaReader, read_nmea_file

    root = Path(flight_dir)
    frames = sorted((root / "frames").glob("*.jpg")) + sorted((root / "frames").glob("*.png"))
    if not frames:
        raise FlightError(f"{root}/frames has no .jpg/.png frames; is {root} a flight folder (see "
                          "`edge-geoloc sim flight`)?")
    meta = json.loads((root / "flight.json").read_text(encoding="utf-8")) if (root / "flight.json").is_file() else {}
    truth = _read_csv_columns(root / "truth.csv") if (root / "truth.csv").is_file() else None
    stamps = _frame_stamps(root, len(frames), truth, meta)
    reader = NmeaReader()
    gnss = list(read_nmea_file(root / "gnss.nmea", reader=reader)) if (root / "gnss.nmea").is_file() else []
    offset = float(meta.get("gnss_time_offset_s", 0.0))
    if offset:
        gnss = [_shift(fix, offset) for fix in gnss]
    return FlightData(root, frames, stamps, gnss, truth, meta, reader.counters.as_dict(), _read_sensors(root, meta))


def _read_sensors(root: Path, meta: dict) -> dict[str, np.ndarray] | None:
    """Heading / height measurements: the file ``flight.json`` declares (``sensors.file``), else the optional
    columns of ``frames.csv``; None when the flight has neither."""
    declared = meta.get("sensors", {}).get("file")
    if declared:
        if not (root / declared).is_file():
            raise FlightError(f"{root}/flight.json declares sensors file {declared!r}, which is missing")
        return _read_csv_columns(root / declared)
    if (root / "frames.csv").is_file():
        columns = _read_csv_columns(root / "frames.csv")
        if "heading_rad" in columns or "altitude_agl_m" in columns:
            return columns
    return None


def with_flight_camera(cfg: RuntimeConfig, flight: FlightData) -> RuntimeConfig:
    """``cfg`` with ``camera.hfov_deg`` from ``flight.json`` when the config leaves it unknown (0)."""
    hfov = float(flight.meta.get("camera", {}).get("hfov_deg") or 0.0)
    if not hfov or cfg.camera.hfov_deg:
        if hfov and abs(hfov - cfg.camera.hfov_deg) > 1e-6:
            log.warning("camera.hfov_deg=%.2f from the config, flight.json says %.2f", cfg.camera.hfov_deg, hfov)
        return cfg
    return replace(cfg, camera=replace(cfg.camera, hfov_deg=hfov))


def _shift(fix: GnssFix, offset_s: float) -> GnssFix:
    return replace(fix, stamp_s=fix.stamp_s + offset_s)


def _read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise FlightError(f"{path} has no rows")
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else math.nan for r in rows]) for k in rows[0]}


def _frame_stamps(root: Path, count: int, truth: dict[str, np.ndarray] | None, meta: dict) -> np.ndarray:
    if (root / "frames.csv").is_file():
        stamps = _read_csv_columns(root / "frames.csv")["stamp_s"]
    elif truth is not None and len(truth["stamp_s"]) == count:
        stamps = truth["stamp_s"]
    elif "camera_rate_hz" in meta:
        stamps = np.arange(count) / float(meta["camera_rate_hz"])
    else:
        raise FlightError(f"{root}: cannot tell when frames were taken; add frames.csv (index,stamp_s)")
    if len(stamps) != count or np.any(np.diff(stamps) < 0):
        raise FlightError(f"{root}: {len(stamps)} frame stamps for {count} frames, or stamps not increasing")
    return np.asarray(stamps, dtype=np.float64)


@dataclass
class ReplayResult:
    rows: list[TrajectoryRow]
    counters: dict
    wall_s: float


def replay(pipeline: Pipeline, flight: FlightData, speed: float | None = None, max_frames: int | None = None,
           on_state: Callable[[int, CameraFrame, FusedState], None] | None = None,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
           ) -> ReplayResult:
    """Feed the flight through ``pipeline`` in stamp order, as fast as possible (``speed=None``) or paced at
    ``speed`` x real time; when paced and the pipeline falls behind, frames it could not reach in time are
    dropped (counted), as on board."""
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
        frame = _load_frame(path, stamp, flight, i)
        state = pipeline.process(frame, fixes[-1] if fixes else None)
        rows.append(_row(flight, stamp, fixes[-1] if fixes else None, held, state))
        if on_state:
            on_state(i, frame, state)
    counters = {**asdict(pipeline.counters), "gnss_reader": flight.gnss_reader}
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


def _load_frame(path: Path, stamp: float, flight: FlightData, index: int) -> CameraFrame:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FlightError(f"cannot decode frame {path}")
    heading, altitude = measured_attitude(flight, float(stamp))
    return CameraFrame(float(stamp), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"frame_{index:06d}", heading, altitude)


def measured_attitude(flight: FlightData, stamp_s: float) -> tuple[float | None, float | None]:
    """(heading_rad, altitude_agl_m) measured on board at ``stamp_s`` (interpolated; heading across the
    0/2 pi wrap); None where the flight has no such measurement (then the pipeline counts a missing sensor)."""
    sensors = flight.sensors
    if sensors is None:
        return None, None
    stamps = sensors.get("stamp_s", flight.frame_stamps_s)
    heading = _interp(stamp_s, stamps, sensors.get("heading_rad"), wrap=True)
    return heading, _interp(stamp_s, stamps, sensors.get("altitude_agl_m"))


def _interp(stamp_s: float, stamps: np.ndarray, values: np.ndarray | None, wrap: bool = False) -> float | None:
    """Linear interpolation at ``stamp_s``; None next to a missing (NaN) measurement."""
    if values is None:
        return None
    values = np.array(values, dtype=np.float64)
    ok = np.isfinite(values)
    if wrap and ok.any():
        values[ok] = np.unwrap(values[ok])
    out = float(np.interp(stamp_s, stamps, values))
    if not math.isfinite(out):
        return None
    return out % (2 * math.pi) if wrap else out


def _row(flight: FlightData, stamp: float, gnss: GnssFix | None, held: GnssFix | None,
         state: FusedState) -> TrajectoryRow:
    truth_lat = truth_lon = math.nan
    if flight.truth is not None:
        truth_lat = float(np.interp(stamp, flight.truth["stamp_s"], flight.truth["lat_deg"]))
        truth_lon = float(np.interp(stamp, flight.truth["stamp_s"], flight.truth["lon_deg"]))
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

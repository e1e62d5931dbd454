"""Fly a simulated flight through the on-board runtime, write its trajectory table, and log field data.

The flight folder is the sim's (``frames/<index>.jpg``, ``gnss.nmea``, ``truth.csv``, ``flight.json``); the
GNSS stream is decoded from the NMEA log by ``edge_geoloc.sensors`` exactly as on board, each camera frame goes
through ``Pipeline.process`` with the newest fix received since the previous frame, and the field logger
records what a real vehicle would (frames, raw fixes, fused output, heading, the map patch around the coarse
position). The table written per frame is :mod:`edge_geoloc.demo.trajectory`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from edge_geoloc.demo.components import require
from edge_geoloc.demo.trajectory import TrajectoryRow, write_trajectory
from edge_geoloc.types import CameraFrame, FusedState, GnssFix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlightData:
    """A sim flight read from its folder: frame paths, ground truth per frame, decoded GNSS fixes, outages."""

    frames: list[Path]
    truth: dict[str, np.ndarray]  # truth.csv columns
    fixes: list[GnssFix]
    outages_s: list[tuple[float, float]]
    meta: dict[str, Any]


def read_truth_csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows; the flight folder is incomplete, simulate it again")
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def read_flight(flight_dir: Path) -> FlightData:
    """Frames, truth, GNSS fixes (decoded with ``edge_geoloc.sensors.reader.read_nmea_file``) and outages."""
    read_nmea_file = require("edge_geoloc.sensors.reader", "read_nmea_file", "GNSS (sensors)")
    frames = sorted((flight_dir / "frames").glob("*.jpg"))
    truth = read_truth_csv(flight_dir / "truth.csv")
    if len(frames) != len(truth["stamp_s"]):
        raise ValueError(f"{flight_dir}: {len(frames)} frames but {len(truth['stamp_s'])} truth rows; "
                         "simulate the flight again")
    meta = json.loads((flight_dir / "flight.json").read_text(encoding="utf-8"))
    fixes = sorted(read_nmea_file(flight_dir / "gnss.nmea"), key=lambda f: f.stamp_s)
    return FlightData(frames, truth, fixes, outage_intervals(meta), meta)


def outage_intervals(meta: dict[str, Any]) -> list[tuple[float, float]]:
    """``[start_s, end_s)`` of every GNSS outage event recorded in ``flight.json``."""
    events = meta.get("events", [])
    return [(float(e["start_s"]), float(e["end_s"])) for e in events if e.get("kind", e.get("type")) == "outage"]


def load_pipeline(retrieval_onnx: Path, localizer_onnx: Path, index_dir: Path, runtime_cfg: Any) -> Any:
    pipeline_cls = require("edge_geoloc.runtime.pipeline", "Pipeline", "runtime (pipeline)")
    return pipeline_cls.from_config(retrieval_onnx, localizer_onnx, index_dir, runtime_cfg)


class FixFeed:
    """Hands out, per camera frame, the newest GNSS fix received since the previous frame."""

    def __init__(self, fixes: list[GnssFix]) -> None:
        self.fixes, self.next, self.held, self.skipped = fixes, 0, None, 0

    def until(self, stamp_s: float) -> GnssFix | None:
        new = []
        while self.next < len(self.fixes) and self.fixes[self.next].stamp_s <= stamp_s:
            new.append(self.fixes[self.next])
            self.next += 1
        self.skipped += max(len(new) - 1, 0)
        if new:
            self.held = new[-1]
        return new[-1] if new else None


def fly(flight: FlightData, pipeline: Any, out_csv: Path, logger: Any = None,
        patch: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every frame through ``pipeline``; write the trajectory CSV; return counters and rates."""
    feed, rows, prior = FixFeed(flight.fixes), [], None
    for i, path in enumerate(tqdm(flight.frames, desc=f"fly {out_csv.stem}", unit="frame")):
        frame = _camera_frame(flight, i, path)
        fix = feed.until(frame.stamp_s)
        state = pipeline.process(frame, fix)
        rows.append(_row(flight, i, fix, feed.held, state))
        if logger is not None:
            _log(logger, frame, fix, state, prior or feed.held, patch)
        prior = state if state.initialized else prior
    write_trajectory(out_csv, rows)
    return {"frames": len(rows), "gnss_fixes": len(flight.fixes), "gnss_fixes_skipped": feed.skipped,
            "counters": _counters(pipeline)}


def _camera_frame(flight: FlightData, i: int, path: Path) -> CameraFrame:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read camera frame {path}; the flight folder is corrupt, simulate it again")
    truth = flight.truth
    return CameraFrame(float(truth["stamp_s"][i]), np.ascontiguousarray(image[:, :, ::-1]),
                       heading_rad=float(truth["heading_rad"][i]), altitude_agl_m=float(truth["alt_agl_m"][i]))


def _opt(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _row(flight: FlightData, i: int, fix: GnssFix | None, held: GnssFix | None, state: FusedState) -> TrajectoryRow:
    t, vf = flight.truth, state.visual_fix
    return TrajectoryRow(
        stamp_s=float(t["stamp_s"][i]), truth_lat_deg=float(t["lat_deg"][i]), truth_lon_deg=float(t["lon_deg"][i]),
        gnss_lat_deg=fix.lat_deg if fix else None, gnss_lon_deg=fix.lon_deg if fix else None,
        gnss_held_lat_deg=held.lat_deg if held else None, gnss_held_lon_deg=held.lon_deg if held else None,
        fused_lat_deg=_opt(state.lat_deg) if state.initialized else None,
        fused_lon_deg=_opt(state.lon_deg) if state.initialized else None,
        fused_sigma_m=_opt(state.horizontal_sigma_m) if state.initialized else None,
        gnss_used=int(state.gnss_used), visual_used=int(state.visual_used),
        visual_lat_deg=vf.lat_deg if vf else None, visual_lon_deg=vf.lon_deg if vf else None,
        visual_confidence=vf.confidence if vf else None, total_ms=float(state.latency.total_ms))


def _log(logger: Any, frame: CameraFrame, fix: GnssFix | None, state: FusedState, coarse: Any,
         patch: dict[str, Any] | None) -> None:
    """Field data of one frame; the map patch is cut around the coarse position known *before* this frame."""
    logger.log_frame(frame)
    if fix is not None:
        logger.log_gnss(fix)
    if state.initialized:
        logger.log_fused(state)
    if frame.heading_rad is not None:
        logger.log_heading(frame.stamp_s, frame.heading_rad)
    if patch is not None and coarse is not None:
        logger.log_patch_ref(frame.stamp_s, patch["raster"], coarse.lat_deg, coarse.lon_deg, patch["size_m"],
                             patch["px"])


def _counters(pipeline: Any) -> dict[str, int]:
    counters = pipeline.counters
    out = {k: int(v) for k, v in vars(counters).items() if isinstance(v, int)}
    out.update({f"extra_{k}": int(v) for k, v in getattr(counters, "extra", {}).items()})
    return out

"""Fly a simulated flight through the on-board runtime while the field logger records it.

The replay itself is the runtime's (``edge_geoloc.runtime.replay``: NMEA decoded as on board, every camera
frame through ``Pipeline.process``, trajectory table and error table written by ``write_outputs``). The demo
adds a progress bar and, through the replay's per-frame callback, the field logger: the frame's JPEG bytes,
the GNSS fixes received since the previous frame, the fused output, the heading and height above ground
measured on board when the flight records them (``sensors.csv``, never the truth), the camera intrinsics of
``flight.json`` (once, as ``/camera/camera_info``), and the map patch around the coarse position known
*before* the frame (previous fused estimate, else the last GNSS fix) -- exactly what a vehicle
logs for later adaptation.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge_geoloc.demo.components import require
from edge_geoloc.interop.camera_info import flight_intrinsics
from edge_geoloc.types import FusedState, GnssFix

log = logging.getLogger(__name__)

REPLAY = "edge_geoloc.runtime.replay"


def read_flight(flight_dir: Path) -> Any:
    """The runtime's ``FlightData`` of a flight folder."""
    return require(REPLAY, "read_flight", "runtime (replay)")(flight_dir)


def outage_intervals(meta: dict[str, Any]) -> list[tuple[float, float]]:
    """``[start_s, end_s)`` of every GNSS outage event recorded in ``flight.json``."""
    events = meta.get("events", [])
    return [(float(e["start_s"]), float(e["end_s"])) for e in events
            if "outage" in str(e.get("kind", e.get("type", "")))]


def load_pipeline(retrieval_onnx: Path, localizer_onnx: Path, index_dir: Path, runtime_cfg: Any,
                  flight: Any = None) -> Any:
    """``Pipeline.from_config`` over the exported models and the tile index (camera field of view from
    ``flight`` when given and the config leaves it unknown)."""
    pipeline_cls = require("edge_geoloc.runtime.pipeline", "Pipeline", "runtime (pipeline)")
    if flight is not None:
        runtime_cfg = require(REPLAY, "with_flight_camera", "runtime (replay)")(runtime_cfg, flight)
    return pipeline_cls.from_config(retrieval_onnx, localizer_onnx, index_dir, runtime_cfg)


class FieldLogTap:
    """The replay's ``on_state`` callback: logs what the vehicle saw at each frame and ticks the progress bar."""

    def __init__(self, flight: Any, logger: Any, patch: dict[str, Any] | None, bar: Any) -> None:
        self.flight, self.logger, self.patch, self.bar = flight, logger, patch, bar
        self.gnss = sorted(flight.gnss, key=lambda f: f.stamp_s)
        self.next_fix, self.held, self.prior = 0, None, None
        self.measured_attitude = require(REPLAY, "measured_attitude", "runtime (replay)")
        self.intrinsics = flight_intrinsics(flight.meta)
        if logger is not None and self.intrinsics is None:
            log.warning("flight.json has no camera size and field of view: the field log gets no camera info")

    def __call__(self, index: int, state: FusedState) -> None:
        self.bar.update(1)
        if self.logger is not None:
            self._log(index, state)
        self.prior = state if state.initialized else self.prior

    def _log(self, index: int, state: FusedState) -> None:
        stamp = float(self.flight.frame_stamps_s[index])
        coarse = self.prior or self.held  # what the vehicle believed before this frame
        for fix in self._fixes_until(stamp):
            self.logger.log_gnss(fix)
        if self.intrinsics is not None:
            self.logger.log_camera_info(stamp, self.intrinsics)  # written once (and again if it changed)
        self.logger.log_jpeg(stamp, self.flight.frame_paths[index].read_bytes())
        if state.initialized:
            self.logger.log_fused(state)
        heading, altitude_agl_m = self.measured_attitude(self.flight, stamp)  # the replay's CameraFrame values
        if heading is not None:
            self.logger.log_heading(stamp, heading)
        if altitude_agl_m is not None:
            self.logger.log_altitude_agl(stamp, altitude_agl_m)
        if self.patch is not None and coarse is not None and math.isfinite(coarse.lat_deg):
            self.logger.log_patch_ref(stamp, self.patch["raster"], coarse.lat_deg, coarse.lon_deg,
                                      self.patch["size_m"], self.patch["px"])

    def _fixes_until(self, stamp_s: float) -> list[GnssFix]:
        new = []
        while self.next_fix < len(self.gnss) and self.gnss[self.next_fix].stamp_s <= stamp_s:
            new.append(self.gnss[self.next_fix])
            self.next_fix += 1
        self.held = new[-1] if new else self.held
        return new


def fly(flight: Any, pipeline: Any, out_dir: Path, min_confidence: float, logger: Any = None,
        patch: dict[str, Any] | None = None) -> dict[str, Any]:
    """Replay ``flight`` through ``pipeline`` (as fast as possible) into ``out_dir``; returns what it measured."""
    replay = require(REPLAY, "replay", "runtime (replay)")
    write_outputs = require(REPLAY, "write_outputs", "runtime (replay)")
    with tqdm(total=len(flight.frame_paths), desc=f"fly ({out_dir.name})", unit="frame") as bar:
        result = replay(pipeline, flight, on_state=FieldLogTap(flight, logger, patch, bar))
    errors = write_outputs(result, out_dir, min_confidence, flight.truth is not None)
    total = np.array([r.total_ms for r in result.rows if r.total_ms is not None], dtype=np.float64)
    return {"frames": len(result.rows), "wall_s": round(result.wall_s, 3),
            "end_to_end_hz": len(result.rows) / result.wall_s if result.wall_s > 0 else math.nan,
            "pipeline_mean_ms": float(total.mean()) if total.size else math.nan,
            "counters": _plain(result.counters), "errors": errors or {}}


def _plain(counters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in counters.items() if isinstance(v, (int, float, dict))}

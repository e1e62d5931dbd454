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

from edge_geoloc.demo.hypotheses import HypothesisTap, snapshot_stamps
from edge_geoloc.fieldlog.logger import FieldLogger
from edge_geoloc.fieldlog.step import MapPatchSpec, StepRecorder
from edge_geoloc.interop.camera_info import flight_intrinsics
from edge_geoloc.runtime.config import RuntimeConfig
from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.replay import FlightData, read_flight, replay, with_flight_camera, write_outputs
from edge_geoloc.types import CameraFrame, FusedState, GnssFix

log = logging.getLogger(__name__)

HYPOTHESES_NAME = "hypotheses.npz"

__all__ = ["FieldLogTap", "fly", "load_pipeline", "outage_intervals", "read_flight"]


def outage_intervals(meta: dict[str, Any]) -> list[tuple[float, float]]:
    """``[start_s, end_s)`` of every GNSS outage event recorded in ``flight.json``."""
    events = meta.get("events", [])
    return [(float(e["start_s"]), float(e["end_s"])) for e in events
            if "outage" in str(e.get("kind", e.get("type", "")))]


def load_pipeline(retrieval_onnx: Path, localizer_onnx: Path, index_dir: Path, runtime_cfg: RuntimeConfig,
                  flight: FlightData | None = None) -> Pipeline:
    """``Pipeline.from_config`` over the exported models and the tile index (camera field of view from
    ``flight`` when given and the config leaves it unknown)."""
    if flight is not None:
        runtime_cfg = with_flight_camera(runtime_cfg, flight)
    return Pipeline.from_config(retrieval_onnx, localizer_onnx, index_dir, runtime_cfg)


class FieldLogTap:
    """The replay's ``on_state`` callback: ticks the progress bar and, with a logger, writes the GNSS fixes
    received since the previous frame and the frame's record exactly as a vehicle does
    (:class:`edge_geoloc.fieldlog.step.StepRecorder`), with the frame's JPEG bytes as the camera wrote them."""

    def __init__(self, flight: FlightData, logger: FieldLogger | None, patch: MapPatchSpec | None, bar: Any) -> None:
        self.flight, self.bar = flight, bar
        self.gnss = sorted(flight.gnss, key=lambda f: f.stamp_s)
        self.next_fix = 0
        intrinsics = flight_intrinsics(flight.meta)
        if logger is not None and intrinsics is None:
            log.warning("flight.json has no camera size and field of view: the field log gets no camera info")
        self.recorder = None if logger is None else StepRecorder(logger, intrinsics, patch=patch)

    def __call__(self, index: int, frame: CameraFrame, state: FusedState) -> None:
        self.bar.update(1)
        if self.recorder is None:
            return
        for fix in self._fixes_until(frame.stamp_s):
            self.recorder.on_gnss(fix)
        self.recorder.log_step(frame, state, jpeg=self.flight.frame_paths[index].read_bytes())

    def _fixes_until(self, stamp_s: float) -> list[GnssFix]:
        new = []
        while self.next_fix < len(self.gnss) and self.gnss[self.next_fix].stamp_s <= stamp_s:
            new.append(self.gnss[self.next_fix])
            self.next_fix += 1
        return new


def fly(flight: FlightData, pipeline: Pipeline, out_dir: Path, min_confidence: float,
        logger: FieldLogger | None = None, patch: MapPatchSpec | None = None) -> dict[str, Any]:
    """Replay ``flight`` through ``pipeline`` (as fast as possible) into ``out_dir``; returns what it measured.
    With particle fusion, the hypotheses around the longest GNSS outage go to ``out_dir/hypotheses.npz``."""
    hypotheses = HypothesisTap(pipeline, flight, snapshot_stamps(outage_intervals(flight.meta)))
    with tqdm(total=len(flight.frame_paths), desc=f"fly ({out_dir.name})", unit="frame") as bar:
        field_log = FieldLogTap(flight, logger, patch, bar)
        result = replay(pipeline, flight, on_state=lambda i, frame, state: (field_log(i, frame, state),
                                                                             hypotheses(i, frame, state)))
    errors = write_outputs(result, out_dir, min_confidence, flight.truth is not None)
    hypotheses.save(out_dir / HYPOTHESES_NAME)
    total = np.array([r.total_ms for r in result.rows if r.total_ms is not None], dtype=np.float64)
    return {"frames": len(result.rows), "wall_s": round(result.wall_s, 3),
            "end_to_end_hz": len(result.rows) / result.wall_s if result.wall_s > 0 else math.nan,
            "pipeline_mean_ms": float(total.mean()) if total.size else math.nan,
            "counters": _plain(result.counters), "errors": errors or {}}


def _plain(counters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in counters.items() if isinstance(v, (int, float, dict))}

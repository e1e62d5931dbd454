"""The particle filter's hypotheses at a few moments of the demo flight, and how fast it relocalized.

:class:`HypothesisTap` rides along the replay (its per-frame callback) and keeps, at the first frame at or after
each requested stamp, every particle (lat/lon and weight), the published estimate and the truth: the report
draws them over the orthophoto (``hypotheses.png``). The moments bracket the flight's longest GNSS outage:
just before it (the prior a multipath jump may have drifted), inside it, and just after.
:func:`relocalization_figures` measures, from the trajectory table, the benchmark's success rule: a published
fused estimate under ``correct_m`` within ``success_frames`` frames of the outage start (and the time to it); the
trajectory table does not record ambiguity, so this counts ambiguous estimates too (the benchmark does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.fusion import ParticleFilter
from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.replay import FlightData, truth_latlon
from edge_geoloc.runtime.trajectory import position_errors_m
from edge_geoloc.types import CameraFrame, FusedState


def snapshot_stamps(outages_s: Sequence[tuple[float, float]], count: int = 4) -> list[float]:
    """``count`` stamps around the longest outage: 2 s before it, evenly inside it, and 2 s after it."""
    if not outages_s or count < 2:
        return []
    start, end = max(outages_s, key=lambda o: o[1] - o[0])
    inside = np.linspace(start, end, count, endpoint=False)[1:count - 1] if count > 2 else []
    return [start - 2.0, *map(float, inside), end + 2.0]


class HypothesisTap:
    """Replay callback: the particles at the first frame at or after each of ``stamps_s`` (see the module doc)."""

    def __init__(self, pipeline: Pipeline, flight: FlightData, stamps_s: Sequence[float]) -> None:
        self.pipeline, self.flight = pipeline, flight
        self.pending = sorted(stamps_s)
        self.snapshots: list[dict[str, np.ndarray]] = []

    def __call__(self, index: int, frame: CameraFrame, state: FusedState) -> None:
        fusion = self.pipeline.fusion
        if not self.pending or frame.stamp_s < self.pending[0]:
            return
        while self.pending and frame.stamp_s >= self.pending[0]:
            self.pending.pop(0)
        if isinstance(fusion, ParticleFilter) and fusion.initialized:
            lat, lon, _ = fusion.origin.from_enu(fusion.particles[:, 0], fusion.particles[:, 1], 0.0)
            self.snapshots.append({"stamp_s": np.float64(frame.stamp_s), "particles_latlon": np.stack([lat, lon], 1),
                                   "weights": fusion.weights.copy(), "truth_latlon": np.array(
                                       truth_latlon(self.flight, frame.stamp_s)),
                                   "fused_latlon": np.array([state.lat_deg, state.lon_deg]),
                                   "ambiguous": np.bool_(state.ambiguous)})

    def save(self, path: Path) -> Path | None:
        """``hypotheses.npz`` (arrays ``<key>_<k>`` per snapshot), or None when the filter kept no particles."""
        if not self.snapshots:
            return None
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, count=len(self.snapshots),
                            **{f"{key}_{k}": v for k, snap in enumerate(self.snapshots) for key, v in snap.items()})
        return path


def load_snapshots(path: Path) -> list[dict[str, np.ndarray]]:
    with np.load(path) as data:
        keys = ("stamp_s", "particles_latlon", "weights", "truth_latlon", "fused_latlon", "ambiguous")
        return [{key: data[f"{key}_{k}"] for key in keys} for k in range(int(data["count"]))]


def relocalization_figures(table: dict[str, np.ndarray], outages_s: Sequence[tuple[float, float]],
                           correct_m: float = 10.0, success_frames: int = 10) -> dict[str, Any]:
    """Success (a fused estimate under ``correct_m`` within ``success_frames`` frames of the longest outage's
    start), the time to that first correct fix, the share of outage frames with an estimate, and their p95."""
    if not outages_s:
        return {}
    start, end = max(outages_s, key=lambda o: o[1] - o[0])
    stamps = table["stamp_s"]
    error = position_errors_m(table, "fused")
    published = np.isfinite(error)  # the trajectory table records every fused estimate (ambiguous ones too)
    first = int(np.searchsorted(stamps, start))
    correct = np.flatnonzero((published & (error < correct_m))[first:])
    inside = (stamps >= start) & (stamps < end)
    return {"outage_s": [float(start), float(end)], "correct_m": correct_m, "success_frames": success_frames,
            "success": bool(correct.size and correct[0] < success_frames),
            "ttff_s": float(stamps[first + correct[0]] - stamps[first]) if correct.size else None,
            "outage_estimated_share": float(published[inside].mean()) if inside.any() else None,
            "outage_p95_m": float(np.nanpercentile(error[inside & published], 95))
            if (inside & published).any() else None}

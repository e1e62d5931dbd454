"""The flight trajectory table the demo writes and the report reads: one row per camera frame.

Columns (lat/lon in degrees WGS84, empty cell = not available at that frame):
``stamp_s, truth_lat_deg, truth_lon_deg, gnss_lat_deg, gnss_lon_deg, gnss_held_lat_deg, gnss_held_lon_deg,
fused_lat_deg, fused_lon_deg, fused_sigma_m, gnss_used, visual_used, visual_lat_deg, visual_lon_deg,
visual_confidence, total_ms``.
``gnss_held_*`` is the "GNSS only" baseline: the latest GNSS fix received so far (what a receiver alone reports,
so it goes stale during an outage). Errors are great-circle distances (haversine) to the truth, so anyone can
recompute them from the CSV alone.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from edge_geoloc.geo import haversine_m


@dataclass
class TrajectoryRow:
    stamp_s: float
    truth_lat_deg: float
    truth_lon_deg: float
    gnss_lat_deg: float | None = None
    gnss_lon_deg: float | None = None
    gnss_held_lat_deg: float | None = None
    gnss_held_lon_deg: float | None = None
    fused_lat_deg: float | None = None
    fused_lon_deg: float | None = None
    fused_sigma_m: float | None = None
    gnss_used: int = 0
    visual_used: int = 0
    visual_lat_deg: float | None = None
    visual_lon_deg: float | None = None
    visual_confidence: float | None = None
    total_ms: float | None = None


COLUMNS = tuple(f.name for f in fields(TrajectoryRow))


def write_trajectory(path: str | Path, rows: Iterable[TrajectoryRow]) -> Path:
    """Write rows as CSV with full float precision (``repr``), empty cells for ``None``."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(["" if getattr(row, c) is None else repr(getattr(row, c)) for c in COLUMNS])
    return path


def read_trajectory(path: str | Path) -> dict[str, np.ndarray]:
    """Columns as float arrays (NaN where a cell is empty)."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} is not a demo trajectory: missing columns {sorted(missing)}")
        rows = list(reader)
    return {c: np.array([float(r[c]) if r[c] != "" else math.nan for r in rows], dtype=np.float64) for c in COLUMNS}


def position_errors_m(table: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """Haversine distance (m) from ``<prefix>_lat/lon_deg`` to the truth, NaN where there is no estimate."""
    return np.asarray(haversine_m(table["truth_lat_deg"], table["truth_lon_deg"],
                                  table[f"{prefix}_lat_deg"], table[f"{prefix}_lon_deg"]), dtype=np.float64)


def error_stats(errors_m: Sequence[float] | np.ndarray) -> dict[str, float]:
    """``mean_m``, ``p95_m``, ``max_m`` over the finite errors, ``n`` and ``coverage`` (finite fraction)."""
    errors = np.asarray(errors_m, dtype=np.float64)
    finite = errors[np.isfinite(errors)]
    if finite.size == 0:
        return {"mean_m": math.nan, "p95_m": math.nan, "max_m": math.nan, "n": 0, "coverage": 0.0}
    return {"mean_m": float(finite.mean()), "p95_m": float(np.percentile(finite, 95)), "max_m": float(finite.max()),
            "n": int(finite.size), "coverage": float(finite.size / max(errors.size, 1))}


def trajectory_error_summary(path: str | Path) -> dict[str, dict[str, float]]:
    """Error statistics of the GNSS-only baseline, the fused output and the visual fixes of one flight."""
    table = read_trajectory(path)
    return {name: error_stats(position_errors_m(table, prefix))
            for name, prefix in (("gnss_only", "gnss_held"), ("fused", "fused"), ("visual", "visual"))}

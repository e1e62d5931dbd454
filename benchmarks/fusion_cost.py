"""Particle filter or grid filter? CPU cost of one frame's update of each, on the same heat-map input.

The particle filter (``edge_geoloc.fusion.ParticleFilter``): predict + six 64x64 heat maps (top-5 tiles and the
patch around the belief) + a GNSS fix + the mode summary, for 500 / 1500 / 3000 particles. The grid
alternative (OrienterNet-style accumulation of log-probability volumes, without heading): a raster over the
whole map at the heat maps' resolution; predict = shift by the velocity and blur by the motion noise
(``cv2.GaussianBlur``), measurement = each heat map warped into the map raster (``cv2.warpAffine``) and mixed
with the background, then normalised. Maps of 400 m (the benchmark areas) and 2 km (a small real mission).

    python benchmarks/fusion_cost.py      # JSON: benchmarks/results/fusion_cost.json (about 1 minute)
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.fusion import FusionConfig, HeatmapMeasurement, ParticleConfig, ParticleFilter
from edge_geoloc.geo import EnuFrame
from edge_geoloc.types import CovarianceType, GnssFix, diagonal_covariance

ORIGIN = EnuFrame(52.0, 4.36, 0.0)
FRAMES, PATCH_PX, PATCH_M = 40, 64, 64.0


def frame_heatmaps(rng: np.random.Generator, k: int, truth: np.ndarray) -> list[HeatmapMeasurement]:
    maps = []
    for j in range(6):
        centre = truth + (rng.uniform(-20, 20, 2) if j == 0 else rng.uniform(-150, 150, 2))
        p = rng.random((PATCH_PX, PATCH_PX)) ** 8
        s = PATCH_PX / PATCH_M  # pixels per metre, north-up
        A = np.array([[0.0, -s, s * (centre[1] + PATCH_M / 2)], [s, 0.0, s * (PATCH_M / 2 - centre[0])]])
        maps.append(HeatmapMeasurement(p / p.sum(), A, j > 0))
    return maps


def time_particles(n: int) -> float:
    rng = np.random.default_rng(0)
    filt = ParticleFilter(FusionConfig(mode="particle", particle=ParticleConfig(num_particles=n)), ORIGIN)
    inputs = [(frame_heatmaps(rng, k, np.array([8.0 * k, 0.0])), 8.0 * k) for k in range(FRAMES)]
    t0 = time.process_time()
    for k, (maps, east) in enumerate(inputs):
        lat, lon, alt = ORIGIN.from_enu(east, 0.0, 50.0)
        filt.set_heading(float(k), math.pi / 2)
        filt.update_gnss(GnssFix(float(k), lat, lon, alt, diagonal_covariance(2.0, 2.0, 4.0),
                                 CovarianceType.DIAGONAL_KNOWN))
        filt.update_heatmaps(float(k) + 0.01, maps)
        _ = filt.state
    return (time.process_time() - t0) * 1e3 / FRAMES


def time_grid(map_m: float, cell_m: float) -> float:
    rng = np.random.default_rng(0)
    size = int(map_m / cell_m)
    belief = np.full((size, size), 1.0 / size**2, np.float32)
    inputs = [frame_heatmaps(rng, k, np.zeros(2)) for k in range(FRAMES)]
    t0 = time.process_time()
    for maps in inputs:
        M = np.float32([[1, 0, 8.0 / cell_m], [0, 1, 0]])  # shift by one second of motion
        belief = cv2.warpAffine(belief, M, (size, size))
        belief = cv2.GaussianBlur(belief, (0, 0), 1.0 / cell_m)
        likelihood = np.full_like(belief, 0.5)
        for m in maps:
            to_map = np.float32([[PATCH_M / PATCH_PX / cell_m, 0, rng.uniform(0, size - 64)],
                                 [0, PATCH_M / PATCH_PX / cell_m, rng.uniform(0, size - 64)]])
            likelihood += (0.5 / 6) * cv2.warpAffine((m.probability * m.probability.size).astype(np.float32),
                                                     to_map, (size, size))
        belief *= likelihood
        belief /= belief.sum()
        _ = np.unravel_index(np.argmax(belief), belief.shape)
    return (time.process_time() - t0) * 1e3 / FRAMES


def main() -> int:
    t0 = time.monotonic()
    particles = {str(n): round(time_particles(n), 2) for n in (500, 1500, 3000)}
    grid = {f"{int(m)}m_map_{c}m_cells": round(time_grid(m, c), 2) for m, c in ((400.0, 1.0), (2000.0, 1.0),
                                                                                   (2000.0, 2.0))}
    result = {"benchmark": "fusion_cost", "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "frames": FRAMES, "heatmaps_per_frame": 6, "cpu_ms_per_frame_particles": particles,
              "cpu_ms_per_frame_grid": grid, "wall_s": round(time.monotonic() - t0, 1)}
    out = Path("benchmarks/results/fusion_cost.json")
    atomic_write_json(out, json.loads(json.dumps(result)))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

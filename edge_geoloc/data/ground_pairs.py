"""Synthetic ground-camera pairs (cars): panoramas or front pinhole views on the roads of a sim ``Area``, each with
the map's aerial patch around a noisy coarse fix, written as a pair dataset (:mod:`edge_geoloc.data.pairs`).

Positions are drawn along random road paths (where a car drives); the heading is the direction of travel. The
query is rendered from the same layout under the capture condition (``condition``), or, for training, under
``random_conditions`` random conditions in turn (``sample_condition``; the built-in test conditions are never
drawn), while the aerial patches always come from the map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.data.pairs import PairWriter


@dataclass(frozen=True)
class GroundPairConfig:
    count: int = 200
    query_kind: str = "ground_pano"  # or "ground_pinhole" (a front camera looking along the heading)
    pano_px: tuple[int, int] = (256, 128)  # (width, height) of a panorama
    pinhole_px: tuple[int, int] = (256, 128)  # (width, height) of a pinhole view
    hfov_deg: float = 90.0  # pinhole field of view
    camera_height_m: float = 1.7
    aerial_size_m: float = 64.0
    aerial_px: int = 64
    coarse_error_m: float = 16.0  # the coarse fix is uniform in a disc of this radius around the truth
    condition: str | None = None
    random_conditions: int = 0

    def __post_init__(self) -> None:
        if self.query_kind not in ("ground_pano", "ground_pinhole"):
            raise ValueError(f"query_kind must be ground_pano or ground_pinhole, got {self.query_kind!r}")
        if self.coarse_error_m >= self.aerial_size_m / 2:
            raise ValueError("coarse_error_m must stay inside the aerial patch (< aerial_size_m / 2)")


def road_poses(area: Any, count: int, rng: np.random.Generator, margin_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(count, 2) local east/north points on roads at least ``margin_m`` inside the area, and their headings."""
    from edge_geoloc.sim.flight import car_path, sample_path

    points, headings = [], []
    half = area.size_m / 2 - margin_m
    while sum(len(p) for p in points) < count:
        path = car_path(area, 400.0, rng)
        pts, head = sample_path(path, rng.uniform(0, 400.0, count))
        inside = np.all(np.abs(pts) <= half, axis=1)
        points.append(pts[inside])
        headings.append(head[inside])
    return np.concatenate(points)[:count], np.concatenate(headings)[:count]


def render_ground_query(scene: Any, east: float, north: float, heading: float, cfg: GroundPairConfig) -> np.ndarray:
    from edge_geoloc.sim.camera import PinholeCamera
    from edge_geoloc.sim.ground import render_ground_panorama, render_ground_pinhole

    if cfg.query_kind == "ground_pano":
        return render_ground_panorama(scene, east, north, heading, cfg.camera_height_m, *cfg.pano_px)
    camera = PinholeCamera(cfg.pinhole_px[0], cfg.pinhole_px[1], cfg.hfov_deg)
    return render_ground_pinhole(scene, east, north, heading, camera, cfg.camera_height_m)


def write_synthetic_ground_pairs(area: Any, root: str | Path, cfg: GroundPairConfig, seed: int) -> Path:
    """Render ``cfg.count`` ground-view / aerial-patch pairs of ``area`` (with ground truth) at ``root``."""
    rng = np.random.default_rng(seed)
    seen = _captures(area, cfg, seed)
    points, headings = road_poses(area, cfg.count, rng, cfg.aerial_size_m / 2 + cfg.coarse_error_m)
    source = f"sim:{area.style_name}:seed{area.seed}:ground{seed}"
    with PairWriter(root, cfg.query_kind, cfg.aerial_size_m, cfg.aerial_px, (source,)) as writer:
        for i, ((east, north), heading) in enumerate(zip(points, headings, strict=True)):
            query = render_ground_query(seen[i % len(seen)], float(east), float(north), float(heading), cfg)
            radius, angle = cfg.coarse_error_m * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
            c_east, c_north = east + radius * math.sin(angle), north + radius * math.cos(angle)
            aerial, georef = area.aerial_patch(c_east, c_north, cfg.aerial_size_m, cfg.aerial_px)
            gt_row, gt_col = georef.latlon_to_pixel(*area.local_to_latlon(east, north))
            lat, lon = area.local_to_latlon(c_east, c_north)
            hfov = cfg.hfov_deg if cfg.query_kind == "ground_pinhole" else None
            writer.add(f"{i:06d}", query, aerial, georef, float(lat), float(lon), float(heading), stamp_s=float(i),
                       gt_row=gt_row, gt_col=gt_col, altitude_agl_m=cfg.camera_height_m if hfov else None,
                       hfov_deg=hfov)
    return Path(root)


def _captures(area: Any, cfg: GroundPairConfig, seed: int) -> list[Any]:
    from edge_geoloc.sim.area import capture_area
    from edge_geoloc.sim.conditions import sample_condition

    if cfg.random_conditions <= 0:
        return [capture_area(area, cfg.condition)]
    rng = np.random.default_rng([seed, 7919])
    return [capture_area(area, sample_condition(rng, f"random{seed}_{k}")) for k in range(cfg.random_conditions)]

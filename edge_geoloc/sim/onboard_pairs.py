"""Endless on-board training pairs: a north-up camera frame cut from the flight's capture and the map tile under
it, over many synthetic areas whose map and flight are seen under independent random conditions.

A nadir frame rotated north-up by the measured heading is, up to the buildings' relief, the captured orthophoto
around the point below the drone; so a pair costs two orthophoto reads instead of a ray-cast render, and a model
sees thousands of places instead of the few hundred a rendered tree holds. What the shortcut leaves out
(facades and relief displacement at the frame's edges) is exactly what the benchmarks test on: their queries
are rendered frames (:mod:`edge_geoloc.sim.onboard_tree`), aligned as the runtime aligns them.

Per pair: a tile of ``tile_size_m`` centred anywhere in the area (north-up map, its condition); the point
below the drone within ``offset_m`` of the tile centre; the frame is ``query_ground_size_m`` of the capture as
the runtime's alignment cuts it from a camera up to ``max_tilt_deg`` off nadir (flat ground), with the heading
sensor's residual rotation and the height sensor's residual scale, recorded by the capture's camera (sensor
blur, noise and response in metres, as :meth:`Area.record_view` applies them) and given random photometric
changes (:func:`edge_geoloc.sim.photometric.random_photometric`). A batch takes ``places_per_area`` tiles from each of
several areas at least ``min_spacing_m`` apart, so its negatives include neighbours of the same town.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_geoloc.sim.area import Area, capture_area, generate_area
from edge_geoloc.sim.conditions import apply_sensor, sample_condition
from edge_geoloc.sim.photometric import random_photometric


@dataclass(frozen=True)
class OnboardPairConfig:
    styles: tuple[str, ...] = ("source",)
    n_areas: int = 40
    area_size_m: float = 480.0
    gsd_m: float = 1.0  # also the pairs' resolution
    first_seed: int = 1000  # area seeds first_seed, first_seed + 1, ... (keep clear of the test areas' seeds)
    tile_size_m: float = 120.0
    query_ground_size_m: float = 80.0
    offset_m: float = 30.0  # frame centre within this of the tile centre, each axis (half of build-index's stride)
    heading_sigma_deg: float = 2.0
    altitude_sigma_frac: float = 0.01
    max_tilt_deg: float = 10.0  # camera off nadir, as the rendered flights (sim/onboard_tree.py)
    height_m: float = 100.0  # nominal height above ground (flat ground: it sets only the tilt's ground offset)
    places_per_area: int = 8
    min_spacing_m: float = 60.0

    def __post_init__(self) -> None:
        if self.n_areas < 1 or not self.styles:
            raise ValueError("onboard pairs need at least one area and one style")
        if self.tile_size_m >= self.area_size_m / 2:
            raise ValueError(f"tile_size_m {self.tile_size_m} must be below half the area ({self.area_size_m} m)")
        if self.query_ground_size_m > self.tile_size_m:
            raise ValueError("query_ground_size_m must not exceed tile_size_m")


@dataclass(frozen=True)
class AreaPair:
    """One layout as the map shows it and as the flight sees it."""

    map: Area
    flight: Area


def training_areas(cfg: OnboardPairConfig) -> list[AreaPair]:
    """``n_areas`` layouts (styles in turn), each with a random map condition and a random flight condition."""
    rng = np.random.default_rng([cfg.first_seed, 17])
    out = []
    for i in range(cfg.n_areas):
        seed = cfg.first_seed + i
        area = generate_area(cfg.styles[i % len(cfg.styles)], seed, cfg.area_size_m, cfg.gsd_m,
                             condition=sample_condition(rng, f"pairs_map_{seed}"))
        out.append(AreaPair(area, capture_area(area, sample_condition(rng, f"pairs_flight_{seed}"))))
    return out


class OnboardPairSampler:
    """Draws batches of (north-up frame, map tile) uint8 pairs; deterministic for a seed."""

    def __init__(self, areas: Sequence[AreaPair], cfg: OnboardPairConfig, seed: int = 0) -> None:
        if not areas:
            raise ValueError("OnboardPairSampler needs at least one area")
        self.areas, self.cfg = list(areas), cfg
        self.rng = np.random.default_rng(seed)
        self.tile_px = int(round(cfg.tile_size_m / cfg.gsd_m))
        self.query_px = int(round(cfg.query_ground_size_m / cfg.gsd_m))

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(size, q, q, 3) frames and (size, t, t, 3) tiles; row i of each is a pair."""
        per = self.cfg.places_per_area
        if size % per:
            raise ValueError(f"batch size {size} must be a multiple of places_per_area {per}")
        n_areas = size // per
        picks = self.rng.choice(len(self.areas), n_areas, replace=n_areas > len(self.areas))
        frames, tiles = [], []
        for index in picks:
            pair = self.areas[int(index)]
            for centre in self._places(pair.map, per):
                frame, tile = self.pair(pair, centre)
                frames.append(frame)
                tiles.append(tile)
        return np.stack(frames), np.stack(tiles)

    def _places(self, area: Area, count: int) -> list[np.ndarray]:
        half = area.size_m / 2 - self.cfg.tile_size_m / 2
        places: list[np.ndarray] = []
        for _ in range(200 * count):
            p = self.rng.uniform(-half, half, 2)
            if all(np.abs(p - q).max() >= self.cfg.min_spacing_m for q in places):
                places.append(p)
                if len(places) == count:
                    return places
        raise ValueError(f"cannot place {count} tiles {self.cfg.min_spacing_m} m apart in a {area.size_m} m area")

    def pair(self, pair: AreaPair, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.cfg
        tile, _ = pair.map.aerial_patch(float(centre[0]), float(centre[1]), c.tile_size_m, self.tile_px)
        east, north = centre + self.rng.uniform(-c.offset_m, c.offset_m, 2)
        return self.frame(pair.flight, float(east), float(north)), tile

    def frame(self, flight: Area, east: float, north: float) -> np.ndarray:
        """The frame the runtime would produce over the point below the drone at ``(east, north)``: the camera
        tilted off nadir in a random direction, the alignment's residual heading and scale errors (flat ground)."""
        c, q = self.cfg, self.query_px
        grid = (np.arange(q) + 0.5 - q / 2) * c.gsd_m  # metres across the aligned frame at the nominal scale
        x, y = np.meshgrid(grid, -grid)  # east to the right, north up
        turn = math.radians(self.rng.normal(0.0, c.heading_sigma_deg))
        scale = 1.0 + self.rng.normal(0.0, c.altitude_sigma_frac)
        rays = np.stack([scale * (math.cos(turn) * x - math.sin(turn) * y) / c.height_m,
                         scale * (math.sin(turn) * x + math.cos(turn) * y) / c.height_m, -np.ones_like(x)])
        rays = tilt_rays(rays, math.radians(self.rng.uniform(0.0, c.max_tilt_deg)), self.rng.uniform(0, 2 * math.pi))
        ground_e = east + c.height_m * rays[0] / -rays[2]
        ground_n = north + c.height_m * rays[1] / -rays[2]
        rows, cols = flight.local_to_pixel(ground_e, ground_n)
        frame = cv2.remap(flight.ortho, (cols - 0.5).astype(np.float32), (rows - 0.5).astype(np.float32),
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if flight.view_sensor is not None:  # the capture's camera, with this sampler's noise (deterministic per seed)
            frame = apply_sensor(frame, flight.view_sensor, c.gsd_m, self.rng)
        return random_photometric(frame, self.rng)


def tilt_rays(rays: np.ndarray, tilt_rad: float, toward_rad: float) -> np.ndarray:
    """Rays ``(3, ...)`` (east, north, up) of a nadir camera, rotated so the optical axis leans ``tilt_rad`` off
    nadir toward the azimuth ``toward_rad`` (clockwise from north); Rodrigues' formula about a horizontal axis."""
    d_e, d_n = math.sin(toward_rad), math.cos(toward_rad)
    axis = np.array([d_n, -d_e, 0.0]).reshape(3, *([1] * (rays.ndim - 1)))
    cross = np.cross(axis, rays, axis=0)
    dot = (axis * rays).sum(axis=0, keepdims=True)
    return rays * math.cos(tilt_rad) + cross * math.sin(tilt_rad) + axis * dot * (1 - math.cos(tilt_rad))

"""The on-board retrieval protocol's synthetic tree: drone frames as the flights see them, tiles as build-index
cuts them, in the University-1652 layout so the same readers, trainer and metrics apply.

Per area, tile centres lie on ``build-index``'s grid (:func:`edge_geoloc.geo.raster.axis_centres`,
``tile_size_m`` squares every ``stride_m``, north-up) and each tile is one location (its id). Drone frames are
nadir to mildly oblique (tilt up to ``max_tilt_deg``), at any heading and a height in ``alt_range_m``; their
measured heading and height carry the sensors' noise (``heading_sigma_deg``, ``altitude_sigma_m``, as in
``configs/sim_flight_drone.yaml``). Frames are stored raw; ``poses.csv`` (see :mod:`edge_geoloc.data.poses`)
holds truth and measurements, and the reader aligns them as the runtime does.

Frames are rendered from the area as captured under ``flight_condition`` (the conditions of
:mod:`edge_geoloc.sim.conditions`; the tiles come from the map itself), so the map-vs-flight gap is part of the
protocol. Training areas: every tile gets ``views_per_tile`` frames taken within half a stride of its centre (so it is
the nearest tile). Test areas: ``queries_per_area`` frames at random places, labelled with the nearest tile;
the gallery is every tile of the test areas (tiles without a query are distractors). ``locations.csv`` lists
each tile's centre so metrics can also accept any tile that contains the point below the drone.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_geoloc.geo.raster import axis_centres
from edge_geoloc.sim.area import Area, capture_area
from edge_geoloc.sim.camera import DronePose, PinholeCamera
from edge_geoloc.sim.conditions import sample_condition
from edge_geoloc.sim.datasets import write_image
from edge_geoloc.sim.poses import ViewPose, write_view_poses
from edge_geoloc.sim.render import render_drone_view

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnboardTreeConfig:
    tile_size_m: float = 120.0  # build-index defaults (configs/runtime.yaml)
    stride_m: float = 60.0
    tile_px: int = 96
    drone_px: int = 128
    hfov_deg: float = 60.0
    alt_range_m: tuple[float, float] = (80.0, 130.0)
    max_tilt_deg: float = 10.0  # camera off nadir
    heading_sigma_deg: float = 2.0
    altitude_sigma_m: float = 1.0
    views_per_tile: int = 4
    queries_per_area: int = 80
    margin_m: float = 0.0  # keep tiles this far inside the area (0: build-index's grid exactly)
    photometric: bool = True
    flight_condition: str | None = None  # frames captured under: None = the map's look, a condition name, "random"
    seed: int = 0


def tile_centres(area: Area, cfg: OnboardTreeConfig) -> np.ndarray:
    """(N, 2) local east/north centres of the tiles build-index would cut from this area's orthophoto."""
    half = area.size_m / 2 - cfg.margin_m
    axis = axis_centres(-half, half, cfg.tile_size_m / 2, cfg.stride_m)
    axis = axis[axis + cfg.tile_size_m / 2 <= half + 1e-6]  # whole tiles only
    east, north = np.meshgrid(axis, axis[::-1])
    return np.stack([east.ravel(), north.ravel()], -1)


def random_frame_pose(centre: np.ndarray, spread_m: float, cfg: OnboardTreeConfig,
                      rng: np.random.Generator) -> tuple[DronePose, ViewPose]:
    """A flight-like frame within ``spread_m`` (each axis) of ``centre``, with its truth and measured pose."""
    east, north = centre + rng.uniform(-spread_m, spread_m, 2)
    alt = rng.uniform(*cfg.alt_range_m)
    heading = rng.uniform(0, 2 * math.pi)
    pitch = math.pi / 2 - math.radians(rng.uniform(0, cfg.max_tilt_deg))
    measured_heading = (heading + rng.normal(0, math.radians(cfg.heading_sigma_deg))) % (2 * math.pi)
    measured_alt = max(1.0, alt + rng.normal(0, cfg.altitude_sigma_m))
    view = ViewPose(east, north, alt, heading, pitch, measured_heading, measured_alt, cfg.hfov_deg)
    return DronePose(east, north, alt, heading, pitch), view


def flight_capture(area: Area, condition: str | None, rng: np.random.Generator) -> Area:
    """The area as the flight camera sees it: the map's look, a named condition, or a random one
    (:func:`edge_geoloc.sim.conditions.sample_condition`, domain randomisation for training)."""
    if condition == "random":
        return capture_area(area, sample_condition(rng, f"random_{area.seed}"))
    return capture_area(area, condition)


def write_onboard_tree(root: str | Path, train_areas: Sequence[Area], test_areas: Sequence[Area],
                       cfg: OnboardTreeConfig = OnboardTreeConfig()) -> Path:
    """Write the tree (see the module docstring); either list of areas may be empty. Returns ``root``."""
    root, rng = Path(root), np.random.default_rng(cfg.seed)
    camera = PinholeCamera(cfg.drone_px, cfg.drone_px, cfg.hfov_deg)
    poses: dict[str, ViewPose] = {}
    rows: list[list] = []
    next_id = 1
    for split, areas in (("train", train_areas), ("test", test_areas)):
        for area in areas:
            centres = tile_centres(area, cfg)
            ids = [f"{next_id + k:05d}" for k in range(len(centres))]
            next_id += len(centres)
            _write_tiles(root, split, area, centres, ids, cfg)
            frames = _train_frames if split == "train" else _test_frames
            frames(root, flight_capture(area, cfg.flight_condition, rng), centres, ids, cfg, camera, rng, poses)
            rows += [[i, split, area.style_name, area.seed, f"{c[0]:.3f}", f"{c[1]:.3f}"] for i, c in zip(ids, centres,
                                                                                                     strict=True)]
    write_view_poses(root, poses)
    with (root / "locations.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "split", "style", "seed", "east_m", "north_m"], *rows])
    log.info("wrote on-board tree at %s: %d tiles, %d drone frames", root, len(rows), len(poses))
    return root


def _write_tiles(root: Path, split: str, area: Area, centres: np.ndarray, ids: list[str],
                 cfg: OnboardTreeConfig) -> None:
    folders = ("satellite",) if split == "train" else ("gallery_satellite",)
    for loc_id, (east, north) in zip(ids, centres, strict=True):
        tile, _ = area.aerial_patch(float(east), float(north), cfg.tile_size_m, cfg.tile_px)
        for folder in folders:
            write_image(root / split / folder / loc_id / f"{loc_id}.jpg", tile)


def _render(root: Path, rel_paths: Sequence[str], area: Area, pose: DronePose, view: ViewPose, camera: PinholeCamera,
            cfg: OnboardTreeConfig, rng: np.random.Generator, poses: dict[str, ViewPose]) -> None:
    image = render_drone_view(area, pose, camera, rng if cfg.photometric else None)
    for rel in rel_paths:
        write_image(root / rel, image)
        poses[rel] = view


def _train_frames(root: Path, area: Area, centres: np.ndarray, ids: list[str], cfg: OnboardTreeConfig,
                  camera: PinholeCamera, rng: np.random.Generator, poses: dict[str, ViewPose]) -> None:
    for loc_id, centre in zip(ids, centres, strict=True):
        for k in range(cfg.views_per_tile):
            pose, view = random_frame_pose(centre, cfg.stride_m / 2, cfg, rng)
            _render(root, [f"train/drone/{loc_id}/image-{k + 1:02d}.jpeg"], area, pose, view, camera, cfg, rng, poses)


def _test_frames(root: Path, area: Area, centres: np.ndarray, ids: list[str], cfg: OnboardTreeConfig,
                 camera: PinholeCamera, rng: np.random.Generator, poses: dict[str, ViewPose]) -> None:
    """Frames anywhere over the tiled part of the area, labelled with the nearest tile."""
    low, high = centres.min(axis=0), centres.max(axis=0)
    counts: dict[str, int] = {}
    for _ in range(cfg.queries_per_area):
        pose, view = random_frame_pose(rng.uniform(low, high), 0.0, cfg, rng)
        east, north = view.east_m, view.north_m
        loc_id = ids[int(np.argmin(np.abs(centres - [east, north]).max(axis=1)))]
        counts[loc_id] = counts.get(loc_id, 0) + 1
        name = f"image-{counts[loc_id]:02d}.jpeg"
        _render(root, [f"test/query_drone/{loc_id}/{name}", f"test/gallery_drone/{loc_id}/{name}"], area, pose, view,
                camera, cfg, rng, poses)
        sat = root / "test" / "query_satellite" / loc_id / f"{loc_id}.jpg"
        if not sat.is_file():
            tile = root / "test" / "gallery_satellite" / loc_id / f"{loc_id}.jpg"
            sat.parent.mkdir(parents=True, exist_ok=True)
            sat.write_bytes(tile.read_bytes())

"""Training pairs for a learned BEV matcher (cars): the bird's-eye view of a rendered ground panorama and the map
tile around it, over many synthetic areas whose map and drive are seen under independent random conditions.

A panorama costs a ray-cast render, so the views are rendered once (:func:`load_or_render_views`, cached under
a key of the config) and the tiles are cut from the stored maps at batch time: each draw pairs a stored view
with a tile whose centre is a fresh uniform offset (up to ``offset_m`` per axis) from the camera, under the
photometric changes of the drone pairs, so a few hundred views give endless (view, tile) pairs.

Per view: a point on a road of a training area (:func:`edge_geoloc.data.ground_pairs.road_poses`; a car drives
there, the heading is the direction of travel), a panorama of the area under its drive condition, rolled north-up
by the heading plus a heading-sensor error, projected to a north-up BEV by the classical matcher's projection
(:func:`edge_geoloc.runtime.classical_ground.masked_bev_rgb`, the same the runtime uses). Areas and conditions
come from :func:`edge_geoloc.sim.onboard_pairs.training_areas` (random map and drive conditions; the built-in
test conditions never appear).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_geoloc.data.ground_pairs import road_poses
from edge_geoloc.data.images import read_image_rgb
from edge_geoloc.data.pairs import PairDatasetError, read_pairs
from edge_geoloc.geo.view_alignment import align_query_north_up
from edge_geoloc.runtime.classical_ground import BevNccConfig, masked_bev_rgb
from edge_geoloc.sim.ground import render_ground_panorama
from edge_geoloc.sim.onboard_pairs import AreaPair, OnboardPairConfig, training_areas
from edge_geoloc.sim.photometric import random_photometric

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroundBevPairConfig:
    styles: tuple[str, ...] = ("source",)
    n_areas: int = 4
    area_size_m: float = 280.0  # road routes of 400 m (road_poses) need room
    first_seed: int = 3000  # area seeds first_seed, first_seed + 1, ... (keep clear of every benchmark's areas)
    views_per_area: int = 48
    pano_px: tuple[int, int] = (256, 128)  # (width, height), as the car benchmark's camera
    camera_height_m: float = 1.7
    bev_size_m: float = 32.0
    m_per_px: float = 0.5  # BEV and tile resolution (the maps are rendered at it)
    tile_size_m: float = 64.0
    offset_m: float = 16.0  # tile centre within this of the camera, each axis
    wedge_deg: float = 0.0  # > 0: each drawn BEV keeps a wedge of this angle (random direction): a front pinhole
    heading_sigma_deg: float = 2.0
    seed: int = 0  # poses and heading errors

    def __post_init__(self) -> None:
        if self.n_areas < 1 or self.views_per_area < 1 or not self.styles:
            raise ValueError("ground BEV pairs need at least one area, one view per area and one style")
        if self.tile_size_m / 2 + self.offset_m >= self.area_size_m / 2:
            raise ValueError(f"tile_size_m / 2 + offset_m must stay inside the {self.area_size_m} m area")
        if self.bev_size_m + 2 * self.offset_m > self.tile_size_m:
            raise ValueError("bev_size_m + 2 offset_m must fit in tile_size_m (the camera's BEV inside the tile)")

    def bev(self) -> BevNccConfig:
        return BevNccConfig(bev_size_m=self.bev_size_m, m_per_px=self.m_per_px, camera_height_m=self.camera_height_m,
                            aerial_size_m=self.tile_size_m)

    def matcher_kwargs(self) -> dict[str, Any]:
        """The map matcher's geometry for these pairs (``MapMatcher`` keyword arguments): panorama BEVs."""
        return {"m_per_px": self.m_per_px, "query_ground_size_m": self.bev_size_m, "tile_size_m": self.tile_size_m,
                "search_radius_m": self.offset_m, "query_camera": "panorama"}

    @property
    def tile_px(self) -> int:
        return int(round(self.tile_size_m / self.m_per_px))

    def areas(self) -> OnboardPairConfig:
        return OnboardPairConfig(styles=self.styles, n_areas=self.n_areas, area_size_m=self.area_size_m,
                                 gsd_m=self.m_per_px, first_seed=self.first_seed, tile_size_m=self.tile_size_m,
                                 query_ground_size_m=self.bev_size_m)

    def key(self) -> str:
        """Cache key: the fields that change the rendered views (not ``offset_m`` or ``wedge_deg``, which act at
        batch time)."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("offset_m", "wedge_deg")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class GroundBevViews:
    """Rendered views: ``bevs (N, S, S, 3)`` uint8, ``area (N,)`` index into ``maps``, ``east_north (N, 2)``
    local metres of each camera, and ``maps`` the north-up map orthophotos (area centre at the image centre)."""

    bevs: np.ndarray
    area: np.ndarray
    east_north: np.ndarray
    maps: tuple[np.ndarray, ...]


def render_views(cfg: GroundBevPairConfig, areas: Sequence[AreaPair] | None = None) -> GroundBevViews:
    """``cfg.views_per_area`` views on the roads of each area (default: the config's random training areas)."""
    rng = np.random.default_rng([cfg.seed, 4049])
    bev_cfg, margin = cfg.bev(), cfg.tile_size_m / 2 + cfg.offset_m + 2.0
    bevs, area_ids, points, maps = [], [], [], []
    areas = training_areas(cfg.areas()) if areas is None else areas
    for i, pair in enumerate(areas):
        pts, headings = road_poses(pair.map, cfg.views_per_area, rng, margin)
        for (east, north), heading in zip(pts, headings, strict=True):
            pano = render_ground_panorama(pair.flight, float(east), float(north), float(heading),
                                          cfg.camera_height_m, *cfg.pano_px)
            measured = heading + math.radians(rng.normal(0.0, cfg.heading_sigma_deg))
            bevs.append(masked_bev_rgb(align_query_north_up(pano, measured, "ground_pano"), bev_cfg))
        area_ids += [i] * len(pts)
        points.append(pts)
        maps.append(pair.map.ortho)
        log.info("ground BEV pairs: area %d/%d rendered", i + 1, len(areas))
    return GroundBevViews(np.stack(bevs), np.asarray(area_ids), np.concatenate(points), tuple(maps))


@dataclass(frozen=True)
class CoarsePairs:
    """Logged (BEV, map tile around a coarse fix) pairs: ``tiles (N, t, t, 3)``, ``truth (N, 2)`` the camera's
    (row, col) in its tile (continuous pixels; for scoring only, never read by adaptation), ``area (N,)``."""

    bevs: np.ndarray
    tiles: np.ndarray
    truth: np.ndarray
    area: np.ndarray

    def subset(self, index: np.ndarray) -> CoarsePairs:
        return CoarsePairs(self.bevs[index], self.tiles[index], self.truth[index], self.area[index])


def coarse_pairs(views: GroundBevViews, cfg: GroundBevPairConfig, seed: int) -> CoarsePairs:
    """Each view once, its tile cut around a coarse fix ``offset_m`` off (uniform per axis), as a log holds them."""
    source = GroundBevPairSource(views, cfg, seed=seed)
    tiles, truth = zip(*(source.cut_tile(i) for i in range(len(views.bevs))), strict=True)
    return CoarsePairs(views.bevs, np.stack(tiles), np.stack(truth), views.area)


@dataclass
class DatasetPairsReport:
    """What :func:`coarse_pairs_from_dataset` made of a pair dataset's samples."""

    samples: int = 0  # (BEV, tile) pairs made
    no_heading: int = 0  # no heading logged: the panorama cannot be turned north-up
    rejected: list[str] = field(default_factory=list)  # "id: why" (unreadable image, not 2:1, patch too small)


def coarse_pairs_from_dataset(root: str | Path, cfg: GroundBevPairConfig, read_ground_truth: bool = False
                              ) -> tuple[CoarsePairs, DatasetPairsReport]:
    """The (BEV, tile) pairs of an ``edge_geoloc.pairs`` dataset of ground panoramas, e.g. a drive's field log
    (:func:`edge_geoloc.fieldlog.dataset.build_pairs_from_logs`): each panorama rolled north-up by its logged
    heading and projected to ``cfg``'s BEV; each aerial patch (centred on the coarse fix) cropped to
    ``cfg.tile_size_m`` around its centre and resampled to the tile's pixels. ``truth`` is NaN unless
    ``read_ground_truth`` (labelled sets, for scoring). Samples without a heading and unusable samples are
    counted and logged, not fatal; a dataset of another query kind, or with no usable sample, is an error."""
    root = Path(root)
    info, records = read_pairs(root, read_ground_truth)
    if info.query_kind != "ground_pano":
        raise PairDatasetError(f"{root}: {info.query_kind} queries; BEV pairs are made from ground panoramas")
    report, bevs, tiles, truth = DatasetPairsReport(), [], [], []
    for rec in records:
        if rec.heading_rad is None:
            report.no_heading += 1
            continue
        try:
            bev = _north_up_bev(read_image_rgb(root / rec.query), rec.heading_rad, cfg)
            tile, to_tile = _centre_tile(read_image_rgb(root / rec.aerial), rec.aerial_georef.m_per_px, cfg)
        except (OSError, ValueError) as err:
            report.rejected.append(f"{rec.id}: {err}")
            log.warning("%s: sample %s left out: %s", root, rec.id, err)
            continue
        bevs.append(bev)
        tiles.append(tile)
        truth.append(to_tile(rec.gt_row, rec.gt_col) if rec.gt_row is not None else (np.nan, np.nan))
    report.samples = len(bevs)
    if not bevs:
        first = f"; first: {report.rejected[0]}" if report.rejected else ""
        raise PairDatasetError(f"{root}: no usable ground pair ({report.no_heading} without heading, "
                               f"{len(report.rejected)} rejected{first})")
    return CoarsePairs(np.stack(bevs), np.stack(tiles), np.asarray(truth, np.float64), np.zeros(len(bevs), int)), report


def _north_up_bev(panorama: np.ndarray, heading_rad: float, cfg: GroundBevPairConfig) -> np.ndarray:
    if panorama.shape[1] != 2 * panorama.shape[0]:
        raise ValueError(f"a panorama is 2:1 (360 x 180 deg), got {panorama.shape[1]}x{panorama.shape[0]} px")
    return masked_bev_rgb(align_query_north_up(panorama, heading_rad, "ground_pano"), cfg.bev())


def _centre_tile(patch: np.ndarray, m_per_px: float, cfg: GroundBevPairConfig) -> tuple[np.ndarray, Any]:
    """(the tile of ``cfg`` cut from the centre of a north-up patch of ``m_per_px``, (row, col) -> tile pixels)."""
    crop = int(round(cfg.tile_size_m / m_per_px))
    if crop > min(patch.shape[:2]):
        raise ValueError(f"the aerial patch ({patch.shape[0] * m_per_px:.1f} m) is smaller than the "
                         f"{cfg.tile_size_m} m tile")
    top, left = (patch.shape[0] - crop) // 2, (patch.shape[1] - crop) // 2
    scale = cfg.tile_px / crop
    tile = cv2.resize(patch[top:top + crop, left:left + crop], (cfg.tile_px, cfg.tile_px),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return tile, lambda row, col: ((row - top) * scale, (col - left) * scale)


def load_or_render_views(cfg: GroundBevPairConfig, cache_dir: str | Path) -> GroundBevViews:
    """The views of ``cfg``, rendered once and cached as ``cache_dir/ground_bev_<key>.npz``."""
    path = Path(cache_dir) / f"ground_bev_{cfg.key()}.npz"
    if path.is_file():
        with np.load(path) as data:
            n = int(data["n_maps"])
            return GroundBevViews(data["bevs"], data["area"], data["east_north"],
                                  tuple(data[f"map{i}"] for i in range(n)))
    views = render_views(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, bevs=views.bevs, area=views.area, east_north=views.east_north, n_maps=len(views.maps),
             **{f"map{i}": m for i, m in enumerate(views.maps)})
    tmp.replace(path)
    return views


class GroundBevPairSource:
    """Batches of (BEV, map tile) uint8 pairs over stored views (a pair source of the map matcher's trainer);
    deterministic for a seed. A batch holds distinct views whose tiles in the same area are ``offset_m`` * 2
    apart or more, so no negative tile holds the query's own place near its centre."""

    def __init__(self, views: GroundBevViews, cfg: GroundBevPairConfig, seed: int = 0) -> None:
        if len(views.bevs) == 0:
            raise ValueError("GroundBevPairSource needs at least one view")
        self.views, self.cfg = views, cfg
        self.rng = np.random.default_rng(seed)
        self.tile_px = cfg.tile_px

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(size, s, s, 3) BEVs and (size, t, t, 3) tiles; row i of each is a pair."""
        bevs, tiles, _ = self.batch_with_positions(size)
        return bevs, tiles

    def batch_with_positions(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`batch`, plus ``(size, 2)`` (row, col) of each camera in its tile's continuous pixels."""
        picks = self._picks(size)
        bevs = [random_photometric(self.views.bevs[i], self.rng) for i in picks]
        if self.cfg.wedge_deg > 0:
            bevs = [bev * wedge_mask(bev.shape[0], self.cfg.wedge_deg, self.rng.uniform(0, 360))[..., None]
                    for bev in bevs]
        tiles, cameras = zip(*(self.cut_tile(int(i)) for i in picks), strict=True)
        return np.stack(bevs), np.stack(tiles), np.stack(cameras)

    def _picks(self, size: int) -> list[int]:
        chosen: list[int] = []
        for i in self.rng.permutation(len(self.views.bevs)):
            near = [j for j in chosen if self.views.area[j] == self.views.area[i]
                    and np.abs(self.views.east_north[j] - self.views.east_north[i]).max() < 2 * self.cfg.offset_m]
            if not near:
                chosen.append(int(i))
                if len(chosen) == size:
                    return chosen
        raise ValueError(f"only {len(chosen)} views are far enough apart for a batch of {size}")

    def cut_tile(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(map tile around view ``index``'s camera plus a uniform offset (whole pixels), the camera's (row, col)
        in the tile's continuous pixels: the tile's centre is ``(t / 2, t / 2)``)."""
        ortho = self.views.maps[int(self.views.area[index])]
        camera = self.views.east_north[index]
        east, north = camera + self.rng.uniform(-self.cfg.offset_m, self.cfg.offset_m, 2)
        m = self.cfg.m_per_px
        col = int(round(ortho.shape[1] / 2 + east / m)) - self.tile_px // 2
        row = int(round(ortho.shape[0] / 2 - north / m)) - self.tile_px // 2
        at = np.array([ortho.shape[0] / 2 - camera[1] / m - row, ortho.shape[1] / 2 + camera[0] / m - col])
        return np.ascontiguousarray(ortho[row:row + self.tile_px, col:col + self.tile_px]), at


class FixedPairSource:
    """Batches over fixed (BEV, tile) pairs with a given position per pair (a pseudo label from a teacher, or the
    truth for a ceiling): the map matcher trainer's position-only source for adaptation. The BEVs get the
    photometric changes of :class:`GroundBevPairSource`; deterministic for a seed."""

    def __init__(self, pairs: CoarsePairs, positions: np.ndarray, seed: int = 0) -> None:
        if len(pairs.bevs) == 0 or len(positions) != len(pairs.bevs):
            raise ValueError(f"FixedPairSource needs one position per pair, got {len(positions)} for "
                             f"{len(pairs.bevs)} pairs")
        self.pairs, self.positions = pairs, np.asarray(positions, np.float64)
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        bevs, tiles, _ = self.batch_with_positions(size)
        return bevs, tiles

    def batch_with_positions(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        picks = self.rng.choice(len(self.positions), size=size, replace=size > len(self.positions))
        bevs = np.stack([random_photometric(self.pairs.bevs[i], self.rng) for i in picks])
        return bevs, self.pairs.tiles[picks], self.positions[picks]


def wedge_mask(side: int, wedge_deg: float, direction_deg: float) -> np.ndarray:
    """(side, side) uint8 mask of a north-up BEV: 1 where the bearing from the centre (clockwise from north) lies
    within ``wedge_deg / 2`` of ``direction_deg`` (the ground a front camera looking that way sees)."""
    centre = side / 2
    rows, cols = np.mgrid[0:side, 0:side] + 0.5
    bearing = np.degrees(np.arctan2(cols - centre, centre - rows))
    off = (bearing - direction_deg + 180.0) % 360.0 - 180.0
    return (np.abs(off) <= wedge_deg / 2).astype(np.uint8)

"""Write synthetic datasets in the folder layouts of the real ones, so the real readers read them unchanged.

University-1652 (drone <-> satellite retrieval)::

    ROOT/train/drone/<id>/image-01.jpeg ...      ROOT/train/satellite/<id>/<id>.jpg
    ROOT/test/query_drone/<id>/image-XX.jpeg     ROOT/test/gallery_satellite/<id>/<id>.jpg (+ distractors)
    ROOT/test/query_satellite/<id>/<id>.jpg      ROOT/test/gallery_drone/<id>/image-XX.jpeg
    ROOT/locations.csv  (extra: id, split, lat/lon, local position of every location)

VIGOR (ground panorama <-> aerial, metric localisation)::

    ROOT/<City>/panorama/<panoid>,<lat>,<lon>,.jpg       ROOT/<City>/satellite/satellite_<lat>_<lon>.png
    ROOT/splits/<City>/satellite_list.txt, same_area_balanced_{train,test}.txt, pano_label_balanced.txt
    (the labels are exact, so there is no separate ``splits__corrected``)
    ROOT/synthetic_meta.json  (extra: metres per pixel per city, image sizes, pano headings)

A VIGOR label line is ``pano sat0 a0 b0 sat1 a1 b1 sat2 a2 b2 sat3 a3 b3``: ``sat0`` is the positive tile (the
pano lies in its central quarter), the others semi-positives; ``(a, b)`` are the pixel offsets
``a = (tile_north - pano_north) / m_per_px`` and ``b = (tile_east - pano_east) / m_per_px``: the panorama is at
``row = H/2 + a, col = W/2 - b`` of that tile (VIGOR's convention).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.sim.area import Area, capture_area
from edge_geoloc.sim.camera import DronePose, PinholeCamera
from edge_geoloc.sim.ground import render_ground_panorama, sample_street_points
from edge_geoloc.sim.render import render_drone_view

log = logging.getLogger(__name__)


def write_image(path: Path, image_rgb: np.ndarray, jpeg_quality: int = 92, png_compression: int = 3) -> Path:
    """Write an RGB image (JPEG or PNG by suffix), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if jpeg else [cv2.IMWRITE_PNG_COMPRESSION, png_compression]
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"could not write {path}")
    return path


def _as_list(areas: Area | Sequence[Area]) -> list[Area]:
    areas = [areas] if isinstance(areas, Area) else list(areas)
    if not areas:
        raise ValueError("need at least one Area")
    return areas


def pick_locations(area: Area, count: int, rng: np.random.Generator, margin_m: float,
                   min_spacing_m: float) -> np.ndarray:
    """(count, 2) local centres of distinct buildings (largest first, thinned to ``min_spacing_m``)."""
    b = area.scene.buildings
    half = area.size_m / 2 - margin_m
    inside = (np.abs(b[:, 0]) < half) & (np.abs(b[:, 1]) < half)
    order = np.argsort(-(b[:, 2] * b[:, 3] * (1 + 0.5 * rng.random(len(b)))))
    chosen: list[np.ndarray] = []
    for i in order[inside[order]]:
        p = b[i, :2].astype(np.float64)
        if all(np.hypot(*(p - q)) >= min_spacing_m for q in chosen):
            chosen.append(p)
        if len(chosen) == count:
            break
    if len(chosen) < count:
        raise ValueError(f"area {area.style_name}/{area.seed} has only {len(chosen)} buildings {min_spacing_m} m apart "
                         f"and {margin_m} m inside its border; ask for fewer locations or a larger area")
    return np.asarray(chosen)


def orbit_poses(centre: np.ndarray, n_views: int, alt_range_m: tuple[float, float],
                rng: np.random.Generator) -> list[DronePose]:
    """A descending spiral around a target, camera aimed at it (like the University-1652 drone flights)."""
    poses = []
    start = rng.uniform(0, 2 * math.pi)
    for k in range(n_views):
        frac = k / max(1, n_views - 1)
        alt = alt_range_m[1] + frac * (alt_range_m[0] - alt_range_m[1])
        azimuth = start + 2 * math.pi * 1.5 * frac  # 1.5 turns
        radius = alt * 0.9
        east, north = centre[0] + radius * math.sin(azimuth), centre[1] + radius * math.cos(azimuth)
        heading = (azimuth + math.pi) % (2 * math.pi)
        poses.append(DronePose(east, north, alt, heading, math.atan2(alt, radius)))
    return poses


def write_university_tree(root: str | Path, areas: Area | Sequence[Area], n_train: int = 20, n_test: int = 10,
                          n_distractors: int = 5, views_per_location: int = 54, drone_px: int = 512,
                          satellite_px: int = 512, satellite_size_m: float = 180.0, hfov_deg: float = 60.0,
                          alt_range_m: tuple[float, float] = (121.5, 256.0), seed: int = 0,
                          photometric: bool = True, condition: str | None = None) -> Path:
    """A University-1652-like tree (see the module docstring); returns ``root``. Satellite tiles come from each
    area (the map); drone views from the same layout under the capture ``condition`` (None: the map's)."""
    root, areas = Path(root), _as_list(areas)
    rng = np.random.default_rng(seed)
    total = n_train + n_test
    per_area = [total // len(areas) + (i < total % len(areas)) for i in range(len(areas))]
    margin = satellite_size_m / 2 + 10
    rows, camera = [], PinholeCamera(drone_px, drone_px, hfov_deg)
    places = [(area, p) for area, k in zip(areas, per_area, strict=True)
              for p in pick_locations(area, k, rng, margin, 0.4 * satellite_size_m)]
    order = rng.permutation(len(places))
    for index, place_idx in enumerate(order):
        area, centre = places[place_idx]
        split, loc_id = ("train" if index < n_train else "test"), f"{index + 1:04d}"
        sat, _ = area.aerial_patch(centre[0], centre[1], satellite_size_m, satellite_px)
        seen = capture_area(area, condition)
        views = [render_drone_view(seen, pose, camera, rng if photometric else None)
                 for pose in orbit_poses(centre, views_per_location, alt_range_m, rng)]
        _write_location(root, split, loc_id, sat, views)
        lat, lon = area.local_to_latlon(centre[0], centre[1])
        rows.append([loc_id, split, f"{lat:.8f}", f"{lon:.8f}", area.style_name, area.seed, *np.round(centre, 3)])
    for k in range(n_distractors):
        area = areas[k % len(areas)]
        east, north = rng.uniform(-1, 1, 2) * (area.size_m / 2 - margin)
        sat, _ = area.aerial_patch(east, north, satellite_size_m, satellite_px)
        loc_id = f"{total + k + 1:04d}"
        write_image(root / "test" / "gallery_satellite" / loc_id / f"{loc_id}.jpg", sat)
    _write_csv(root / "locations.csv", ["id", "split", "lat_deg", "lon_deg", "style", "seed", "east_m", "north_m"],
               rows)
    log.info("wrote University-1652-like tree at %s: %d train, %d test, %d distractors", root, n_train, n_test,
             n_distractors)
    return root


def _write_location(root: Path, split: str, loc_id: str, sat: np.ndarray, views: list[np.ndarray]) -> None:
    names = [f"image-{k + 1:02d}.jpeg" for k in range(len(views))]
    if split == "train":
        write_image(root / "train" / "satellite" / loc_id / f"{loc_id}.jpg", sat)
        for name, view in zip(names, views, strict=True):
            write_image(root / "train" / "drone" / loc_id / name, view)
        return
    for folder in ("query_satellite", "gallery_satellite"):
        write_image(root / "test" / folder / loc_id / f"{loc_id}.jpg", sat)
    for folder in ("query_drone", "gallery_drone"):
        for name, view in zip(names, views, strict=True):
            write_image(root / "test" / folder / loc_id / name, view)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def vigor_tile_grid(area: Area, tile_size_m: float, margin_m: float) -> np.ndarray:
    """(N, 2) local centres of satellite tiles overlapping by half a tile (the VIGOR sampling)."""
    half = area.size_m / 2 - margin_m - tile_size_m / 2
    steps = np.arange(-half, half + 1e-6, tile_size_m / 2)
    east, north = np.meshgrid(steps, steps[::-1])
    return np.stack([east.ravel(), north.ravel()], -1)


def vigor_labels(pano_en: np.ndarray, tiles_en: np.ndarray, tile_size_m: float,
                 m_per_px: float) -> tuple[list[int], list[tuple[float, float]]]:
    """The tiles covering a panorama (positive first: the one whose central quarter holds it) and the VIGOR
    offsets ``(a, b)`` in each: ``a = (tile_north - pano_north) / m_per_px``, ``b = (tile_east - pano_east) /
    m_per_px``, so the panorama is at ``row = H/2 + a``, ``col = W/2 - b``."""
    d = pano_en - tiles_en
    covering = np.nonzero(np.all(np.abs(d) < tile_size_m / 2, axis=1))[0]
    covering = covering[np.argsort(np.abs(d[covering]).max(axis=1), kind="stable")]
    offsets = [(float(-d[i, 1] / m_per_px), float(-d[i, 0] / m_per_px)) for i in covering]
    return [int(i) for i in covering], offsets


# VIGOR's four cities and the ground resolution of their 640 px zoom-20 tiles (the corrected labels' values)
VIGOR_CITY_M_PER_PX = {"NewYork": 0.113248, "Seattle": 0.100817, "SanFrancisco": 0.118141, "Chicago": 0.111262}


def write_vigor_tree(root: str | Path, areas: Area | Sequence[Area], cities: Sequence[str] | None = None,
                     panos_per_city: int = 40, pano_px: tuple[int, int] = (1024, 512), satellite_px: int = 640,
                     satellite_m_per_px: float | None = None, test_fraction: float = 0.5,
                     random_heading: bool = False, seed: int = 0, condition: str | None = None) -> Path:
    """A VIGOR-like tree (see the module docstring); one city per area. Satellite tiles come from each area (the
    map), panoramas from the same layout under the capture ``condition`` (None: the map's own).

    Cities default to VIGOR's names in the order NewYork, Seattle, SanFrancisco, Chicago (cross-area: the first
    two train, the last two test), so readers of the real tree read it unchanged; with 4 areas (e.g. 2 source
    + 2 target style) every real split exists. ``satellite_m_per_px`` defaults to the real city's ground
    resolution. Panoramas are north-aligned (centre column = north) unless ``random_heading``; headings and
    resolutions are also listed in ``synthetic_meta.json``.
    """
    root, areas = Path(root), _as_list(areas)
    cities = list(cities) if cities is not None else list(VIGOR_CITY_M_PER_PX)[: len(areas)]
    if len(cities) != len(areas):
        raise ValueError(f"got {len(cities)} city names for {len(areas)} areas; give one name per area "
                         f"(the default names cover at most 4 areas)")
    rng = np.random.default_rng(seed)
    meta = {"format": "edge_geoloc.sim.vigor", "version": 1, "satellite_px": satellite_px,
            "panorama_px": list(pano_px), "offset_convention": "pano at row = H/2 + a, col = W/2 - b",
            "cities": {}}
    for city, area in zip(cities, areas, strict=True):
        m_per_px = satellite_m_per_px or VIGOR_CITY_M_PER_PX.get(city, 0.125)
        meta["cities"][city] = _write_vigor_city(root, city, area, rng, panos_per_city, pano_px, satellite_px,
                                                 m_per_px, test_fraction, random_heading, condition)
    (root / "synthetic_meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    log.info("wrote VIGOR-like tree at %s: %s", root, ", ".join(cities))
    return root


def _write_vigor_city(root: Path, city: str, area: Area, rng: np.random.Generator, count: int,
                      pano_px: tuple[int, int], sat_px: int, m_per_px: float, test_fraction: float,
                      random_heading: bool, condition: str | None = None) -> dict:
    tile_m = sat_px * m_per_px
    tiles = vigor_tile_grid(area, tile_m, margin_m=5.0)
    if len(tiles) < 4:
        raise ValueError(f"area {area.size_m} m is too small for {tile_m:.0f} m VIGOR tiles; use a larger area or "
                         f"smaller satellite_px * satellite_m_per_px")
    sat_names = []
    for east, north in tiles:
        lat, lon = area.local_to_latlon(east, north)
        name = f"satellite_{lat:.8f}_{lon:.8f}.png"
        write_image(root / city / "satellite" / name, area.aerial_patch(east, north, tile_m, sat_px)[0])
        sat_names.append(name)
    lines, headings = [], {}
    candidates = sample_street_points(area, count * 20, rng, margin_m=6.0 + tile_m / 2)
    for east, north in candidates:
        covering, offsets = vigor_labels(np.array([east, north]), tiles, tile_m, m_per_px)
        if len(covering) != 4 or len(lines) >= count:
            continue
        lat, lon = area.local_to_latlon(east, north)
        name = f"syn{len(lines):06d},{lat:.8f},{lon:.8f},.jpg"
        heading = float(rng.uniform(0, 2 * math.pi)) if random_heading else 0.0
        pano = render_ground_panorama(capture_area(area, condition), east, north, heading, width_px=pano_px[0],
                                      height_px=pano_px[1])
        write_image(root / city / "panorama" / name, pano)
        headings[name] = heading
        lines.append(" ".join([name] + [f"{sat_names[i]} {a:.6f} {b:.6f}" for i, (a, b) in
                                        zip(covering, offsets, strict=True)]))
    if len(lines) < count:
        raise ValueError(f"only {len(lines)} street points of {city} are covered by 4 tiles; ask for fewer panoramas")
    _write_vigor_splits(root, city, sat_names, lines, rng, test_fraction)
    return {"m_per_px": m_per_px, "style": area.style_name, "seed": area.seed, "utm_epsg": area.zone.epsg,
            "pano_heading_rad": headings}


def _write_vigor_splits(root: Path, city: str, sat_names: list[str], lines: list[str], rng: np.random.Generator,
                        test_fraction: float) -> None:
    is_test = np.zeros(len(lines), bool)
    is_test[rng.permutation(len(lines))[: int(round(test_fraction * len(lines)))]] = True
    files = {"satellite_list.txt": sat_names, "pano_label_balanced.txt": lines,
             "same_area_balanced_train.txt": [ln for ln, t in zip(lines, is_test, strict=True) if not t],
             "same_area_balanced_test.txt": [ln for ln, t in zip(lines, is_test, strict=True) if t]}
    for name, content in files.items():
        path = root / "splits" / city / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{ln}\n" for ln in content), encoding="utf-8")

"""Changes on the ground between two captures of one layout: demolished and new buildings, parked cars.

Each function edits a copy of the layout's :class:`~edge_geoloc.sim.layout.Scene` with a generator private to
the condition (:meth:`Condition.rng`), so the layout itself and every other condition stay untouched.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_geoloc.sim.conditions import Change
from edge_geoloc.sim.layout import (
    BUILDING,
    GRASS,
    GROUND,
    PAVED,
    ROAD,
    Scene,
    _cv_points,
    _fit_footprint,
    _jitter_color,
    _rect_corners,
    _stamp_building,
)
from edge_geoloc.sim.styles import Style

CAR_SIZE_M = (4.5, 1.8)
CAR_HEIGHT_M = 1.5
CAR_COLOURS = ((230, 230, 232), (30, 30, 34), (150, 152, 158), (160, 30, 30), (40, 60, 120), (200, 200, 190))


def copy_scene(scene: Scene) -> Scene:
    return Scene(scene.height_m.copy(), scene.classes.copy(), scene.building_id.copy(), scene.buildings.copy(),
                 scene.gsd_m, scene.size_m)


def changed_scene(scene: Scene, style: Style, change: Change, rng: np.random.Generator) -> tuple[Scene, np.ndarray]:
    """A copy of ``scene`` with ``change`` applied, and the (H, W) uint8 mask of car pixels (for painting)."""
    if change == Change():
        return scene, np.zeros(scene.classes.shape, np.uint8)
    out = copy_scene(scene)
    remove_buildings(out, change.buildings_removed, rng)
    add_buildings(out, style, change.buildings_added, rng)
    cars = place_cars(out, change.car_cover, rng)
    return out, cars


def remove_buildings(scene: Scene, share: float, rng: np.random.Generator) -> np.ndarray:
    """Demolish ``share`` of the buildings (their lot becomes paved, height 0); the removed row indices."""
    n = len(scene.buildings)
    count = int(round(share * n))
    if count == 0:
        return np.zeros(0, int)
    gone = rng.choice(n, count, replace=False)
    lot = np.isin(scene.building_id, gone + 1)
    scene.height_m[lot] = 0.0
    scene.classes[lot] = PAVED
    scene.building_id[lot] = 0
    return np.sort(gone)


def add_buildings(scene: Scene, style: Style, share: float, rng: np.random.Generator, tries: int = 60) -> int:
    """New buildings (``share`` of the current count) on open ground, 1 m clear of anything else; how many fit.
    New buildings are small to mid-sized for the style (extensions, sheds, infill) with flat roofs."""
    wanted = int(round(share * len(scene.buildings)))
    if wanted == 0:
        return 0
    gsd = scene.gsd_m
    open_ground = ((scene.classes == GROUND) | (scene.classes == GRASS)).astype(np.uint8)
    occupied = (cv2.distanceTransform(open_ground, cv2.DIST_L2, 5) * gsd < 1.0).astype(np.uint8)
    rows = [list(r) for r in scene.buildings]
    added = 0
    for _ in range(wanted * tries):
        if added == wanted:
            break
        row = _try_new_building(scene, style, rng, occupied, len(rows) + 1)
        if row is not None:
            rows.append(row)
            added += 1
    scene.buildings = np.asarray(rows, np.float32).reshape(-1, scene.buildings.shape[1])
    return added


def _try_new_building(scene: Scene, style: Style, rng: np.random.Generator, occupied: np.ndarray,
                      bid: int) -> list | None:
    n = scene.classes.shape[0]
    x, y = rng.uniform(0, n, 2)
    if occupied[int(y), int(x)]:
        return None
    lo, hi = style.building_size_m
    length, width = sorted(rng.uniform(0.6 * lo, (lo + hi) / 2, 2), reverse=True)
    width = max(width, 0.45 * length)
    axis = float(rng.uniform(0, math.pi))
    east, north = x * scene.gsd_m - scene.size_m / 2, scene.size_m / 2 - y * scene.gsd_m
    fit = _fit_footprint(scene, occupied, east, north, length, width, axis)
    if fit is None:
        return None
    local, (x0, y0), corners = fit
    height = float(rng.uniform(*style.building_height_m))
    _stamp_building(scene, local, (x0, y0), corners, axis, height, height, bid)
    occupied[y0:y0 + local.shape[0], x0:x0 + local.shape[1]] |= cv2.dilate(local, np.ones((5, 5), np.uint8))
    roof = _jitter_color(style.roof_colors[rng.integers(len(style.roof_colors))], rng)
    facade = _jitter_color(style.facade_colors[rng.integers(len(style.facade_colors))], rng)
    return [east, north, length, width, axis, height, height, *roof, *facade]


def place_cars(scene: Scene, cover: float, rng: np.random.Generator) -> np.ndarray:
    """Stamp cars over ``cover`` of the road and lot area, aligned with the road; returns a mask whose value is
    the car's colour index + 1 (0: no car). Cars raise the height map by 1.5 m (they cast small shadows)."""
    mask = np.zeros(scene.classes.shape, np.uint8)
    drivable = (scene.classes == ROAD) | (scene.classes == PAVED)
    car_px = CAR_SIZE_M[0] * CAR_SIZE_M[1] / scene.gsd_m**2
    count = int(cover * drivable.sum() / car_px)
    if count == 0:
        return mask
    rows, cols = np.nonzero(drivable)
    pick = rng.choice(len(rows), count, replace=False)
    axes = _road_axes(drivable, rows[pick], cols[pick])
    colours = rng.integers(len(CAR_COLOURS), size=count)
    for r, c, axis, k in zip(rows[pick], cols[pick], axes, colours, strict=True):
        east, north = c * scene.gsd_m - scene.size_m / 2, scene.size_m / 2 - r * scene.gsd_m
        corners = _rect_corners(east, north, *CAR_SIZE_M, axis)
        pts = np.stack([(corners[:, 0] + scene.size_m / 2) / scene.gsd_m,
                        (scene.size_m / 2 - corners[:, 1]) / scene.gsd_m], -1)
        cv2.fillPoly(mask, [_cv_points(pts)], int(k) + 1, cv2.LINE_8, 4)
    on = (mask > 0) & drivable & (scene.classes != BUILDING)
    mask[~on] = 0
    scene.height_m[on] = np.maximum(scene.height_m[on], CAR_HEIGHT_M)
    return mask


def _road_axes(drivable: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Heading of the road's long direction at each point (perpendicular to the distance gradient)."""
    dist = cv2.GaussianBlur(cv2.distanceTransform(drivable.astype(np.uint8), cv2.DIST_L2, 3), (0, 0), 2.0)
    gx = cv2.Sobel(dist, cv2.CV_32F, 1, 0)[rows, cols]
    gy = cv2.Sobel(dist, cv2.CV_32F, 0, 1)[rows, cols]
    across = np.arctan2(gx, -gy)  # heading (clockwise from north) of the gradient, rows growing south
    return across + math.pi / 2

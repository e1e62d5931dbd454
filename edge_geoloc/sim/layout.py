"""The 2.5D scene of a synthetic area: road network, water, parks, buildings and trees on a pixel grid.

Everything is drawn on the orthophoto grid (``gsd_m`` metres per pixel, north-up, row 0 at the north edge).
Pixel coordinates follow the SDK convention (``(0, 0)`` = upper-left corner of the upper-left pixel); OpenCV
drawing uses pixel centres at integers, hence the ``- 0.5`` in :func:`_cv_points`.
The result is a :class:`Scene`: surface height above ground, a class map, a building-id map and a building
table, which the ortho painter and the renderers read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_geoloc.sim.styles import Style

GROUND, GRASS, ROAD, WATER, BUILDING, TREE, PAVED = range(7)
CLASS_NAMES = ("ground", "grass", "road", "water", "building", "tree", "paved")
# columns of Scene.buildings; axis_rad is the long axis, clockwise from north; rgb 0..255
BUILDING_COLUMNS = ("east_m", "north_m", "length_m", "width_m", "axis_rad", "height_m", "ridge_m",
                    "roof_r", "roof_g", "roof_b", "facade_r", "facade_g", "facade_b")
_SHIFT = 4  # sub-pixel bits for cv2 drawing


@dataclass
class Scene:
    """What the renderers need besides the orthophoto. Arrays share the ortho's (H, W) grid."""

    height_m: np.ndarray  # (H, W) float32, surface height above the (flat) ground
    classes: np.ndarray  # (H, W) uint8, one of GROUND..PAVED
    building_id: np.ndarray  # (H, W) int32, 0 = none, k = row k-1 of buildings
    buildings: np.ndarray  # (N, len(BUILDING_COLUMNS)) float32
    gsd_m: float
    size_m: float

    def building_corners(self, index: int) -> np.ndarray:
        """(4, 2) local (east_m, north_m) footprint corners of building ``index`` (a row of ``buildings``)."""
        b = dict(zip(BUILDING_COLUMNS, self.buildings[index].astype(np.float64), strict=True))
        axis = np.array([math.sin(b["axis_rad"]), math.cos(b["axis_rad"])])
        across = np.array([axis[1], -axis[0]])
        half_l, half_w = axis * b["length_m"] / 2, across * b["width_m"] / 2
        centre = np.array([b["east_m"], b["north_m"]])
        return np.stack([centre + half_l + half_w, centre + half_l - half_w,
                         centre - half_l - half_w, centre - half_l + half_w])


@dataclass
class _Road:
    points_px: np.ndarray  # (K, 2) x=col, y=row, corner convention
    width_px: float


def _cv_points(points_xy: np.ndarray) -> np.ndarray:
    """Corner-convention (x, y) -> int32 points for cv2 drawing with ``shift=_SHIFT``."""
    return np.round((np.asarray(points_xy) - 0.5) * (1 << _SHIFT)).astype(np.int32)


def fbm_noise(shape: tuple[int, int], rng: np.random.Generator, cell_px: float, octaves: int = 4) -> np.ndarray:
    """Fractal value noise in about [-1, 1]: random grids of decreasing cell size, upsampled and summed."""
    h, w = shape
    total = np.zeros(shape, np.float32)
    amp, norm = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(h / cell_px) + 2), max(2, int(w / cell_px) + 2)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        total += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        norm += amp
        amp, cell_px = amp * 0.5, max(1.0, cell_px / 2)
    return np.clip(total / norm, -2.5, 2.5) * 0.6


def generate_scene(style: Style, rng: np.random.Generator, size_m: float, gsd_m: float) -> tuple[Scene, list]:
    """Build the scene and return it with the road polylines (for the painter's lane markings)."""
    n = int(round(size_m / gsd_m))
    classes = np.where(fbm_noise((n, n), rng, 120 / gsd_m) > 0.15, GRASS, GROUND).astype(np.uint8)
    _draw_parks_and_lots(classes, style, rng, gsd_m)
    _draw_water(classes, style, rng, gsd_m)
    roads, grid_angle = _road_network(style, rng, n, gsd_m)
    for road in roads:
        cv2.polylines(classes, [_cv_points(road.points_px)], False, ROAD, max(1, int(round(road.width_px))),
                      cv2.LINE_8, _SHIFT)
    scene = Scene(np.zeros((n, n), np.float32), classes, np.zeros((n, n), np.int32),
                  np.zeros((0, len(BUILDING_COLUMNS)), np.float32), gsd_m, size_m)
    _place_buildings(scene, style, rng, grid_angle if style.road_layout == "grid" else None)
    _place_trees(scene, style, rng, roads)
    return scene, roads


def _road_network(style: Style, rng: np.random.Generator, n: int, gsd: float) -> tuple[list[_Road], float]:
    """A jittered, rotated lattice of streets: per-street widths, dropped edges, curved edges, arterials.
    Also returns the lattice angle as a heading (clockwise from north) of one street direction."""
    half = 0.75 * n * gsd
    lo, hi = style.block_size_m
    us, vs = (_street_positions(rng, half, lo, hi) for _ in range(2))
    theta = rng.uniform(0, math.pi / 2)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    jitter = rng.standard_normal((len(us), len(vs), 2)) * style.road_jitter * (lo + hi) / 2
    nodes = np.stack(np.meshgrid(us, vs, indexing="ij"), -1) + jitter  # (nu, nv, 2) metres, rotated frame
    nodes_px = (nodes @ rot.T) / gsd + n / 2  # x right (east), y down (south)
    width_u = rng.uniform(*style.road_width_m, len(us))
    width_v = rng.uniform(*style.road_width_m, len(vs))
    for i in rng.choice(len(us) + len(vs), min(style.arterial_count, len(us) + len(vs)), replace=False):
        if i < len(us):
            width_u[i] = style.arterial_width_m
        else:
            width_v[i - len(us)] = style.arterial_width_m
    roads = []
    for i in range(len(us)):
        for j in range(len(vs)):
            for di, dj, width in ((1, 0, width_v[j]), (0, 1, width_u[i])):
                if i + di >= len(us) or j + dj >= len(vs):
                    continue
                if width < style.arterial_width_m and rng.random() > style.road_keep_prob:
                    continue
                pts = _curved_edge(nodes_px[i, j], nodes_px[i + di, j + dj], style.road_curvature, rng)
                roads.append(_Road(pts, width / gsd))
    return roads, theta  # lattice axis (cos, sin) in (x, y-down) pixels has heading theta + pi/2


def _street_positions(rng: np.random.Generator, half: float, lo: float, hi: float) -> np.ndarray:
    pos = [-half - rng.uniform(0, hi)]
    while pos[-1] < half:
        pos.append(pos[-1] + rng.uniform(lo, hi))
    return np.array(pos)


def _curved_edge(a: np.ndarray, b: np.ndarray, curvature: float, rng: np.random.Generator) -> np.ndarray:
    """A quadratic Bezier from a to b whose control point is pushed sideways by ``curvature`` x length."""
    if curvature <= 0:
        return np.stack([a, b])
    d = b - a
    ctrl = (a + b) / 2 + np.array([-d[1], d[0]]) * curvature * rng.standard_normal()
    t = np.linspace(0, 1, 9)[:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * ctrl + t**2 * b


def _draw_parks_and_lots(classes: np.ndarray, style: Style, rng: np.random.Generator, gsd: float) -> None:
    n = classes.shape[0]
    kinds = ((style.park_count, style.park_radius_m, GRASS), (style.paved_count, (15.0, 35.0), PAVED))
    for count, radius, cls in kinds:
        for _ in range(count):
            centre = rng.uniform(0, n, 2)
            k = rng.integers(5, 9)
            ang = np.sort(rng.uniform(0, 2 * math.pi, k))
            rad = rng.uniform(*radius, k) / gsd
            pts = centre + np.stack([np.cos(ang) * rad, np.sin(ang) * rad], -1)
            cv2.fillPoly(classes, [_cv_points(pts)], cls, cv2.LINE_8, _SHIFT)


def _draw_water(classes: np.ndarray, style: Style, rng: np.random.Generator, gsd: float) -> None:
    n = classes.shape[0]
    if style.water == "river":
        angle = rng.uniform(0, math.pi)
        t = np.linspace(-0.8 * n, 0.8 * n, 60)
        offset = rng.uniform(-0.3, 0.3) * n
        wobble = 0.06 * n * np.sin(t / n * rng.uniform(3, 6) + rng.uniform(0, 6.3))
        local = np.stack([t, offset + wobble], -1)
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        width = rng.uniform(*style.water_width_m) / gsd
        cv2.polylines(classes, [_cv_points(local @ rot.T + n / 2)], False, WATER, int(width), cv2.LINE_8, _SHIFT)
    elif style.water == "ponds":
        for _ in range(rng.integers(1, 4)):
            axes = tuple(int(v) for v in rng.uniform(*style.water_width_m, 2) / gsd / 2)
            centre = tuple(int(v) for v in rng.uniform(0.1 * n, 0.9 * n, 2))
            cv2.ellipse(classes, centre, axes, float(rng.uniform(0, 180)), 0, 360, WATER, -1)


def _place_buildings(scene: Scene, style: Style, rng: np.random.Generator, grid_angle: float | None) -> None:
    """Rectangles facing the nearest street (snapped to the street grid if there is one), without overlap,
    until the style's coverage is reached."""
    gsd, n = scene.gsd_m, scene.classes.shape[0]
    free = ((scene.classes != ROAD) & (scene.classes != WATER)).astype(np.uint8)
    dist_m = cv2.distanceTransform(free, cv2.DIST_L2, 5) * gsd
    smooth = cv2.GaussianBlur(dist_m, (0, 0), 4.0)
    grad_x, grad_y = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    occupied = (dist_m < style.building_setback_m).astype(np.uint8)
    tall_field = fbm_noise((n, n), rng, 300 / gsd, octaves=2)
    target_px = style.building_coverage * free.sum()
    mean_area = (np.mean(style.building_size_m) ** 2) * 0.7 / gsd**2
    cand = rng.uniform(0, n, (int(25 * target_px / mean_area) + 50, 2))
    cand = cand[dist_m[cand[:, 1].astype(int), cand[:, 0].astype(int)] < style.building_depth_m]
    rows, covered = [], 0.0
    for x, y in cand:
        if covered >= target_px:
            break
        row = _try_building(scene, style, rng, occupied, (x, y), (grad_x, grad_y, grid_angle), tall_field,
                            len(rows) + 1)
        if row is not None:
            rows.append(row)
            covered += row[2] * row[3] / gsd**2
    if rows:
        scene.buildings = np.asarray(rows, np.float32)


def _try_building(scene: Scene, style: Style, rng: np.random.Generator, occupied: np.ndarray, xy: tuple,
                  orientation: tuple, tall_field: np.ndarray, bid: int) -> list | None:
    """Place one building at ``xy`` (pixels) if a footprint fits there (full size, else 70 %); its table row."""
    x, y = xy
    if occupied[int(y), int(x)]:
        return None
    grad_x, grad_y, grid_angle = orientation
    gx, gy = grad_x[int(y), int(x)], grad_y[int(y), int(x)]
    # long axis along the street = perpendicular to the direction towards it; clockwise from north
    axis = math.atan2(gy, gx) if gx or gy else rng.uniform(0, math.pi)
    if grid_angle is not None:
        axis = grid_angle + round((axis - grid_angle) / (math.pi / 2)) * (math.pi / 2)
    axis += rng.normal(0, 0.015 if grid_angle is not None else 0.03)
    length, width = sorted(rng.uniform(*style.building_size_m, 2), reverse=True)
    width = max(width, 0.45 * length)
    east, north = x * scene.gsd_m - scene.size_m / 2, scene.size_m / 2 - y * scene.gsd_m
    for shrink in (1.0, 0.7):
        if length * shrink < style.building_size_m[0]:
            break
        fit = _fit_footprint(scene, occupied, east, north, length * shrink, width * shrink, axis)
        if fit is not None:
            length, width = length * shrink, width * shrink
            break
    if fit is None:
        return None
    local, origin, corners = fit
    height = _building_height(style, rng, float(tall_field[int(y), int(x)]))
    gabled = width <= 16.0 and rng.random() < style.gabled_fraction
    ridge = height + (width / 2 * math.tan(math.radians(32)) if gabled else 0.0)
    _stamp_building(scene, local, origin, corners, axis, height, ridge, bid)
    x0, y0 = origin
    occupied[y0:y0 + local.shape[0], x0:x0 + local.shape[1]] |= cv2.dilate(local, np.ones((5, 5), np.uint8))
    roof = _jitter_color(style.roof_colors[rng.integers(len(style.roof_colors))], rng)
    facade = _jitter_color(style.facade_colors[rng.integers(len(style.facade_colors))], rng)
    return [east, north, length, width, axis % (2 * math.pi), height, ridge, *roof, *facade]


def _fit_footprint(scene: Scene, occupied: np.ndarray, east: float, north: float, length: float, width: float,
                   axis: float) -> tuple | None:
    """(local mask, (x0, y0), corners) of a free rectangle, or None (corners checked first: cheap)."""
    gsd, half = scene.gsd_m, scene.size_m / 2
    corners = _rect_corners(east, north, length, width, axis)
    pts = np.stack([(corners[:, 0] + half) / gsd, (half - corners[:, 1]) / gsd], -1)
    x0, y0 = (int(v) - 1 for v in np.floor(pts.min(0)))
    x1, y1 = (int(v) + 2 for v in np.ceil(pts.max(0)))
    if x0 < 0 or y0 < 0 or x1 > occupied.shape[1] or y1 > occupied.shape[0]:
        return None
    if occupied[pts[:, 1].astype(int), pts[:, 0].astype(int)].any():
        return None
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(local, [_cv_points(pts - (x0, y0))], 1, cv2.LINE_8, _SHIFT)
    if np.any(occupied[y0:y1, x0:x1] & local):
        return None
    return local, (x0, y0), corners


def _building_height(style: Style, rng: np.random.Generator, tall_noise: float) -> float:
    lo, hi = style.building_height_m
    if rng.random() < style.tall_building_fraction * (1.5 + tall_noise):
        return float(rng.uniform(hi, 2.5 * hi))
    u = np.clip(0.6 * rng.beta(2.0, 3.0) + 0.4 * (tall_noise + 1) / 2, 0, 1)
    return float(lo + (hi - lo) * u)


def _jitter_color(rgb: tuple, rng: np.random.Generator) -> list[float]:
    return list(np.clip(np.asarray(rgb, float) * rng.uniform(0.85, 1.12) + rng.normal(0, 6, 3), 0, 255))


def _rect_corners(east: float, north: float, length: float, width: float, axis: float) -> np.ndarray:
    ae, an = math.sin(axis) * length / 2, math.cos(axis) * length / 2
    ce, cn = math.cos(axis) * width / 2, -math.sin(axis) * width / 2
    return np.array([[east + ae + ce, north + an + cn], [east + ae - ce, north + an - cn],
                     [east - ae - ce, north - an - cn], [east - ae + ce, north - an + cn]])


def _stamp_building(scene: Scene, local: np.ndarray, origin: tuple, corners: np.ndarray, axis: float,
                    height: float, ridge: float, bid: int) -> None:
    """Write footprint, class, id and roof heights (flat, or gabled with the ridge along the long axis)."""
    x0, y0 = origin
    h, w = local.shape
    mask = local.astype(bool)
    heights = np.full((h, w), height, np.float32)
    if ridge > height:
        cols, rows = np.meshgrid(np.arange(w) + x0 + 0.5, np.arange(h) + y0 + 0.5)
        east = cols * scene.gsd_m - scene.size_m / 2 - corners.mean(0)[0]
        north = scene.size_m / 2 - rows * scene.gsd_m - corners.mean(0)[1]
        across = np.abs(east * math.cos(axis) - north * math.sin(axis))
        half_w = np.linalg.norm(corners[0] - corners[1]) / 2
        heights += ((ridge - height) * np.clip(1 - across / half_w, 0, 1)).astype(np.float32)
    sl = (slice(y0, y0 + h), slice(x0, x0 + w))
    scene.height_m[sl][mask] = heights[mask]
    scene.classes[sl][mask] = BUILDING
    scene.building_id[sl][mask] = bid


def _place_trees(scene: Scene, style: Style, rng: np.random.Generator, roads: list[_Road]) -> None:
    """Street trees along road edges plus scattered trees (denser in grass), as dome-shaped canopies."""
    n, gsd = scene.classes.shape[0], scene.gsd_m
    spots = [_street_tree_spots(roads, style, rng, gsd)]
    count = int(style.tree_density_per_ha * (scene.size_m**2) / 1e4)
    spots.append(rng.uniform(0, n, (count * 3, 2)))
    xy = np.concatenate(spots)
    xy = xy[(xy >= 0).all(1) & (xy < n).all(1)]
    cls = scene.classes[xy[:, 1].astype(int), xy[:, 0].astype(int)]
    keep_prob = np.select([cls == GRASS, cls == GROUND, cls == PAVED], [0.9, 0.35, 0.1], 0.0)
    xy = xy[rng.random(len(xy)) < keep_prob]
    for x, y in xy:
        _stamp_tree(scene, x, y, rng.uniform(*style.tree_radius_m) / gsd, rng.uniform(*style.tree_height_m))


def _street_tree_spots(roads: list[_Road], style: Style, rng: np.random.Generator, gsd: float) -> np.ndarray:
    spots = []
    for road in roads:
        a, b = road.points_px[0], road.points_px[-1]
        d = b - a
        length = np.hypot(*d)
        k = int(length * gsd / style.street_tree_spacing_m)
        if k < 1 or rng.random() < 0.4:
            continue
        t = (np.arange(k) + 0.5)[:, None] / k
        side = np.array([-d[1], d[0]]) / length * (road.width_px / 2 + 2.5 / gsd)
        spots += [a + t * d + side, a + t * d - side]
    return np.concatenate(spots) if spots else np.zeros((0, 2))


def _stamp_tree(scene: Scene, x: float, y: float, radius_px: float, height_m: float) -> None:
    r = int(math.ceil(radius_px))
    x0, y0 = int(x) - r, int(y) - r
    if x0 < 0 or y0 < 0 or x0 + 2 * r + 1 > scene.classes.shape[1] or y0 + 2 * r + 1 > scene.classes.shape[0]:
        return
    yy, xx = np.mgrid[y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1] + 0.5
    d2 = ((xx - x) ** 2 + (yy - y) ** 2) / radius_px**2
    canopy = np.where(d2 < 1, height_m * (0.55 + 0.45 * np.sqrt(np.clip(1 - d2, 0, 1))), 0).astype(np.float32)
    sl = (slice(y0, y0 + 2 * r + 1), slice(x0, x0 + 2 * r + 1))
    on_top = (canopy > scene.height_m[sl]) & (scene.classes[sl] != BUILDING)
    scene.height_m[sl][on_top] = canopy[on_top]
    scene.classes[sl][on_top] = TREE

"""Drone views of an area by ray casting its 2.5D height map (facades, occlusion and parallax included).

Each pixel's ray is marched front to back from the height of the tallest surface under the view down to the
ground (or ``MAX_RANGE_M``): block steps over a conservative block-max height map, a per-cell search where a
surface may be met, and a bisection of the first cell below the surface (see :func:`cast_rays`). A hit on a
surface top takes the orthophoto colour there (from the ortho pyramid level matching the pixel footprint); a
hit on a building side takes the building's facade colour with floors and windows, lit by the sun according
to the facade normal. Vectorised numpy + cv2.remap.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_geoloc.sim.area import Area
from edge_geoloc.sim.camera import DronePose, PinholeCamera
from edge_geoloc.sim.layout import BUILDING, TREE
from edge_geoloc.sim.ortho import _vegetation_colours, sun_vector
from edge_geoloc.sim.photometric import random_photometric

_BISECTIONS = 4
_LEVELS = (8,)  # block sizes of the conservative height maps, in ortho pixels, coarse to fine
_CHUNK = 8  # steps per round at the coarsest level
MAX_RANGE_M = 600.0  # horizontal reach of a ray; beyond it, haze


def render_drone_view(area: Area, pose: DronePose, camera: PinholeCamera,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB image seen by ``camera`` at ``pose``; random photometric changes if ``rng`` is given."""
    dirs = world_directions(camera, pose.rotation_world_from_camera())
    footprint_m = pose.alt_agl_m / max(math.sin(pose.pitch_rad), 0.2) / camera.focal_px
    colour = shade_rays(area, pose.position, dirs, footprint_m)
    image = area.record_view(colour.reshape(camera.height_px, camera.width_px, 3), footprint_m)
    return random_photometric(image, rng) if rng is not None else image


def world_directions(camera: PinholeCamera, rotation: np.ndarray) -> np.ndarray:
    """(H*W, 3) float32 world ray directions of the pixel centres, for a world-from-camera rotation."""
    cam = camera.pixel_directions()
    out = np.empty((camera.height_px * camera.width_px, 3), np.float32)
    for axis in range(3):
        r = rotation[axis].astype(np.float32)
        out[:, axis] = (cam[..., 0] * r[0] + cam[..., 1] * r[1] + r[2]).ravel()
    return out


def shade_rays(area: Area, origin: np.ndarray, dirs: np.ndarray, footprint_m: float) -> np.ndarray:
    """(N, 3) uint8 colours of rays from ``origin`` (local east, north, up) along ``dirs`` (N, 3)."""
    t, facade = cast_rays(area, origin, dirs)
    colour = np.empty((len(dirs), 3), np.float32)
    sky = ~np.isfinite(t)
    colour[sky] = sky_colour(area, dirs[sky])
    hit = ~sky
    points = origin.astype(np.float32) + t[hit, None] * dirs[hit]
    top = ~facade[hit]
    colour_hit = np.empty((int(hit.sum()), 3), np.float32)
    colour_hit[top] = sample_ortho(area, points[top, 0], points[top, 1], footprint_m)
    colour_hit[~top] = facade_colour(area, points[~top], dirs[hit][~top])
    colour[hit] = colour_hit
    return np.clip(colour, 0, 255).astype(np.uint8)


def cast_rays(area: Area, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameter ``t`` of the first surface hit (inf: sky or beyond ``MAX_RANGE_M``) and whether the hit
    is on a side (facade).

    Hierarchical march: at each level (blocks of ``_LEVELS`` pixels, coarse to fine) a ray steps one block at
    a time over a conservative block-max height map (an upper bound of the surface within one block of any
    point); where it may meet a surface, the next finer level searches the two steps around that sample, and
    if it finds nothing the march resumes after them. The finest search samples every cell and bisects.
    """
    o = np.asarray(origin, np.float32)
    t_hit = np.full(len(dirs), np.inf, np.float32)
    facade = np.zeros(len(dirs), bool)
    speed_h = np.hypot(dirs[:, 0], dirs[:, 1]).astype(np.float32)
    going_down = dirs[:, 2] < -1e-6
    below_roofs = o[2] < float(_block_max(area, _LEVELS[-1]).max())  # rising rays can still hit a facade
    down = np.nonzero(going_down | (below_roofs & (speed_h > 1e-3)))[0]
    d, speed_h = dirs[down], np.maximum(speed_h[down], 1e-6)
    falling = d[:, 2] < -1e-6
    z_top = min(float(o[2]), _max_height_under(area, o, d[falling]) + 0.01)
    with np.errstate(divide="ignore"):
        start = np.where(falling, np.maximum(o[2] - z_top, 0) / -d[:, 2], 0.0).astype(np.float32)
        t_ground = np.where(falling, o[2] / -d[:, 2], np.inf)
    t_end = np.minimum(t_ground, MAX_RANGE_M / speed_h).astype(np.float32)
    found, result = _search(area, o, d, speed_h, start, t_end, 0)
    result[~found] = np.inf
    ok = np.isfinite(result)
    points = o + result[ok, None] * d[ok]
    surface = _lookup(_padded(area, "height", area.scene.height_m), area, 1, points[:, 0], points[:, 1])
    t_hit[down] = result
    facade[down[ok]] = points[:, 2] < surface - 0.3
    return t_hit, facade


def _search(area: Area, o: np.ndarray, d: np.ndarray, speed_h: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            level: int) -> tuple[np.ndarray, np.ndarray]:
    """(found, t) of the first hit of each ray in (lo, hi], marching at ``_LEVELS[level]``."""
    if level == len(_LEVELS):
        return _fine_hit(area, o, d, lo, hi, _LEVELS[-1])
    block = _LEVELS[level]
    grid = _block_max(area, block)
    step = block * area.gsd_m / speed_h
    chunk = _CHUNK if level == 0 else 2 * _LEVELS[level - 1] // block + 1  # a window is two parent steps
    found = np.zeros(len(d), bool)
    t_hit = np.full(len(d), np.inf, np.float32)
    cur = lo.copy()
    active = np.arange(len(d))
    while active.size:
        da, sa, ha = d[active], step[active], hi[active]
        ts = np.minimum(cur[active] + np.arange(1, chunk + 1, dtype=np.float32)[:, None] * sa, ha)  # (C, M)
        under = _lookup(grid, area, block, o[0] + ts * da[:, 0], o[1] + ts * da[:, 1]) + 1e-3
        fires = (o[2] + ts * da[:, 2] <= under) | (ts >= ha)
        resume = ts[-1].copy()
        idx = np.nonzero(fires.any(axis=0))[0]
        if idx.size:
            j = np.argmax(fires[:, idx], axis=0)
            sub_lo = np.where(j > 0, ts[np.maximum(j - 1, 0), idx], cur[active[idx]])
            sub_hi = np.minimum(ts[j, idx] + sa[idx], ha[idx])
            hit, t = _search(area, o, da[idx], speed_h[active[idx]], sub_lo, sub_hi, level + 1)
            found[active[idx]], t_hit[active[idx]] = hit, t
            resume[idx] = sub_hi
        cur[active] = resume
        active = active[~found[active] & (resume < ha)]
    return found, t_hit


def _fine_hit(area: Area, o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              parent_block: int) -> tuple[np.ndarray, np.ndarray]:
    """Whether each ray meets the surface in (lo, hi] (two parent steps), and where (bisected), sampling
    every <= 1 cell."""
    grid = _padded(area, "height", area.scene.height_m)
    k = 2 * parent_block + 1
    frac = (np.arange(1, k + 1, dtype=np.float32) / k)[:, None]
    ts = lo + frac * (hi - lo)
    below = o[2] + ts * d[:, 2] <= _lookup(grid, area, 1, o[0] + ts * d[:, 0], o[1] + ts * d[:, 1]) + 1e-3
    hit = below.any(axis=0)
    t = np.full(len(d), np.inf, np.float32)
    idx = np.nonzero(hit)[0]
    j = np.argmax(below[:, idx], axis=0)
    b = ts[j, idx]
    a = np.where(j > 0, ts[np.maximum(j - 1, 0), idx], lo[idx])
    o_h, d_h = o, d[idx]
    for _ in range(_BISECTIONS):
        mid = 0.5 * (a + b)
        surface = _lookup(grid, area, 1, o_h[0] + mid * d_h[:, 0], o_h[1] + mid * d_h[:, 1]) + 1e-3
        inside = o_h[2] + mid * d_h[:, 2] <= surface
        a, b = np.where(inside, a, mid), np.where(inside, mid, b)
    t[idx] = b
    return hit, t


def _lookup(grid: np.ndarray, area: Area, cell_px: int, east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """Value of the cell of a zero-padded grid (cells of ``cell_px`` ortho pixels) containing each point."""
    inv = 1.0 / (area.gsd_m * cell_px)
    half = area.size_m / 2
    size = grid.shape[0]
    col = ((east + half) * inv + 1).astype(np.int32)
    row = ((half - north) * inv + 1).astype(np.int32)
    np.clip(col, 0, size - 1, out=col)
    np.clip(row, 0, size - 1, out=row)
    row *= size
    row += col
    return grid.ravel()[row]


def _padded(area: Area, key: str, grid: np.ndarray) -> np.ndarray:
    """``grid`` with a ring of zeros (so clipped out-of-area lookups read ground), cached on the area."""
    if key not in area._cache:
        area._cache[key] = np.pad(grid, 1)
    return area._cache[key]


def _block_max(area: Area, block: int) -> np.ndarray:
    """Block-max heights (``block`` px blocks) dilated by one block, zero-padded: an upper bound of the surface
    within ``block`` pixels of any point of a block."""
    key = ("block_max", block)
    if key not in area._cache:
        h = area.scene.height_m
        n = -(-max(h.shape) // block) * block
        padded = np.zeros((n, n), np.float32)
        padded[: h.shape[0], : h.shape[1]] = h
        blocks = padded.reshape(n // block, block, n // block, block).max(axis=(1, 3))
        area._cache[key] = np.pad(cv2.dilate(blocks, np.ones((3, 3), np.uint8)), 1)
    return area._cache[key]


def _max_height_under(area: Area, origin: np.ndarray, dirs: np.ndarray) -> float:
    """Tallest surface inside the bounding box of the rays' ground points and the camera."""
    if len(dirs) == 0:
        return 0.0
    blocks = _block_max(area, _LEVELS[-1])
    ground = origin[:2] + (origin[2] / -dirs[:, 2])[:, None] * dirs[:, :2]
    half, step = area.size_m / 2, area.gsd_m * _LEVELS[-1]
    east = np.r_[ground[:, 0], origin[0]]
    north = np.r_[ground[:, 1], origin[1]]
    c0, c1 = (int(np.clip((v + half) // step + 1, 0, blocks.shape[1] - 1)) for v in (east.min(), east.max()))
    r0, r1 = (int(np.clip((half - v) // step + 1, 0, blocks.shape[0] - 1)) for v in (north.max(), north.min()))
    return float(blocks[r0:r1 + 1, c0:c1 + 1].max())


def sample_ortho(area: Area, east: np.ndarray, north: np.ndarray, footprint_m: float) -> np.ndarray:
    """(N, 3) float32 bilinear orthophoto colours at local points, from the pyramid level of the footprint."""
    level = max(0, min(5, int(math.floor(math.log2(max(footprint_m / area.gsd_m, 1.0))))))
    src = area.ortho_level(level)
    scale = area.gsd_m * 2**level
    half = area.size_m / 2
    map_x = ((east + half) / scale - 0.5).astype(np.float32).reshape(1, -1)
    map_y = ((half - north) / scale - 0.5).astype(np.float32).reshape(1, -1)
    if map_x.shape[1] == 0:
        return np.zeros((0, 3), np.float32)
    outside = tuple(float(v) for v in np.asarray(area.style.ground_color) * np.asarray(area.style.tint))
    out = _remap_rows(src, map_x, map_y, outside)
    return out.reshape(-1, 3).astype(np.float32)


def _remap_rows(src: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, outside: tuple) -> np.ndarray:
    """cv2.remap for a long 1-row map (split in rows of at most 16384, cv2's map-size limit); ``outside``
    is the colour beyond the area's border."""
    n = map_x.shape[1]
    width = 16384
    rows = -(-n // width)
    mx, my = np.zeros(rows * width, np.float32), np.zeros(rows * width, np.float32)
    mx[:n], my[:n] = map_x[0], map_y[0]
    out = cv2.remap(src, mx.reshape(rows, width), my.reshape(rows, width), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=outside)
    return out.reshape(rows * width, -1)[:n]


def _facade_normals(area: Area) -> tuple[np.ndarray, np.ndarray]:
    """Outward horizontal normals (east, north) of building/tree sides, from the smoothed occupancy gradient."""
    if "normals" not in area._cache:
        solid = cv2.GaussianBlur((area.scene.height_m > 0.5).astype(np.float32), (0, 0), 1.5)
        gx = -cv2.Sobel(solid, cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(solid, cv2.CV_32F, 0, 1)  # rows grow southwards: +north = -d/drow
        norm = np.hypot(gx, gy) + 1e-6
        area._cache["normals"] = (np.pad(gx / norm, 1), np.pad(gy / norm, 1))
    return area._cache["normals"]


def facade_colour(area: Area, points: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(N, 3) colours of hits on building sides (floors, windows) and tree sides, lit by the sun."""
    if len(points) == 0:
        return np.zeros((0, 3), np.float32)
    gsd, half = area.gsd_m, area.size_m / 2
    inset = points[:, :2] + 0.3 * gsd * dirs[:, :2] / (np.hypot(dirs[:, 0], dirs[:, 1])[:, None] + 1e-6)
    row = np.clip(((half - inset[:, 1]) / gsd).astype(np.int32), 0, area.scene.classes.shape[0] - 1)
    col = np.clip(((inset[:, 0] + half) / gsd).astype(np.int32), 0, area.scene.classes.shape[1] - 1)
    nx, ny = (a[row + 1, col + 1] for a in _facade_normals(area))
    sun = sun_vector(area.sun_azimuth_rad, area.sun_elevation_rad)
    light = 0.55 + 0.6 * np.clip(nx * sun[0] + ny * sun[1], 0, 1)
    ids = area.scene.building_id[row, col]
    table = np.concatenate([np.full((1, 3), 128, np.float32), area.scene.buildings[:, 10:13].astype(np.float32)])
    base = table[ids]
    along = points[:, 0] * -ny + points[:, 1] * nx
    floor = np.mod(points[:, 2], 3.2)
    window = (floor > 1.0) & (floor < 2.3) & (np.mod(along, 3.0) > 0.8) & (np.mod(along, 3.0) < 2.2)
    base[window] = base[window] * 0.3 + np.array([40, 55, 75], np.float32)
    cls = area.scene.classes[row, col]
    tree = (cls == TREE) | ((cls != BUILDING) & (ids == 0))
    leaves = np.modf(np.abs(np.sin(points[tree] @ np.array([12.9898, 78.233, 37.719])) * 43758.5453))[0]
    tree_rgb = _vegetation_colours(area.style, area.condition.season)[1]
    base[tree] = tree_rgb * (0.45 + 0.35 * leaves)[:, None]
    return base * light[:, None] * np.asarray(area.style.tint, np.float32)


def sky_colour(area: Area, dirs: np.ndarray) -> np.ndarray:
    """(N, 3) sky colours: the style's sky, brighter towards the horizon."""
    up = np.clip(dirs[:, 2] / (np.linalg.norm(dirs, axis=1) + 1e-9), 0, 1)
    sky = np.asarray(area.style.sky_color, np.float32)
    return sky * (1 - 0.35 * up[:, None]) + 255 * 0.35 * (1 - up[:, None]) * 0.5

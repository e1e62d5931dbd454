"""Ground-level views: equirectangular panoramas and level pinhole views from ~1.7 m, by ray casting.

For a camera with no roll and no pitch every image column is one azimuth, so the scene is sampled once per
column along the ground (dense near the camera, geometric further out) and the first surface a pixel's ray
meets is where the running maximum of ``(h(s) - h_cam) / s`` reaches the tangent of the pixel's elevation.
Heading: the panorama's centre column looks along ``heading_rad``; azimuth grows to the right (clockwise).
"""

from __future__ import annotations

import math

import numpy as np

from edge_geoloc.sim.area import Area
from edge_geoloc.sim.camera import PinholeCamera
from edge_geoloc.sim.layout import ROAD
from edge_geoloc.sim.render import _lookup, _padded, facade_colour, sample_ortho, sky_colour

MAX_DISTANCE_M = 600.0
_HAZE_M = 900.0
_NOMINAL_RANGE_M = 10.0  # a ground camera's sensor blur/resolution in metres is taken at this range


def _distances() -> np.ndarray:
    near = np.r_[0.05, np.arange(0.25, 40.0, 0.25)]
    far = 40.0 * 1.012 ** np.arange(1, int(math.log(MAX_DISTANCE_M / 40.0) / math.log(1.012)) + 1)
    return np.r_[near, far].astype(np.float32)


def render_ground_panorama(area: Area, east_m: float, north_m: float, heading_rad: float, height_m: float = 1.7,
                           width_px: int = 512, height_px: int = 256) -> np.ndarray:
    """(height_px, width_px, 3) uint8 equirectangular panorama (360 x 180 degrees) from a ground point."""
    _check_ground_args(area, east_m, north_m, height_m)
    if not (16 <= width_px <= 8192 and 8 <= height_px <= 4096):
        raise ValueError(f"panorama size must be width_px in [16, 8192], height_px in [8, 4096], got "
                         f"{width_px}x{height_px}")
    azimuth = heading_rad + ((np.arange(width_px) + 0.5) / width_px - 0.5) * 2 * math.pi
    elevation = (0.5 - (np.arange(height_px) + 0.5) / height_px) * math.pi
    tan_el = np.repeat(np.tan(np.clip(elevation, -1.5707, 1.5707))[:, None], width_px, axis=1)
    image = _render_columns(area, east_m, north_m, height_m, azimuth, tan_el)
    return area.record_view(image, _NOMINAL_RANGE_M * 2 * math.pi / width_px)


def render_ground_pinhole(area: Area, east_m: float, north_m: float, heading_rad: float, camera: PinholeCamera,
                          height_m: float = 1.7) -> np.ndarray:
    """(H, W, 3) uint8 level (no pitch, no roll) pinhole view looking along ``heading_rad``."""
    _check_ground_args(area, east_m, north_m, height_m)
    f = camera.focal_px
    x = (np.arange(camera.width_px) + 0.5 - camera.width_px / 2) / f
    y = (np.arange(camera.height_px) + 0.5 - camera.height_px / 2) / f
    azimuth = heading_rad + np.arctan(x)
    tan_el = -y[:, None] / np.sqrt(1 + x[None, :] ** 2)
    image = _render_columns(area, east_m, north_m, height_m, azimuth, tan_el)
    return area.record_view(image, _NOMINAL_RANGE_M / f)


def _check_ground_args(area: Area, east_m: float, north_m: float, height_m: float) -> None:
    if not (math.isfinite(height_m) and 0.1 <= height_m <= 100.0):
        raise ValueError(f"height_m (camera height above ground) must be in [0.1, 100] m, got {height_m}")
    half = area.size_m / 2
    if not (abs(east_m) < half and abs(north_m) < half):
        raise ValueError(f"ground camera at ({east_m}, {north_m}) m is outside the area (+-{half} m)")


def _render_columns(area: Area, east: float, north: float, cam_h: float, azimuth: np.ndarray,
                    tan_el: np.ndarray) -> np.ndarray:
    """Colours of rays given per column (azimuth, clockwise from north) and per pixel (tan of elevation)."""
    s = _distances()
    se, ce = np.sin(azimuth).astype(np.float32), np.cos(azimuth).astype(np.float32)
    px_e = east + s[:, None] * se  # (K, W)
    px_n = north + s[:, None] * ce
    grid = _padded(area, "height", area.scene.height_m)
    h = _lookup(grid, area, 1, px_e, px_n)
    horizon = np.maximum.accumulate((h - cam_h) / s[:, None], axis=0)  # (K, W)
    k_hit = np.stack([np.searchsorted(horizon[:, j], tan_el[:, j]) for j in range(len(azimuth))], axis=1)
    sky = k_hit >= len(s)
    k = np.minimum(k_hit, len(s) - 1)
    cols = np.broadcast_to(np.arange(len(azimuth)), k.shape)
    h_hit, dist = h[k, cols], s[k]
    s_prev = np.where(k > 0, s[np.maximum(k - 1, 0)], 0.0)
    facade = (cam_h + s_prev * tan_el < h_hit - 0.05) & ~sky & (k > 0)  # below the top one step earlier
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.where(tan_el < 0, (h_hit - cam_h) / tan_el, dist)
    dist = np.where(facade, dist, np.clip(exact, s_prev, dist)).astype(np.float32)
    dirs = np.stack([np.broadcast_to(se, k.shape), np.broadcast_to(ce, k.shape), tan_el.astype(np.float32)], -1)
    points = np.stack([east + dist * dirs[..., 0], north + dist * dirs[..., 1], cam_h + dist * tan_el], -1)
    colour = _colour_hits(area, points, dirs, dist, sky, facade)
    return np.clip(colour, 0, 255).astype(np.uint8)


def _colour_hits(area: Area, points: np.ndarray, dirs: np.ndarray, dist: np.ndarray, sky: np.ndarray,
                 facade: np.ndarray) -> np.ndarray:
    colour = np.empty(points.shape, np.float32)
    colour[sky] = sky_colour(area, dirs[sky])
    for level, (lo, hi) in enumerate(((0, 40), (40, 120), (120, np.inf))):
        top = ~sky & ~facade & (dist >= lo) & (dist < hi)
        footprint = area.gsd_m * 2**level
        colour[top] = sample_ortho(area, points[top][:, 0], points[top][:, 1], footprint)
    colour[facade] = facade_colour(area, points[facade], dirs[facade])
    haze = (1 - np.exp(-dist / _HAZE_M))[..., None] * ~sky[..., None]
    return colour * (1 - haze) + np.asarray(area.style.sky_color, np.float32) * haze


def sample_street_points(area: Area, count: int, rng: np.random.Generator, margin_m: float = 60.0) -> np.ndarray:
    """(count, 2) local (east_m, north_m) pixel centres on roads, at least ``margin_m`` inside the border."""
    classes = area.scene.classes
    margin = max(0, int(margin_m / area.gsd_m))
    inner = classes[margin:classes.shape[0] - margin, margin:classes.shape[1] - margin]
    rows, cols = np.nonzero(inner == ROAD)
    if rows.size == 0:
        raise ValueError(f"area {area.style_name}/{area.seed} has no road pixels {margin_m} m inside its border")
    pick = rng.choice(rows.size, size=count, replace=rows.size < count)
    east, north = area.pixel_to_local(rows[pick] + margin + 0.5, cols[pick] + margin + 0.5)
    return np.stack([east, north], -1)

"""Paint the true orthophoto of a :class:`~edge_geoloc.sim.layout.Scene`: textures, markings, shading, shadows.

Each class gets its style colour modulated by fractal noise (patchy grass, worn asphalt, rippled water,
parking stripes), roofs get their own colour, outline and sun shading (gabled roofs show a lit and a dark
side), trees a blobby shaded canopy, and every surface is darkened where the height map casts a shadow
along the sun direction. All vectorised on the full grid.

The painting follows a :class:`~edge_geoloc.sim.conditions.Condition`: its season recolours vegetation, thins
canopies and lays snow; its change draws cars and wears markings; its light (resolved by the caller into the
sun angles) casts the shadows. The layout generator ``rng`` is consumed the same way under every condition, so
the surface textures of a layout never change; draws that belong to the condition come from ``condition_rng``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_geoloc.sim.changes import CAR_COLOURS
from edge_geoloc.sim.conditions import LAYOUT, SNOW_RGB, Condition, Season
from edge_geoloc.sim.layout import (
    BUILDING,
    GRASS,
    GROUND,
    PAVED,
    ROAD,
    TREE,
    WATER,
    Scene,
    _cv_points,
    fbm_noise,
)
from edge_geoloc.sim.styles import Style


def sun_vector(azimuth_rad: float, elevation_rad: float) -> np.ndarray:
    """Unit vector (east, north, up) pointing to the sun; azimuth clockwise from north."""
    ce = math.cos(elevation_rad)
    return np.array([math.sin(azimuth_rad) * ce, math.cos(azimuth_rad) * ce, math.sin(elevation_rad)])


def paint_ortho(scene: Scene, style: Style, rng: np.random.Generator, roads: list, sun_az_rad: float,
                sun_el_rad: float, condition: Condition = LAYOUT, cars: np.ndarray | None = None,
                condition_rng: np.random.Generator | None = None) -> np.ndarray:
    """The (H, W, 3) uint8 RGB orthophoto of the scene under the given sun and condition (no sensor)."""
    shape = scene.classes.shape
    season = condition.season
    image = _class_colours(scene, style, rng, season)
    shade = _hillshade(scene, sun_az_rad, sun_el_rad)
    image *= shade[..., None]
    _draw_markings(image, roads, style, scene.gsd_m, condition.change.marking_visibility)
    grain = 1 + style.noise_strength * (fbm_noise(shape, rng, 16 / scene.gsd_m, 3)
                                        + 0.5 * rng.standard_normal(shape).astype(np.float32))
    image *= grain[..., None]
    crng = condition_rng if condition_rng is not None else np.random.default_rng(0)
    if cars is not None and cars.any():
        _paint_cars(image, cars, crng)
    if season.snow_cover > 0:
        _paint_snow(image, scene, season.snow_cover, crng)
    casting = _shadow_heights(scene, season.leaf_off)
    shadow = cv2.GaussianBlur(cast_shadows(casting, scene.gsd_m, sun_az_rad, sun_el_rad), (0, 0), 0.8)
    strength = style.shadow_strength if condition.light.shadow_strength is None else condition.light.shadow_strength
    tint = np.array([0.85, 0.9, 1.12], np.float32)
    image *= (1 - strength * shadow[..., None] * (2 - tint)).astype(np.float32)
    image *= np.asarray(style.tint, np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _vegetation_colours(style: Style, season: Season) -> tuple[np.ndarray, np.ndarray]:
    """(grass, tree) RGB under a season: dry grass fades to the ground colour, the tint recolours both."""
    veg = np.asarray(season.vegetation_tint, np.float32)
    ground = np.asarray(style.ground_color, np.float32)
    grass = (np.asarray(style.grass_color, np.float32) * (1 - season.grass_dryness) + ground * season.grass_dryness)
    return grass * veg, np.asarray(style.tree_color, np.float32) * veg


def _shadow_heights(scene: Scene, leaf_off: float) -> np.ndarray:
    """Heights that cast shadows: bare trees let most light through, so their canopy casts less."""
    if leaf_off <= 0:
        return scene.height_m
    heights = scene.height_m.copy()
    trees = scene.classes == TREE
    heights[trees] *= 1 - 0.6 * leaf_off
    return heights


def _paint_cars(image: np.ndarray, cars: np.ndarray, rng: np.random.Generator) -> None:
    """Cars (mask values = colour index + 1) with a darker windscreen band from per-car shading."""
    on = cars > 0
    lut = np.concatenate([np.zeros((1, 3), np.float32), np.asarray(CAR_COLOURS, np.float32)])
    shade = rng.uniform(0.8, 1.1, int(on.sum())).astype(np.float32)
    interior = cv2.erode(on.astype(np.uint8), np.ones((3, 3), np.uint8))[on] > 0
    image[on] = lut[cars[on]] * np.where(interior, shade, 0.55)[:, None]


def _paint_snow(image: np.ndarray, scene: Scene, cover: float, rng: np.random.Generator) -> None:
    """Snow over ``cover`` of open ground, lots and flat roofs, in patches (roads are cleared)."""
    cls = scene.classes
    field = fbm_noise(cls.shape, rng, 25 / scene.gsd_m, 3)
    threshold = np.quantile(field, 1 - cover)
    flat_roof = (cls == BUILDING) & (scene.height_m == cv2.erode(scene.height_m, np.ones((3, 3), np.uint8)))
    snowy = ((cls == GROUND) | (cls == GRASS) | (cls == PAVED) | flat_roof) & (field >= threshold)
    depth = np.clip((field[snowy] - threshold) * 6 + 0.55, 0, 0.92)[:, None]
    image[snowy] = image[snowy] * (1 - depth) + np.asarray(SNOW_RGB, np.float32) * depth


def _class_colours(scene: Scene, style: Style, rng: np.random.Generator, season: Season) -> np.ndarray:
    shape, gsd, cls = scene.classes.shape, scene.gsd_m, scene.classes
    grass, tree = _vegetation_colours(style, season)
    lut = np.zeros((8, 3), np.float32)
    for k, colour in ((GROUND, style.ground_color), (GRASS, grass), (ROAD, style.road_color),
                      (WATER, style.water_color), (TREE, tree), (PAVED, style.paved_color)):
        lut[k] = colour
    image = lut[cls]
    patch = 1 / (1 + np.exp(-3 * fbm_noise(shape, rng, 30 / gsd)))[..., None]
    soil = (cls == GROUND) | (cls == GRASS)
    mixed = np.where(cls[..., None] == GRASS, lut[GRASS] * (1.1 - 0.3 * patch) + lut[GROUND] * 0.2 * patch,
                     lut[GROUND] * (0.9 + 0.2 * patch))
    image[soil] = mixed[soil]
    fine = fbm_noise(shape, rng, 2 / gsd, 2)
    trees = cls == TREE
    image[trees] *= (0.75 + 0.3 * fine[trees])[:, None]
    if season.leaf_off > 0:  # bare crowns: the ground shows through a web of dark branches
        under = lut[GROUND] * (0.9 + 0.2 * patch[trees])
        branches = np.clip(0.55 + 0.9 * fine[trees], 0.35, 1.0)[:, None]
        bare = under * branches * np.asarray([0.82, 0.78, 0.74], np.float32)
        image[trees] = image[trees] * (1 - 0.8 * season.leaf_off) + bare * 0.8 * season.leaf_off
    water = cls == WATER
    image[water] *= (0.9 + 0.12 * fbm_noise(shape, rng, 12 / gsd, 3)[water])[:, None]
    _paint_paved(image, cls == PAVED, rng, gsd)
    _paint_roofs(image, scene, fine, rng)
    return image


def _paint_paved(image: np.ndarray, paved: np.ndarray, rng: np.random.Generator, gsd: float) -> None:
    """Parking stripes every 2.6 m along a random direction."""
    rows, cols = np.nonzero(paved)
    ang = rng.uniform(0, math.pi)
    phase = ((cols * math.cos(ang) + rows * math.sin(ang)) * gsd / 2.6) % 1.0
    image[rows, cols] *= np.where(phase < 0.12, 1.35, 1.0)[:, None].astype(np.float32)


def _paint_roofs(image: np.ndarray, scene: Scene, fine: np.ndarray, rng: np.random.Generator) -> None:
    """Per-building roof colour, texture, a dark outline and lighter ~3 m rooftop units on flat roofs."""
    if len(scene.buildings) == 0:
        return
    roof_lut = np.concatenate([np.zeros((1, 3), np.float32), scene.buildings[:, 7:10]])
    ids = scene.building_id
    inside = ids > 0
    roof = roof_lut[ids[inside]] * (1 + 0.08 * fine[inside])[:, None]
    interior = cv2.erode((ids > 0).astype(np.uint8), np.ones((3, 3), np.uint8))[inside] > 0
    same = cv2.erode(ids.astype(np.float32), np.ones((3, 3), np.uint8))[inside] == ids[inside]
    roof *= np.where(interior & same, 1.0, 0.7)[:, None]
    flat = (scene.buildings[:, 6] <= scene.buildings[:, 5])[ids[inside] - 1]
    h, w = ids.shape
    cell = max(1, int(round(3.0 / scene.gsd_m)))
    blocks = rng.standard_normal((h // cell + 1, w // cell + 1)).astype(np.float32)
    blocks = np.kron(blocks, np.ones((cell, cell), np.float32))[:h, :w]
    units = flat & interior & (blocks[inside] > 1.7)
    roof[units] = np.minimum(roof[units] * 1.35 + 20, 255)
    image[inside] = roof


def _hillshade(scene: Scene, sun_az_rad: float, sun_el_rad: float) -> np.ndarray:
    """Lambert factor of roof and canopy slopes relative to flat ground (1.0 on flat surfaces)."""
    h = cv2.GaussianBlur(scene.height_m, (0, 0), 0.7)
    dzdx = cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3) / (8 * scene.gsd_m)
    dzdy = -cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3) / (8 * scene.gsd_m)  # rows grow southwards
    dzdx, dzdy = np.clip(dzdx, -2, 2), np.clip(dzdy, -2, 2)
    sun = sun_vector(sun_az_rad, sun_el_rad)
    lambert = (-dzdx * sun[0] - dzdy * sun[1] + sun[2]) / np.sqrt(1 + dzdx**2 + dzdy**2)
    shade = np.clip(lambert / sun[2], 0.35, 1.5).astype(np.float32)
    surfaces = (scene.classes == TREE) | (
        cv2.erode((scene.building_id > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    return np.where(surfaces, 0.6 + 0.4 * shade, 1.0).astype(np.float32)


def _draw_markings(image: np.ndarray, roads: list, style: Style, gsd: float, visibility: float = 1.0) -> None:
    """Dashed centre lines (3 m dash, 3 m gap) on roads at least 8 m wide, ``visibility`` 0 (worn) .. 1."""
    mask = np.zeros(image.shape[:2], np.uint8)
    for road in roads:
        if road.width_px * gsd < 8.0:
            continue
        pts = road.points_px
        seg = np.cumsum(np.r_[0, np.hypot(*np.diff(pts, axis=0).T)]) * gsd
        s = np.arange(0, seg[-1], 3.0)
        dense = np.stack([np.interp(s, seg, pts[:, 0]), np.interp(s, seg, pts[:, 1])], -1)
        dashes = [_cv_points(dense[i:i + 2]) for i in range(0, len(dense) - 1, 2)]
        cv2.polylines(mask, dashes, False, 1, max(1, int(round(0.3 / gsd))), cv2.LINE_8, 4)
    on = mask > 0
    weight = 0.7 * visibility
    image[on] = (1 - weight) * image[on] + weight * np.asarray(style.marking_color, np.float32)


def cast_shadows(height_m: np.ndarray, gsd_m: float, sun_az_rad: float, sun_el_rad: float) -> np.ndarray:
    """(H, W) float32 in {0, 1}: 1 where the surface is in the shadow of a taller one.

    The height map is rotated so that the direction away from the sun points down the rows, then a
    running "shadow top" is scanned row by row: ``top[i] = max(h[i], top[i-1] - gsd * tan(elevation))``;
    a cell is shadowed where ``top[i-1] - gsd * tan(elevation)`` is above its own height.
    """
    n_rows, n_cols = height_m.shape
    size = int(math.ceil(math.hypot(n_rows, n_cols))) + 2
    away = np.array([-math.sin(sun_az_rad), math.cos(sun_az_rad)])  # (x right, y down) away from the sun
    across = np.array([away[1], -away[0]])
    c_in = np.array([(n_cols - 1) / 2, (n_rows - 1) / 2])
    c_out = (size - 1) / 2
    to_input = np.array([[across[0], away[0], c_in[0] - c_out * (across[0] + away[0])],
                         [across[1], away[1], c_in[1] - c_out * (across[1] + away[1])]])
    rotated = cv2.warpAffine(height_m, to_input, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    drop = gsd_m * math.tan(sun_el_rad)
    shadow = np.zeros_like(rotated)
    top = rotated[0].copy()
    for i in range(1, size):
        top -= drop
        row = rotated[i]
        shadow[i] = top > row + 0.05
        np.maximum(top, row, out=top)
    to_rotated = np.array([[across[0], across[1], c_out - across @ c_in],
                           [away[0], away[1], c_out - away @ c_in]])
    return cv2.warpAffine(shadow, to_rotated, (n_cols, n_rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)

"""View alignment: turn a camera frame into the map's geometry (north-up, metres per pixel) before matching.

Owned by the geo layer because training, the on-board runtime and the classical baselines all apply it the same
way; it needs numpy and OpenCV only (no torch).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def align_query_north_up(image: np.ndarray, heading_rad: float, query_kind: str) -> np.ndarray:
    """Rotate a query so that it looks as if taken with heading 0 (north-up / north-centred).

    Drone (nadir) view: the image "up" points along ``heading_rad``, so the image is turned clockwise by the
    heading about its centre (corners that fall outside are black). Panorama: columns are rolled so that
    north is the centre column. Pinhole images cannot be aligned; that is an error.
    """
    if query_kind == "ground_pano":
        shift = int(round(heading_rad / (2 * math.pi) * image.shape[1]))
        return np.roll(image, shift, axis=1)
    if query_kind != "drone":
        raise ValueError("only drone views and panoramas can be rotated north-up; use orientation bins instead")
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), -math.degrees(heading_rad), 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def nadir_footprint_m(altitude_agl_m: float, hfov_deg: float) -> float:
    """Ground width seen across a nadir pinhole image: ``2 * altitude * tan(hfov / 2)``."""
    return 2.0 * altitude_agl_m * math.tan(math.radians(hfov_deg) / 2.0)


def align_query_scale(image: np.ndarray, altitude_agl_m: float, hfov_deg: float, ground_size_m: float,
                      out_px: int) -> np.ndarray:
    """Cut the ``ground_size_m`` x ``ground_size_m`` ground square around a nadir view's centre (the point below
    the camera) and resample it to ``out_px`` x ``out_px``, i.e. to ``ground_size_m / out_px`` m/px.

    Run after :func:`align_query_north_up`; parts of the square outside the image are black. Square pixels
    are assumed (the vertical scale equals the horizontal one).
    """
    if not (altitude_agl_m and altitude_agl_m > 0 and hfov_deg and 0 < hfov_deg < 180):
        raise ValueError(f"scale alignment needs altitude_agl_m > 0 and 0 < hfov_deg < 180, got {altitude_agl_m}, "
                         f"{hfov_deg}; record them per sample (PairWriter.add) or per frame (CameraFrame)")
    h, w = image.shape[:2]
    src_per_m = w / nadir_footprint_m(altitude_agl_m, hfov_deg)
    scale = out_px / (ground_size_m * src_per_m)  # output px per source px
    c_out, c_row, c_col = (out_px - 1) / 2, (h - 1) / 2, (w - 1) / 2  # centres, integer-centre convention
    matrix = np.array([[scale, 0.0, c_out - scale * c_col], [0.0, scale, c_out - scale * c_row]])
    if scale < 0.75:  # strong reduction: low-pass first (warpAffine has no area filter)
        image = cv2.GaussianBlur(image, (0, 0), 0.5 / scale)
    return cv2.warpAffine(image, matrix, (out_px, out_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def pinhole_to_panorama(image: np.ndarray, hfov_deg: float, pano_wh: tuple[int, int]) -> np.ndarray:
    """A level front pinhole view (principal point at the centre, square pixels) resampled into the equirectangular
    panorama it is part of (``pano_wh`` = (width, height), 360 x 180 deg, its centre column along the camera's
    axis, as a captured panorama is along the heading); black outside the camera's field of view. A panorama
    localizer (a BEV matcher) can then read a pinhole camera's wedge of ground."""
    if not 1.0 <= hfov_deg <= 170.0:
        raise ValueError(f"hfov_deg must be in [1, 170], got {hfov_deg}")
    h, w = image.shape[:2]
    pw, ph = pano_wh
    f = (w / 2) / math.tan(math.radians(hfov_deg) / 2)
    azimuth = ((np.arange(pw) + 0.5) / pw - 0.5) * 2 * math.pi
    elevation = (0.5 - (np.arange(ph) + 0.5) / ph) * math.pi
    x = np.tan(np.clip(azimuth, -1.5, 1.5))[None, :]  # columns beyond +-86 deg are outside any hfov <= 170 deg
    y = -np.tan(np.clip(elevation, -1.5, 1.5))[:, None] * np.sqrt(1 + x**2)
    map_x = np.broadcast_to(x * f + w / 2 - 0.5, (ph, pw)).astype(np.float32)
    map_y = (y * f + h / 2 - 0.5).astype(np.float32)
    map_x = np.where(np.abs(azimuth)[None, :] < math.radians(hfov_deg) / 2, map_x, -10.0).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

"""The classical baseline for ground cameras: a bird's-eye view of the panorama matched against the map by NCC.

A level equirectangular panorama taken ``camera_height_m`` above flat ground sees the ground point at distance
``d`` and azimuth ``a`` (clockwise from north) at elevation ``-atan(h / d)``. Resampling the north-aligned
panorama at those directions for a square of ground around the camera gives a north-up bird's-eye view (BEV)
in metres per pixel, which is matched with OpenCV's ``TM_CCOEFF_NORMED`` against the aerial patch. Anything
standing on the ground (walls, trees, cars) is smeared outwards in the BEV, so the match relies on the flat
texture around the vehicle (road, kerbs, grass); it is the bar a learned ground localizer has to beat.

:class:`BevNccLocalizer` fits the pipeline's ``Localizer`` protocol: it declares north-up panorama queries
(the runtime rotates the panorama by the measured heading first) and the aerial patch it wants; ``locate``
returns a heat map over the patch (a softmax of the NCC scores at temperature ``temperature``, zero where the
BEV does not fit). numpy and OpenCV only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_geoloc.runtime.query_alignment import QueryAlignment


@dataclass(frozen=True)
class BevNccConfig:
    bev_size_m: float = 24.0  # side of the ground square around the camera that is projected and matched
    m_per_px: float = 0.5  # matching resolution (BEV and aerial patch)
    camera_height_m: float = 1.7
    min_distance_m: float = 2.0  # ground closer than this (the vehicle itself) is left out
    aerial_size_m: float = 96.0  # ground side of the aerial patch the pipeline cuts around the prior
    temperature: float = 0.03  # softmax temperature on NCC scores (lower: sharper heat map)

    def __post_init__(self) -> None:
        if not (self.m_per_px > 0 and self.bev_size_m / self.m_per_px >= 8 and self.camera_height_m > 0):
            raise ValueError(f"BEV needs bev_size_m / m_per_px >= 8 pixels and camera_height_m > 0, got "
                             f"{self.bev_size_m} m at {self.m_per_px} m/px, height {self.camera_height_m} m")
        if self.aerial_size_m <= self.bev_size_m or self.temperature <= 0:
            raise ValueError("aerial_size_m must exceed bev_size_m and temperature must be > 0")


def panorama_to_bev(panorama: np.ndarray, cfg: BevNccConfig) -> tuple[np.ndarray, np.ndarray]:
    """(BEV image (S, S, 3) float32, valid mask (S, S) uint8) of a north-aligned panorama (centre column = north,
    azimuth growing to the right), north up, ``cfg.m_per_px`` per pixel, the camera at the centre."""
    h, w = panorama.shape[:2]
    side = int(round(cfg.bev_size_m / cfg.m_per_px))
    offsets = (np.arange(side) + 0.5 - side / 2) * cfg.m_per_px
    east, north = np.meshgrid(offsets, -offsets)  # row 0 is the north edge
    distance = np.hypot(east, north)
    azimuth = np.arctan2(east, north)  # clockwise from north, 0 at the centre column
    elevation = -np.arctan2(cfg.camera_height_m, np.maximum(distance, 1e-3))
    map_x = ((azimuth / (2 * math.pi) + 0.5) * w - 0.5).astype(np.float32)
    map_y = ((0.5 - elevation / math.pi) * h - 0.5).astype(np.float32)
    bev = cv2.remap(panorama.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return bev, (distance >= cfg.min_distance_m).astype(np.uint8)


def masked_bev_rgb(panorama: np.ndarray, cfg: BevNccConfig) -> np.ndarray:
    """(S, S, 3) uint8 BEV of a north-aligned panorama with the left-out centre (the vehicle) black: the image a
    learned BEV matcher sees, in training (:mod:`edge_geoloc.data.ground_bev_pairs`) and on the vehicle."""
    bev, mask = panorama_to_bev(panorama, cfg)
    return np.clip(bev * mask[..., None] + 0.5, 0, 255).astype(np.uint8)


def gradient_features(image: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 horizontal and vertical gradients of the lightly blurred grey image: edges (kerbs,
    lane marks, footprints) survive a change of season, sun and sensor better than colours do."""
    grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
    return np.dstack([cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)])


class BevNccLocalizer:
    """Heat-map localizer (pipeline ``Localizer``) for north-aligned panoramas by BEV + NCC; see the module doc."""

    alignment = QueryAlignment(north_up=True, query_kind="ground_pano")

    def __init__(self, cfg: BevNccConfig | None = None) -> None:
        self.cfg = cfg or BevNccConfig()
        self.aerial_size_m = self.cfg.aerial_size_m
        self.aerial_px = int(round(self.cfg.aerial_size_m / self.cfg.m_per_px))

    def locate(self, query_rgb: np.ndarray, aerial_rgb: np.ndarray) -> np.ndarray:
        """Heat map ``(Ha, Wa)`` (sums to 1) of the camera's position over the aerial patch."""
        bev, mask = panorama_to_bev(query_rgb, self.cfg)
        aerial = aerial_rgb.astype(np.float32)
        if aerial.shape[0] != self.aerial_px or aerial.shape[1] != self.aerial_px:
            aerial = cv2.resize(aerial, (self.aerial_px, self.aerial_px), interpolation=cv2.INTER_AREA)
        scores = cv2.matchTemplate(gradient_features(aerial), gradient_features(bev), cv2.TM_CCOEFF_NORMED,
                                   mask=np.repeat(mask[..., None], 2, axis=2))  # (A - S + 1, A - S + 1)
        scores = np.clip(np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0), -1.0, 1.0)  # flat windows
        return self._heatmap(scores, bev.shape[0], aerial_rgb.shape[:2])

    def _heatmap(self, scores: np.ndarray, side: int, out_hw: tuple[int, int]) -> np.ndarray:
        logits = (scores - scores.max()) / self.cfg.temperature
        probs = np.exp(logits)
        heat = np.zeros((self.aerial_px, self.aerial_px), dtype=np.float64)
        top = side // 2  # a template placed at (i, j) has its centre (the camera) at (i + side / 2, j + side / 2)
        heat[top:top + probs.shape[0], top:top + probs.shape[1]] = probs
        if heat.shape != tuple(out_hw):
            heat = cv2.resize(heat, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_AREA)
        return heat / heat.sum()

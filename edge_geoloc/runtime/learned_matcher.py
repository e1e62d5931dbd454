"""Global search with the learned map matcher: where on the whole map (or in which tile) a camera frame is.

The same job as the classical :class:`~edge_geoloc.runtime.classical.NccMatcher`, on learned features instead of
grey levels (:mod:`edge_geoloc.models.map_matcher`): the map's feature map is computed once, the aligned frame's
features each time, and the score of a position is the cosine similarity of the frame's features with the map's
window there (numpy and OpenCV; per channel ``TM_CCORR``, normalised by the window's energy). The network runs
behind a plain callable, so the vehicle uses the exported ONNX/TensorRT graph and a benchmark may pass the
PyTorch model; this module never imports torch.

``features(image_rgb (H, W, 3) uint8) -> (C, H / stride, W / stride) float32``, image north-up at ``m_per_px``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge_geoloc.geo.view_alignment import align_query_north_up, align_query_scale
from edge_geoloc.runtime.classical import NccMatch

FeatureFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LearnedMatcherConfig:
    ground_size_m: float = 80.0  # the frame is cut to this much ground (the model's query_ground_size_m)
    m_per_px: float = 1.0  # the model's input resolution
    stride: int = 4  # pixels per feature cell
    exclusion_m: float = 20.0  # the runner-up peak is searched outside this radius of the best

    def __post_init__(self) -> None:
        if not (self.ground_size_m > 0 and self.m_per_px > 0 and self.stride >= 1):
            raise ValueError("learned matcher needs ground_size_m > 0, m_per_px > 0, stride >= 1")
        if self.ground_size_m / self.m_per_px / self.stride < 2:
            raise ValueError(f"a {self.ground_size_m} m frame at {self.m_per_px} m/px gives under 2 feature cells")

    @property
    def cell_m(self) -> float:
        return self.m_per_px * self.stride

    @property
    def frame_px(self) -> int:
        """Frame side in model pixels, a multiple of the stride."""
        return int(round(self.ground_size_m / self.m_per_px / self.stride)) * self.stride


class LearnedMatcher:
    """Learned-feature matching of aligned frames against one north-up map image."""

    def __init__(self, map_rgb: np.ndarray, west_m: float, north_m: float, map_m_per_px: float,
                 features: FeatureFn, config: LearnedMatcherConfig | None = None) -> None:
        if map_rgb.ndim != 3 or map_rgb.shape[2] != 3:
            raise ValueError(f"map must be an (H, W, 3) RGB image, got {map_rgb.shape}")
        if not (math.isfinite(map_m_per_px) and map_m_per_px > 0):
            raise ValueError(f"map_m_per_px must be > 0, got {map_m_per_px}")
        self.config, self.features = config or LearnedMatcherConfig(), features
        c = self.config
        scale = map_m_per_px / c.m_per_px
        h, w = (int(round(n * scale)) // c.stride * c.stride for n in map_rgb.shape[:2])
        if min(h, w) < c.frame_px:
            raise ValueError(f"map of {map_rgb.shape[:2]} px at {map_m_per_px} m/px is smaller than one frame")
        resized = cv2.resize(map_rgb, (w, h), interpolation=cv2.INTER_AREA)
        self.map_features = self._checked(features(resized), (h // c.stride, w // c.stride))
        self.west_m, self.north_m = float(west_m), float(north_m)
        self._energy: dict[int, np.ndarray] = {}

    @staticmethod
    def _checked(feats: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 3 or feats.shape[1:] != hw:
            raise ValueError(f"features must be (C, {hw[0]}, {hw[1]}) for this image, got {feats.shape}")
        if not np.isfinite(feats).all():
            raise ValueError("features contain NaN or inf")
        return feats

    def prepare(self, frame_rgb: np.ndarray, heading_rad: float, altitude_agl_m: float, hfov_deg: float) -> np.ndarray:
        """The frame's unit-norm feature map: north-up by the heading, cut to ``ground_size_m`` of ground."""
        c = self.config
        north_up = align_query_north_up(frame_rgb, heading_rad, "drone")
        cut = align_query_scale(north_up, altitude_agl_m, hfov_deg, c.ground_size_m, c.frame_px)
        return self.prepare_aligned(cut)

    def prepare_aligned(self, aligned_rgb: np.ndarray) -> np.ndarray:
        """Features of a frame already north-up and cut to ``ground_size_m`` (resized to the model's pixels)."""
        c = self.config
        if aligned_rgb.shape[:2] != (c.frame_px, c.frame_px):
            aligned_rgb = cv2.resize(aligned_rgb, (c.frame_px, c.frame_px), interpolation=cv2.INTER_AREA)
        k = c.frame_px // c.stride
        feats = self._checked(self.features(aligned_rgb), (k, k))
        return feats / (np.linalg.norm(feats) + 1e-6)

    def score_map(self, query: np.ndarray) -> np.ndarray:
        """(H - k + 1, W - k + 1) cosine similarity of the frame with each map window (top-left cell indexing)."""
        k = query.shape[-1]
        dot = np.zeros((self.map_features.shape[1] - k + 1, self.map_features.shape[2] - k + 1), np.float32)
        for channel, template in zip(self.map_features, query, strict=True):
            dot += cv2.matchTemplate(channel, np.ascontiguousarray(template), cv2.TM_CCORR)
        return dot / np.sqrt(self._window_energy(k) + 1e-6)

    def _window_energy(self, k: int) -> np.ndarray:
        if k not in self._energy:
            squares = np.ascontiguousarray((self.map_features**2).sum(axis=0))
            self._energy[k] = cv2.boxFilter(squares, -1, (k, k), anchor=(0, 0), normalize=False,
                                            borderType=cv2.BORDER_CONSTANT)[: squares.shape[0] - k + 1,
                                                                             : squares.shape[1] - k + 1]
        return self._energy[k]

    def cell_centre_en(self, row: float, col: float, k: int) -> tuple[float, float]:
        """Map east/north of the centre of the window whose top-left feature cell is ``(row, col)``."""
        cell = self.config.cell_m
        return self.west_m + (col + k / 2) * cell, self.north_m - (row + k / 2) * cell

    def locate(self, query: np.ndarray, prior_en: tuple[float, float] | None = None,
               radius_m: float | None = None) -> NccMatch:
        """Best position over the whole map, or within ``radius_m`` of ``prior_en``."""
        scores = self.score_map(query)
        k = query.shape[-1]
        if prior_en is not None and radius_m is not None:
            scores = np.where(self._near(scores.shape, k, prior_en, radius_m), scores, -1.0)
        row, col = np.unravel_index(int(np.argmax(scores)), scores.shape)
        best = float(scores[row, col])
        r = int(math.ceil(self.config.exclusion_m / self.config.cell_m))
        masked = scores.copy()
        masked[max(0, row - r):row + r + 1, max(0, col - r):col + r + 1] = -1.0
        east, north = self.cell_centre_en(row, col, k)
        return NccMatch(east, north, best, float(masked.max()))

    def _near(self, shape: tuple[int, int], k: int, centre_en: tuple[float, float], radius_m: float) -> np.ndarray:
        rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
        east, north = self.cell_centre_en(rows, cols, k)
        return np.maximum(np.abs(east - centre_en[0]), np.abs(north - centre_en[1])) <= radius_m

    def tile_scores(self, query: np.ndarray, centres_en: np.ndarray, radius_m: float) -> np.ndarray:
        """(N,) best score of the frame centred within ``radius_m`` (each axis) of each tile centre: retrieval
        over tiles as ``build-index`` cuts them, with the map's real surroundings instead of zero padding."""
        scores = self.score_map(query)
        k = query.shape[-1]
        cell = self.config.cell_m
        out = np.full(len(centres_en), -1.0, np.float32)
        for i, (east, north) in enumerate(np.asarray(centres_en, dtype=float)):
            col = (east - self.west_m) / cell - k / 2
            row = (self.north_m - north) / cell - k / 2
            reach = radius_m / cell
            r0, r1 = max(0, int(math.floor(row - reach))), min(scores.shape[0], int(math.ceil(row + reach)) + 1)
            c0, c1 = max(0, int(math.floor(col - reach))), min(scores.shape[1], int(math.ceil(col + reach)) + 1)
            if r1 > r0 and c1 > c0:
                out[i] = scores[r0:r1, c0:c1].max()
        return out

"""Learned BEV matcher for ground cameras (cars): the classical BEV of the panorama, matched by learned features.

The panorama, rolled north-up by the measured heading (the runtime does it, as for :class:`BevNccLocalizer`), is
projected to a north-up bird's-eye view (:func:`~edge_geoloc.runtime.classical_ground.masked_bev_rgb`, the same
projection the training pairs use); the BEV and the aerial patch around the prior go through the learned map
matcher's network (:mod:`edge_geoloc.models.map_matcher`, trained on ground pairs by
:mod:`edge_geoloc.data.ground_bev_pairs`), and the cosine score of every position
(:meth:`~edge_geoloc.runtime.learned_matcher.LearnedMatcher.score_map`) becomes a heat map over the patch, a
softmax at ``temperature`` (zero where the BEV does not fit). It fits the pipeline's ``Localizer`` protocol.

Unknown heading (``heading_bins > 0``; the vehicle gives no heading): the panorama as captured is rolled to each of
``heading_bins`` candidate headings, each BEV is scored over the patch, and every position keeps its best heading;
the heat map is the softmax over positions of those best scores, and :meth:`LearnedBevLocalizer.orientation_at`
gives the heading at the mode (the pipeline hands it to the filter, as CCVPE's orientation output).

A front pinhole camera (``camera: pinhole``): the runtime puts each frame into its wedge of a panorama
(:func:`~edge_geoloc.geo.view_alignment.pinhole_to_panorama`, from the camera_info's field of view; a frame
without it is skipped and counted ``missing_camera_info``), which then goes the panorama's way; the BEV holds only
the ground ahead (``benchmarks/ground_localizer.py``'s pinhole rows measure this path).
numpy and OpenCV only: the network is a features callable (the exported graph on the vehicle, the PyTorch model
in a benchmark). An exported matcher serves as a car's localizer only when its sidecar declares panorama queries
(``preprocessing.image.camera: panorama``, :func:`learned_bev_localizer`); a drone's (nadir) matcher is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edge_geoloc.geo.view_alignment import align_query_north_up
from edge_geoloc.runtime.classical_ground import BevNccConfig, masked_bev_rgb
from edge_geoloc.runtime.learned_matcher import BackendFeatures, FeatureFn, LearnedMatcher, LearnedMatcherConfig
from edge_geoloc.runtime.query_alignment import QueryAlignment

GROUND_CAMERAS = ("panorama", "pinhole")  # the vehicle's camera a BEV matcher (trained on panoramas) can read


@dataclass(frozen=True)
class LearnedBevConfig:
    bev_size_m: float = 32.0  # the matcher's query_ground_size_m
    m_per_px: float = 0.5  # the matcher's input resolution
    stride: int = 4  # the matcher's pixels per feature cell
    camera_height_m: float = 1.7
    min_distance_m: float = 2.0
    aerial_size_m: float = 96.0  # ground side of the aerial patch the pipeline cuts around the prior
    temperature: float = 0.03  # softmax temperature on cosine scores
    heading_bins: int = 0  # > 0: heading unknown, search that many headings (orientation output); 0: north-up input
    camera: str = "panorama"  # "pinhole": a front camera, its frames put into their wedge of a panorama of pano_wh
    pano_wh: tuple[int, int] = (256, 128)  # (width, height) of that panorama (the training panoramas' size)

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.stride < 1 or self.heading_bins < 0:
            raise ValueError(f"temperature must be > 0, stride >= 1 and heading_bins >= 0, got {self.temperature}, "
                             f"{self.stride}, {self.heading_bins}")
        if self.camera not in GROUND_CAMERAS:
            raise ValueError(f"camera must be one of {GROUND_CAMERAS}, got {self.camera!r}")
        if round(self.bev_size_m / self.m_per_px) % self.stride:
            raise ValueError(f"the BEV ({self.bev_size_m} m at {self.m_per_px} m/px) must be a multiple of the "
                             f"stride {self.stride} pixels")

    @classmethod
    def from_preprocessing(cls, image: Mapping[str, Any], **overrides: Any) -> LearnedBevConfig:
        """Geometry from the matcher checkpoint's ``preprocessing["image"]`` block; the rest from ``overrides``."""
        return cls(bev_size_m=float(image["query_ground_size_m"]), m_per_px=float(image["m_per_px"]),
                   stride=int(image["stride"]), **overrides)

    def bev(self) -> BevNccConfig:
        return BevNccConfig(bev_size_m=self.bev_size_m, m_per_px=self.m_per_px, camera_height_m=self.camera_height_m,
                            min_distance_m=self.min_distance_m, aerial_size_m=self.aerial_size_m)

    def matcher(self) -> LearnedMatcherConfig:
        return LearnedMatcherConfig(ground_size_m=self.bev_size_m, m_per_px=self.m_per_px, stride=self.stride)


class LearnedBevLocalizer:
    """Heat-map localizer (pipeline ``Localizer``) for panoramas by a learned BEV matcher: north-aligned input, or
    as captured with a heading search (``heading_bins``)."""

    def __init__(self, features: FeatureFn, cfg: LearnedBevConfig | None = None) -> None:
        self.cfg = cfg or LearnedBevConfig()
        self.bev_cfg = self.cfg.bev()  # validates the BEV / patch sizes
        self.features = features
        self.aerial_size_m = self.cfg.aerial_size_m
        self.aerial_px = int(round(self.cfg.aerial_size_m / self.cfg.m_per_px))
        pinhole = self.cfg.camera == "pinhole"
        self.alignment = QueryAlignment(north_up=self.cfg.heading_bins == 0,
                                        query_kind="ground_pinhole" if pinhole else "ground_pano",
                                        pinhole_pano_wh=tuple(self.cfg.pano_wh) if pinhole else None)
        self.headings = 2 * np.pi * np.arange(self.cfg.heading_bins) / max(self.cfg.heading_bins, 1)
        self._best_heading: np.ndarray | None = None  # (m, m) heading (rad) per window of the last search
        self._last_hw = (self.aerial_px, self.aerial_px)

    def locate(self, query_rgb: np.ndarray, aerial_rgb: np.ndarray) -> np.ndarray:
        """Heat map ``(Ha, Wa)`` (sums to 1) of the camera's position over the aerial patch."""
        if not self.cfg.heading_bins:
            return self.locate_bev(masked_bev_rgb(query_rgb, self.bev_cfg), aerial_rgb)
        matcher = self._matcher(aerial_rgb)
        bevs = [masked_bev_rgb(align_query_north_up(query_rgb, float(h), "ground_pano"), self.bev_cfg)
                for h in self.headings]
        queries = [matcher.prepare_aligned(bev) for bev in bevs]
        scores = np.stack([matcher.score_map(q) for q in queries])  # (bins, m, m)
        self._best_heading, self._last_hw = self.headings[scores.argmax(0)], aerial_rgb.shape[:2]
        return self._heatmap(scores.max(0), queries[0].shape[-1], aerial_rgb.shape[:2])

    def locate_bev(self, bev_rgb: np.ndarray, aerial_rgb: np.ndarray) -> np.ndarray:
        """As :meth:`locate`, for a BEV already projected (north-up, ``m_per_px``, the camera at its centre)."""
        matcher = self._matcher(aerial_rgb)
        query = matcher.prepare_aligned(bev_rgb)
        return self._heatmap(matcher.score_map(query), query.shape[-1], aerial_rgb.shape[:2])

    def orientation_at(self, row: float, col: float) -> float | None:
        """Heading (rad, clockwise from north) the last heading search found best at a heat-map pixel; None when
        the heading is known (north-up input)."""
        if self._best_heading is None:
            return None
        m, s = self._best_heading.shape[0], self.cfg.stride
        top = self._window_top(int(round(self.cfg.bev_size_m / self.cfg.m_per_px)) // s)
        scale = self.aerial_px / self._last_hw[0], self.aerial_px / self._last_hw[1]
        r = int(np.clip((row * scale[0] - top) // s, 0, m - 1))
        c = int(np.clip((col * scale[1] - top) // s, 0, m - 1))
        return float(self._best_heading[r, c])

    def _matcher(self, aerial_rgb: np.ndarray) -> LearnedMatcher:
        aerial = aerial_rgb
        if aerial.shape[:2] != (self.aerial_px, self.aerial_px):
            aerial = cv2.resize(aerial, (self.aerial_px, self.aerial_px), interpolation=cv2.INTER_AREA)
        return LearnedMatcher(aerial, 0.0, 0.0, self.cfg.m_per_px, self.features, self.cfg.matcher())

    def _window_top(self, k: int) -> int:
        """Patch pixel where the heat-map block of window 0 starts, for a ``k``-cell query."""
        return self.cfg.stride * (k - 1) // 2

    def _heatmap(self, scores: np.ndarray, k: int, out_hw: tuple[int, int]) -> np.ndarray:
        """Scores ``(m, m)`` of windows by top-left cell -> heat map over the patch's pixels: the window whose
        top-left cell is ``r`` has its centre at pixel ``(r + k / 2) * stride``, spread over one cell around it."""
        s = self.cfg.stride
        probs = np.exp((scores.astype(np.float64) - scores.max()) / self.cfg.temperature)
        block = np.kron(probs, np.ones((s, s)))
        heat = np.zeros((self.aerial_px, self.aerial_px), dtype=np.float64)
        top = self._window_top(k)
        rows, cols = min(block.shape[0], self.aerial_px - top), min(block.shape[1], self.aerial_px - top)
        heat[top:top + rows, top:top + cols] = block[:rows, :cols]
        if heat.shape != tuple(out_hw):
            heat = cv2.resize(heat, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_AREA)
        return heat / heat.sum()


def learned_bev_localizer(backend, **overrides: Any) -> LearnedBevLocalizer:
    """The localizer of an exported BEV matcher (any backend: ONNX Runtime, TensorRT, torch); its geometry from the
    sidecar, the rest (``aerial_size_m``, ``heading_bins``, ``camera_height_m``...) from ``overrides``."""
    features = BackendFeatures(backend)  # parses and checks the matcher's sidecar (matcher_preprocessing)
    prep = features.prep
    if prep.camera != "panorama":
        raise ValueError(f"{getattr(backend, 'path', 'model')}: a car's learned BEV localizer needs a matcher "
                         f"trained on panorama BEVs (preprocessing.image.camera 'panorama'), got {prep.camera!r}")
    cfg = LearnedBevConfig(bev_size_m=float(prep.ground_size_m), m_per_px=float(prep.m_per_px),
                           stride=int(prep.stride), **overrides)
    return LearnedBevLocalizer(features, cfg)

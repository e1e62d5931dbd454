"""The classical baseline: normalised cross-correlation of an aligned camera frame against the map.

Every on-board benchmark reports it beside the learned models, because on imagery where the map and the flight
look alike a template matcher already relocalizes most frames, and a learned model earns its place only where
it beats this. The query is prepared exactly as the runtime prepares a localizer query (rotated north-up by the
measured heading, cut to ``ground_size_m`` of ground from the height above ground and the field of view), then
matched with OpenCV's ``TM_CCOEFF_NORMED`` against the map resampled to ``m_per_px``: over the whole map (a
GNSS-denied relocalization) or inside a search window around a prior. numpy and OpenCV only.

The map is given in any metric, north-up frame (UTM, or a local east/north frame): ``west_m`` / ``north_m`` are
the coordinates of the image's upper-left corner and ``m_per_px`` its resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_geoloc.geo.view_alignment import align_query_north_up, align_query_scale


@dataclass(frozen=True)
class NccConfig:
    ground_size_m: float = 32.0  # ground square of the template (the query is cut to it around the nadir point)
    m_per_px: float = 1.0  # matching resolution (map and template)
    exclusion_m: float = 10.0  # the second-best peak is searched outside this radius of the best

    def __post_init__(self) -> None:
        if not (self.ground_size_m > 0 and self.m_per_px > 0 and self.ground_size_m / self.m_per_px >= 8):
            raise ValueError(f"NCC template needs ground_size_m / m_per_px >= 8 pixels, got {self.ground_size_m} m "
                             f"at {self.m_per_px} m/px")


@dataclass(frozen=True)
class NccMatch:
    """Best match: the map position of the template's centre, its score and the runner-up's (ambiguity)."""

    east_m: float
    north_m: float
    score: float  # correlation coefficient of the best position, -1..1
    second_score: float  # best score farther than ``exclusion_m`` from it

    @property
    def peak_ratio(self) -> float:
        """score / second_score: near 1 when the map has another place that matches as well."""
        return self.score / max(self.second_score, 1e-6)


class NccMatcher:
    """Template matching of aligned camera frames against one north-up map image."""

    def __init__(self, map_rgb: np.ndarray, west_m: float, north_m: float, map_m_per_px: float,
                 config: NccConfig | None = None) -> None:
        if map_rgb.ndim != 3 or map_rgb.shape[2] != 3 or min(map_rgb.shape[:2]) < 8:
            raise ValueError(f"map must be an (H, W, 3) RGB image of at least 8x8 pixels, got {map_rgb.shape}")
        if not (math.isfinite(map_m_per_px) and map_m_per_px > 0):
            raise ValueError(f"map_m_per_px must be > 0, got {map_m_per_px}")
        self.config = config or NccConfig()
        scale = map_m_per_px / self.config.m_per_px
        size = (max(1, round(map_rgb.shape[1] * scale)), max(1, round(map_rgb.shape[0] * scale)))
        self.map_gray = _gray(cv2.resize(map_rgb, size, interpolation=cv2.INTER_AREA))
        self.west_m, self.north_m = float(west_m), float(north_m)

    @property
    def template_px(self) -> int:
        return int(round(self.config.ground_size_m / self.config.m_per_px))

    def prepare(self, frame_rgb: np.ndarray, heading_rad: float, altitude_agl_m: float, hfov_deg: float) -> np.ndarray:
        """The grey template of a nadir frame: north-up, cut to ``ground_size_m``, at ``m_per_px``."""
        north_up = align_query_north_up(frame_rgb, heading_rad, "drone")
        cut = align_query_scale(north_up, altitude_agl_m, hfov_deg, self.config.ground_size_m, self.template_px)
        return _gray(cut)

    def prepare_aligned(self, aligned_rgb: np.ndarray) -> np.ndarray:
        """The grey template of a frame already north-up and cut to ``ground_size_m`` (resized to the template)."""
        px = self.template_px
        if aligned_rgb.shape[:2] != (px, px):
            aligned_rgb = cv2.resize(aligned_rgb, (px, px), interpolation=cv2.INTER_AREA)
        return _gray(aligned_rgb)

    @property
    def score_step_m(self) -> float:
        """Ground distance between neighbouring cells of :meth:`score_map`."""
        return self.config.m_per_px

    def score_map(self, template: np.ndarray) -> np.ndarray:
        """Correlation coefficient of the template with every map window (top-left pixel indexing)."""
        return np.nan_to_num(cv2.matchTemplate(self.map_gray, template, cv2.TM_CCOEFF_NORMED), nan=-1.0)

    def window_centre_en(self, row: float, col: float, k: int) -> tuple[float, float]:
        """Map east/north of the centre of the ``k``-pixel window whose top-left pixel is ``(row, col)``."""
        m = self.config.m_per_px
        return self.west_m + (col + k / 2) * m, self.north_m - (row + k / 2) * m

    def locate(self, template: np.ndarray, prior_en: tuple[float, float] | None = None,
               radius_m: float | None = None) -> NccMatch:
        """Best position of a prepared template over the whole map, or within ``radius_m`` of ``prior_en``."""
        window, offset = self._window(prior_en, radius_m, template.shape[0])
        scores = np.nan_to_num(cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED), nan=-1.0)
        return best_match(scores, self.window_centre_en, template.shape[0], self.config.exclusion_m / self.score_step_m,
                          offset)

    def _window(self, prior_en: tuple[float, float] | None, radius_m: float | None,
                template_px: int) -> tuple[np.ndarray, tuple[int, int]]:
        if prior_en is None or radius_m is None:
            return self.map_gray, (0, 0)
        m = self.config.m_per_px
        col = (prior_en[0] - self.west_m) / m
        row = (self.north_m - prior_en[1]) / m
        reach = radius_m / m + template_px / 2
        h, w = self.map_gray.shape
        r0, r1 = max(0, int(row - reach)), min(h, int(math.ceil(row + reach)))
        c0, c1 = max(0, int(col - reach)), min(w, int(math.ceil(col + reach)))
        if r1 - r0 < template_px or c1 - c0 < template_px:
            raise ValueError(f"search window around {prior_en} (radius {radius_m} m) is outside the map")
        return self.map_gray[r0:r1, c0:c1], (r0, c0)


def _gray(image_rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)


def best_match(scores: np.ndarray, window_centre_en, k: int, exclusion_cells: float,
               offset: tuple[int, int] = (0, 0)) -> NccMatch:
    """The best cell of a matcher's score map (``offset``: the map cell of its top-left one) as a match: where the
    ``k``-cell window there is centred (``window_centre_en(row, col, k)``), its score and the runner-up's."""
    row, col = np.unravel_index(int(np.argmax(scores)), scores.shape)
    east, north = window_centre_en(offset[0] + row, offset[1] + col, k)
    return NccMatch(east, north, float(scores[row, col]), second_peak(scores, row, col, exclusion_cells))


def second_peak(scores: np.ndarray, row: int, col: int, exclusion_cells: float) -> float:
    """Best score farther than ``exclusion_cells`` (each axis) from ``(row, col)``; -1 when there is none."""
    r = int(math.ceil(exclusion_cells))
    masked = scores.astype(np.float64)
    masked[max(0, row - r):row + r + 1, max(0, col - r):col + r + 1] = -np.inf
    best = float(masked.max()) if masked.size else -np.inf
    return best if math.isfinite(best) else -1.0

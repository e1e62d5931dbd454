"""The classical NCC baseline (``edge_geoloc.runtime.classical``) as a stand-in for global retrieval.

While the learned retrieval is near chance, this shows what the fusion achieves with a global search that
works, and it is the classical baseline beside the learned path. The frame is prepared by
:meth:`NccMatcher.prepare` (north-up from the measured heading, 32 m of ground from the measured height and the
field of view, grey, 1 m/px) and slid over the whole orthophoto; the ``k`` best peaks at least
``min_separation_m`` apart are mapped to the nearest tiles of the index. The matcher's own best match is kept
per frame too (``last_match``): the NCC baseline's fix.

It plugs into a :class:`~edge_geoloc.runtime.pipeline.Pipeline` as its encoder (a zero embedding) and as a
proxy of its tile index whose ``search`` ignores the embedding; everything else is the real index.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.geo import GeoRaster
from edge_geoloc.runtime.classical import NccConfig, NccMatch, NccMatcher
from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.tile_index import SearchResult, TileIndex
from edge_geoloc.types import CameraFrame


def matcher_for(ortho_path: Path, config: NccConfig | None = None) -> NccMatcher:
    """An :class:`NccMatcher` over a whole GeoTIFF (UTM coordinates)."""
    with GeoRaster(ortho_path) as raster:
        left, bottom, right, top = raster.bounds_crs
        size_m = max(right - left, top - bottom)
        patch = raster.read_around_crs(0.5 * (left + right), 0.5 * (bottom + top), size_m,
                                       int(round(size_m / raster.m_per_px)))
    west, north = patch.georef.pixel_to_crs(0.0, 0.0)
    return NccMatcher(patch.image, float(west), float(north), patch.georef.m_per_px, config)


class NccGlobalSearch:
    """Encoder + index proxy (see the module doc); call :meth:`set_frame` before each ``Pipeline.process``."""

    def __init__(self, pipeline: Pipeline, matcher: NccMatcher, min_separation_m: float = 24.0) -> None:
        self.index: TileIndex = pipeline.index
        self.matcher, self.hfov_deg, self.min_separation_m = matcher, pipeline.cfg.camera.hfov_deg, min_separation_m
        self.template: np.ndarray | None = None
        self.last_match: NccMatch | None = None
        pipeline.encoder, pipeline.index = self, self  # type: ignore[assignment]

    def set_frame(self, frame: CameraFrame) -> None:
        usable = all(v is not None and math.isfinite(v) for v in (frame.heading_rad, frame.altitude_agl_m))
        self.template = self.matcher.prepare(frame.image_rgb, frame.heading_rad, frame.altitude_agl_m,
                                             self.hfov_deg) if usable else None
        self.last_match = self.matcher.locate(self.template) if usable else None

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.zeros((len(images), self.index.embed_dim), np.float32)

    def search(self, query: np.ndarray, k: int = 10, prior_latlon=None, radius_m=None) -> SearchResult:
        start = time.perf_counter()
        if self.template is None:
            return SearchResult(np.zeros(0, np.int64), np.zeros(0, np.float32), 0, "empty", 0.0)
        m = self.matcher
        scores = np.nan_to_num(cv2.matchTemplate(m.map_gray, self.template, cv2.TM_CCOEFF_NORMED), nan=-1.0)
        half, mpp = self.template.shape[0] / 2.0, m.config.m_per_px
        tiles = self.index.tiles
        ids, best = [], []
        for row, col, score in _peaks(scores, 4 * k, self.min_separation_m / mpp):
            x, y = m.west_m + (col + half) * mpp, m.north_m - (row + half) * mpp
            tile = int(np.argmin((tiles["utm_east_m"] - x) ** 2 + (tiles["utm_north_m"] - y) ** 2))
            if tile not in ids:
                ids.append(tile)
                best.append(score)
            if len(ids) == k:
                break
        return SearchResult(np.asarray(ids, np.int64), np.asarray(best, np.float32), len(self.index), "ncc",
                            (time.perf_counter() - start) * 1e3)

    def __getattr__(self, name: str):
        return getattr(self.index, name)


def _peaks(score: np.ndarray, count: int, min_separation_px: float) -> list[tuple[int, int, float]]:
    """The ``count`` best maxima of ``score`` at least ``min_separation_px`` apart (greedy suppression)."""
    score = score.copy()
    out = []
    r = int(np.ceil(min_separation_px))
    for _ in range(count):
        row, col = np.unravel_index(int(np.argmax(score)), score.shape)
        value = float(score[row, col])
        if value <= -1.0:
            break
        out.append((int(row), int(col), value))
        score[max(0, row - r): row + r + 1, max(0, col - r): col + r + 1] = -1.0
    return out

"""A classical stand-in for global retrieval: the aligned frame matched by NCC over the whole orthophoto.

While the learned retrieval is near chance, this shows what the fusion achieves with a global search that
works. The frame is aligned exactly as the localizer's artifact asks (north-up from the measured heading, cut
to its ground size from the measured height and the field of view), turned grey at ``m_per_px``, and slid over
the grey orthophoto at the same resolution (``cv2.matchTemplate``, normalised correlation coefficient). The
``k`` best peaks, at least ``min_separation_m`` apart, are mapped to the nearest tiles of the index.

It plugs into a :class:`~edge_geoloc.runtime.pipeline.Pipeline` as its encoder (a zero embedding) and as a
proxy of its tile index whose ``search`` ignores the embedding; everything else is the real index.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.geo import GeoRaster
from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.query_alignment import MissingSensorError, align_query
from edge_geoloc.runtime.tile_index import SearchResult, TileIndex
from edge_geoloc.types import CameraFrame


class NccGlobalSearch:
    """Encoder + index proxy (see the module doc); call :meth:`set_frame` before each ``Pipeline.process``."""

    def __init__(self, pipeline: Pipeline, ortho_path: Path, m_per_px: float = 1.0,
                 min_separation_m: float = 24.0) -> None:
        self.index: TileIndex = pipeline.index
        self.alignment, self.hfov_deg = pipeline.alignment, pipeline.cfg.camera.hfov_deg
        self.m_per_px, self.min_separation_m = m_per_px, min_separation_m
        with GeoRaster(ortho_path) as raster:
            left, bottom, right, top = raster.bounds_crs
            size_m = max(right - left, top - bottom)
            patch = raster.read_around_crs(0.5 * (left + right), 0.5 * (bottom + top), size_m,
                                           int(round(size_m / m_per_px)))
        self.ortho = cv2.cvtColor(patch.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        self.georef = patch.georef
        self.template: np.ndarray | None = None
        pipeline.encoder, pipeline.index = self, self  # type: ignore[assignment]

    def set_frame(self, frame: CameraFrame) -> None:
        try:
            aligned = align_query(frame, self.alignment, self.hfov_deg)
        except MissingSensorError:
            self.template = None
            return
        px = max(8, int(round((self.alignment.ground_size_m or 32.0) / self.m_per_px)))
        grey = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY).astype(np.float32)
        self.template = cv2.resize(grey, (px, px), interpolation=cv2.INTER_AREA)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.zeros((len(images), self.index.embed_dim), np.float32)

    def search(self, query: np.ndarray, k: int = 10, prior_latlon=None, radius_m=None) -> SearchResult:
        start = time.perf_counter()
        if self.template is None:
            return SearchResult(np.zeros(0, np.int64), np.zeros(0, np.float32), 0, "empty", 0.0)
        ncc = cv2.matchTemplate(self.ortho, self.template, cv2.TM_CCOEFF_NORMED)
        half = self.template.shape[0] / 2.0
        ids, scores = [], []
        for row, col, score in _peaks(ncc, 4 * k, self.min_separation_m / self.m_per_px):
            x, y = self.georef.pixel_to_crs(row + half, col + half)
            tiles = self.index.tiles
            tile = int(np.argmin((tiles["utm_east_m"] - x) ** 2 + (tiles["utm_north_m"] - y) ** 2))
            if tile not in ids:
                ids.append(tile)
                scores.append(score)
            if len(ids) == k:
                break
        return SearchResult(np.asarray(ids, np.int64), np.asarray(scores, np.float32), len(self.index), "ncc",
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
        if not np.isfinite(value) or value <= -1.0:
            break
        out.append((int(row), int(col), value))
        score[max(0, row - r): row + r + 1, max(0, col - r): col + r + 1] = -np.inf
    return out

"""Global search: which tiles of the map a camera frame may show, with no prior (``pipeline.global_search``).

The pipeline asks a :class:`GlobalSearch` for the ``k`` best tiles of its tile index; in particle mode their
heat maps are the filter's global candidates (recovery and a GNSS-denied start draw hypotheses from them). Two
implementations share the interface, chosen by configuration alone:

- ``learned`` (:class:`RetrievalSearch`): the retrieval encoder embeds the frame, the tile index returns the
  nearest tile embeddings (inside a prior radius when one is given);
- ``ncc`` (:class:`NccSearch`): the classical baseline (:mod:`edge_geoloc.runtime.classical`) slides the
  north-up, scale-aligned frame over the whole orthophoto; the best peaks at least ``min_separation_m`` apart
  are mapped to their nearest tiles. It needs the measured heading and height (else no candidates).

A new search (another retrieval model, a learned re-ranker) implements ``search`` and plugs in the same way.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge_geoloc.geo import GeoRaster
from edge_geoloc.runtime.classical import NccConfig, NccMatch, NccMatcher
from edge_geoloc.runtime.tile_index import Encoder, SearchResult, TileIndex, TileIndexError, resolve_source
from edge_geoloc.types import CameraFrame


class GlobalSearch(Protocol):
    """The ``k`` best tiles for a frame (``query_rgb``: the frame as the retrieval model expects it). After each
    search, ``embed_ms`` / ``preprocess_ms`` say how much of its time went into embedding / preprocessing."""

    embed_ms: float
    preprocess_ms: float

    def search(self, frame: CameraFrame, query_rgb: np.ndarray, k: int,
               prior_latlon: tuple[float, float] | None = None, radius_m: float | None = None) -> SearchResult: ...


class RetrievalSearch:
    """Learned retrieval: the encoder's embedding of the query against the tile index's embeddings.

    After each search, ``embed_ms`` and ``preprocess_ms`` say how long embedding (and its preprocessing) took."""

    def __init__(self, encoder: Encoder, index: TileIndex) -> None:
        self.encoder, self.index = encoder, index
        self.embed_ms = self.preprocess_ms = 0.0

    def search(self, frame: CameraFrame, query_rgb: np.ndarray, k: int,
               prior_latlon: tuple[float, float] | None = None, radius_m: float | None = None) -> SearchResult:
        t = time.perf_counter()
        embedding = self.encoder.embed([query_rgb])[0]
        self.embed_ms = (time.perf_counter() - t) * 1e3
        self.preprocess_ms = getattr(self.encoder, "preprocess_ms", 0.0)
        return self.index.search(embedding, k, prior_latlon, radius_m)


class NccSearch:
    """Classical global search (module doc); ``hfov_deg`` may be set after construction (it is checked at the first
    search). ``last_match`` keeps the matcher's own best match of the last frame
    (the NCC baseline's fix)."""

    def __init__(self, matcher: NccMatcher, index: TileIndex, hfov_deg: float, min_separation_m: float = 24.0
                 ) -> None:
        self.matcher, self.index, self.hfov_deg = matcher, index, hfov_deg
        self.min_separation_m = min_separation_m
        self.embed_ms = self.preprocess_ms = 0.0
        self.last_match: NccMatch | None = None

    def search(self, frame: CameraFrame, query_rgb: np.ndarray, k: int,
               prior_latlon: tuple[float, float] | None = None, radius_m: float | None = None) -> SearchResult:
        if not 0 < self.hfov_deg < 180:
            raise ValueError(f"NCC global search needs the camera's field of view (camera.hfov_deg), got "
                             f"{self.hfov_deg}")
        start = time.perf_counter()
        self.last_match = None
        if not all(v is not None and math.isfinite(v) for v in (frame.heading_rad, frame.altitude_agl_m)):
            return SearchResult(np.zeros(0, np.int64), np.zeros(0, np.float32), 0, "empty", 0.0)
        m = self.matcher
        template = m.prepare(frame.image_rgb, frame.heading_rad, frame.altitude_agl_m, self.hfov_deg)
        scores = np.nan_to_num(cv2.matchTemplate(m.map_gray, template, cv2.TM_CCOEFF_NORMED), nan=-1.0)
        self.last_match = m.locate(template)
        ids, best = self._nearest_tiles(_peaks(scores, 4 * k, self.min_separation_m / m.config.m_per_px),
                                        template.shape[0] / 2.0, k)
        return SearchResult(np.asarray(ids, np.int64), np.asarray(best, np.float32), len(self.index), "ncc",
                            (time.perf_counter() - start) * 1e3)

    def _nearest_tiles(self, peaks: list[tuple[int, int, float]], half_px: float, k: int
                       ) -> tuple[list[int], list[float]]:
        """The tiles nearest to the peaks' map positions, best peak first, each tile once, at most ``k``."""
        m, tiles = self.matcher, self.index.tiles
        ids: list[int] = []
        best: list[float] = []
        for row, col, score in peaks:
            x, y = m.west_m + (col + half_px) * m.config.m_per_px, m.north_m - (row + half_px) * m.config.m_per_px
            tile = int(np.argmin((tiles["utm_east_m"] - x) ** 2 + (tiles["utm_north_m"] - y) ** 2))
            if tile not in ids:
                ids.append(tile)
                best.append(score)
            if len(ids) == k:
                break
        return ids, best


def make_global_search(kind: str, encoder: Encoder | None, index: TileIndex, hfov_deg: float
                       ) -> GlobalSearch | None:
    """The ``pipeline.global_search`` of that ``kind`` (``learned`` needs an encoder; None without one)."""
    if kind == "ncc":
        sources = index.manifest.get("sources", [])
        if len(sources) != 1:
            raise TileIndexError(f"pipeline.global_search=ncc matches against one orthophoto; the index has "
                                 f"{len(sources)} sources: use global_search=learned or one index per orthophoto")
        return NccSearch(ncc_matcher_for(resolve_source(sources[0], index.root)), index, hfov_deg)
    return RetrievalSearch(encoder, index) if encoder is not None else None


def ncc_matcher_for(ortho_path: str | Path, config: NccConfig | None = None) -> NccMatcher:
    """An :class:`NccMatcher` over a whole north-up GeoTIFF (its CRS coordinates, UTM for tile indexes)."""
    with GeoRaster(ortho_path) as raster:
        left, bottom, right, top = raster.bounds_crs
        size_m = max(right - left, top - bottom)
        patch = raster.read_around_crs(0.5 * (left + right), 0.5 * (bottom + top), size_m,
                                       int(round(size_m / raster.m_per_px)))
    west, north = patch.georef.pixel_to_crs(0.0, 0.0)
    return NccMatcher(patch.image, float(west), float(north), patch.georef.m_per_px, config)


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

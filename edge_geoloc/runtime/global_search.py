"""Global search: which tiles of the map a camera frame may show, with no prior (the ``global_search`` section).

The pipeline asks a :class:`GlobalSearch` for the ``k`` best tiles of its tile index; in particle mode their
heat maps are the filter's global candidates (recovery and a GNSS-denied start draw hypotheses from them). The
implementations share the interface, chosen by configuration alone (``global_search.kind``):

- ``retrieval`` (:class:`RetrievalSearch`): the retrieval encoder embeds the frame, the tile index returns the
  nearest tile embeddings (inside a prior radius when one is given);
- ``ncc`` and ``matcher`` (:class:`MapSearch`): a map matcher (:mod:`edge_geoloc.runtime.map_search`: the
  classical NCC baseline, or the learned map matcher of docs/map_matcher.md) scores the north-up, scale-aligned
  frame at every place of the index's orthophoto, normalised against the map's own background
  (``global_search.background_frames``, :func:`~edge_geoloc.runtime.map_search.score_background`); the best peaks
  at least ``min_separation_m`` apart are mapped to their nearest tiles, and the whole normalised score map is
  kept (``last_scores``) for the particle filter's map grid. It needs the measured heading and height (else no
  candidates).

A new search (another retrieval model, a learned re-ranker) implements ``search`` and plugs in the same way.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import numpy as np

from edge_geoloc.geo.raster import PatchGeoref
from edge_geoloc.runtime.classical import NccMatch, best_match
from edge_geoloc.runtime.config import BackendConfig, GlobalSearchConfig
from edge_geoloc.runtime.map_search import (
    MapMatcher,
    ScoreBackground,
    map_matcher_over,
    read_map,
    score_background,
    score_georef,
)
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


class MapSearch:
    """Global search by a map matcher over the index's orthophoto (module doc): the classical NCC or the learned
    map matcher, whichever ``matcher`` is. ``hfov_deg`` may be set after construction (it is checked at the first
    search). ``last_match`` keeps the matcher's own best match of the last frame (its whole-map fix), and
    ``last_scores`` its whole score map (z-scores when a ``background`` is given) with where it lies (needs the
    map's ``crs_epsg``)."""

    def __init__(self, matcher: MapMatcher, index: TileIndex, hfov_deg: float, min_separation_m: float = 24.0,
                 background: ScoreBackground | None = None, crs_epsg: int = 0) -> None:
        self.matcher, self.index, self.hfov_deg = matcher, index, hfov_deg
        self.min_separation_m = min_separation_m
        self.background, self.crs_epsg = background, crs_epsg
        self.embed_ms = self.preprocess_ms = 0.0
        self.last_match: NccMatch | None = None
        self.last_scores: tuple[np.ndarray, PatchGeoref] | None = None

    def search(self, frame: CameraFrame, query_rgb: np.ndarray, k: int,
               prior_latlon: tuple[float, float] | None = None, radius_m: float | None = None) -> SearchResult:
        if not 0 < self.hfov_deg < 180:
            raise ValueError(f"map-matching global search needs the camera's field of view (camera.hfov_deg), got "
                             f"{self.hfov_deg}")
        start = time.perf_counter()
        self.last_match, self.last_scores = None, None
        if not all(v is not None and math.isfinite(v) for v in (frame.heading_rad, frame.altitude_agl_m)):
            return SearchResult(np.zeros(0, np.int64), np.zeros(0, np.float32), 0, "empty", 0.0)
        m = self.matcher
        query = m.prepare(frame.image_rgb, frame.heading_rad, frame.altitude_agl_m, self.hfov_deg)
        scores = m.score_map(query)  # once per frame: the whole-map fix and the tile candidates share it
        if self.background is not None:
            scores = self.background.normalise(scores)
        if self.crs_epsg:
            self.last_scores = (scores, score_georef(m, scores.shape, query.shape[-1], self.crs_epsg))
        self.last_match = best_match(scores, m.window_centre_en, query.shape[-1],
                                     m.config.exclusion_m / m.score_step_m)
        peaks = _peaks(scores, 4 * k, self.min_separation_m / m.score_step_m)
        ids, best = self._nearest_tiles(peaks, query.shape[-1], k)
        return SearchResult(np.asarray(ids, np.int64), np.asarray(best, np.float32), len(self.index), "map",
                            (time.perf_counter() - start) * 1e3)

    def _nearest_tiles(self, peaks: list[tuple[int, int, float]], k_query: int, k: int
                       ) -> tuple[list[int], list[float]]:
        """The tiles nearest to the peaks' map positions, best peak first, each tile once, at most ``k``."""
        tiles = self.index.tiles
        ids: list[int] = []
        best: list[float] = []
        for row, col, score in peaks:
            x, y = self.matcher.window_centre_en(row, col, k_query)
            tile = int(np.argmin((tiles["utm_east_m"] - x) ** 2 + (tiles["utm_north_m"] - y) ** 2))
            if tile not in ids:
                ids.append(tile)
                best.append(score)
            if len(ids) == k:
                break
        return ids, best


def make_global_search(cfg: GlobalSearchConfig, encoder: Encoder | None, index: TileIndex, hfov_deg: float,
                       backend: BackendConfig | None = None) -> GlobalSearch | None:
    """The ``global_search`` section's search (``retrieval`` needs an encoder: None without one, e.g. a car)."""
    if cfg.kind == "retrieval":
        return RetrievalSearch(encoder, index) if encoder is not None else None
    sources = index.manifest.get("sources", [])
    if len(sources) != 1:
        raise TileIndexError(f"global_search.kind={cfg.kind} matches against one orthophoto; the index has "
                             f"{len(sources)} sources: use kind=retrieval or one index per orthophoto")
    image = read_map(resolve_source(sources[0], index.root))
    matcher = map_matcher_over(cfg, image, backend)
    background = score_background(matcher, image, cfg.background_frames) if cfg.background_frames else None
    return MapSearch(matcher, index, hfov_deg, background=background, crs_epsg=image.crs_epsg)


def _peaks(score: np.ndarray, count: int, min_separation_px: float) -> list[tuple[int, int, float]]:
    """The ``count`` best maxima of ``score`` at least ``min_separation_px`` apart (greedy suppression)."""
    score = score.astype(np.float64)
    out = []
    r = int(np.ceil(min_separation_px))
    for _ in range(count):
        row, col = np.unravel_index(int(np.argmax(score)), score.shape)
        value = float(score[row, col])
        if not np.isfinite(value):
            break
        out.append((int(row), int(col), value))
        score[max(0, row - r): row + r + 1, max(0, col - r): col + r + 1] = -np.inf
    return out

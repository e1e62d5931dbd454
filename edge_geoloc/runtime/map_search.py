"""Map matchers built from the runtime config: where on a whole map image a camera frame is, with no prior.

Built from the ``global_search`` section for one north-up map raster (GeoTIFF/COG in a projected CRS, UTM for the
tile index): ``ncc`` the classical template matcher (:class:`~edge_geoloc.runtime.classical.NccMatcher`),
``matcher`` the learned map matcher (:class:`~edge_geoloc.runtime.learned_matcher.LearnedMatcher`) over the
exported model at ``model``, run by the ``backend`` section's kind and device, with the geometry its sidecar
declares. Both answer the same calls, so a caller (:class:`~edge_geoloc.runtime.global_search.MapSearch`, a
benchmark) does not care which it got::

    query = matcher.prepare(frame_rgb, heading_rad, altitude_agl_m, hfov_deg)
    match = matcher.locate(query)                                  # whole map -> NccMatch
    match = matcher.locate(query, prior_en=(e, n), radius_m=200.0)  # around a prior
    scores = matcher.score_map(query)         # window (row, col) -> matcher.window_centre_en(row, col, k)
    per_tile = tile_scores(matcher, scores, query.shape[-1], tile_centres_en, radius_m=12.0)
    z = score_background(matcher, map_image).normalise(scores)  # against the map's own background

Raw scores are not comparable across the map: some windows (plain fields, the map's border) score high against
any frame. :func:`score_background` measures, per window, the mean and spread of the score for frames cut from
elsewhere on the same map (no flight needed, once per map); the normalised score (a z-score) is what the global
search ranks and the filter's map grid (:mod:`edge_geoloc.fusion.map_grid`) weighs.

Positions are in the raster's CRS (east, north metres).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_geoloc.geo.raster import GeoRaster, PatchGeoref
from edge_geoloc.runtime.classical import NccMatcher
from edge_geoloc.runtime.config import BackendConfig, GlobalSearchConfig
from edge_geoloc.runtime.learned_matcher import LearnedMatcher, learned_matcher_for

MapMatcher = NccMatcher | LearnedMatcher


@dataclass(frozen=True)
class MapImage:
    """A whole north-up map raster in memory and where its upper-left corner lies."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    west_m: float  # CRS easting of the upper-left corner
    north_m: float  # CRS northing of the upper-left corner
    m_per_px: float
    crs_epsg: int = 0  # the raster's projected CRS (0: unknown, e.g. a map built in memory)


@dataclass(frozen=True)
class ScoreBackground:
    """Per window of a map, the mean and standard deviation of a matcher's score for ``k``-cell frames cut from
    elsewhere on the same map: :meth:`normalise` turns a score map into z-scores (module doc)."""

    mean: np.ndarray  # (H - k + 1, W - k + 1)
    std: np.ndarray
    k: int

    def normalise(self, scores: np.ndarray) -> np.ndarray:
        if scores.shape != self.mean.shape:
            raise ValueError(f"score map {scores.shape} does not match the background {self.mean.shape} (a frame "
                             f"of another size than the {self.k}-cell frames it was measured with)")
        return ((scores - self.mean) / self.std).astype(np.float32)


def read_map(path: str | Path) -> MapImage:
    """Read a north-up RGB GeoTIFF/COG whole (see :meth:`GeoRaster.read_all`)."""
    with GeoRaster(path) as raster:
        patch = raster.read_all()
    west, north = patch.georef.pixel_to_crs(0.0, 0.0)
    return MapImage(patch.image, float(west), float(north), patch.georef.m_per_px, patch.georef.crs_epsg)


def build_map_matcher(cfg: GlobalSearchConfig, map_path: str | Path,
                      backend: BackendConfig | None = None) -> MapMatcher:
    """The map matcher ``cfg.kind`` (``ncc`` or ``matcher``) names over the map at ``map_path``."""
    return map_matcher_over(cfg, read_map(map_path), backend)


def map_matcher_over(cfg: GlobalSearchConfig, m: MapImage, backend: BackendConfig | None = None) -> MapMatcher:
    """The map matcher ``cfg.kind`` (``ncc`` or ``matcher``) names over a map already in memory."""
    if cfg.kind not in ("ncc", "matcher"):
        raise ValueError(f"global_search.kind={cfg.kind!r} does not search a map image (ncc or matcher do)")
    if cfg.kind == "ncc":
        return NccMatcher(m.image, m.west_m, m.north_m, m.m_per_px, cfg.ncc)
    backend = backend or BackendConfig()
    return learned_matcher_for(cfg.model, m.image, m.west_m, m.north_m, m.m_per_px, backend.kind, backend.device,
                               cfg.exclusion_m, cfg.disc_m)


def tile_scores(matcher: MapMatcher, scores: np.ndarray, k: int, centres_en: np.ndarray, radius_m: float
                ) -> np.ndarray:
    """(N,) best of ``scores`` (``matcher.score_map`` of a ``k``-cell query) over the windows centred within
    ``radius_m`` (each axis) of each tile centre; -1 where none is. Retrieval over tiles as ``build-index`` cuts
    them, with the map's real surroundings instead of zero padding."""
    east = matcher.window_centre_en(0, np.arange(scores.shape[1]), k)[0]
    north = matcher.window_centre_en(np.arange(scores.shape[0]), 0, k)[1]
    out = np.full(len(centres_en), -1.0, np.float32)
    for i, (e, n) in enumerate(np.asarray(centres_en, dtype=float)):
        rows = np.flatnonzero(np.abs(north - n) <= radius_m)
        cols = np.flatnonzero(np.abs(east - e) <= radius_m)
        if rows.size and cols.size:
            out[i] = scores[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].max()
    return out


def score_background(matcher: MapMatcher, image: MapImage, count: int = 64, exclusion_m: float | None = None,
                     seed: int = 0) -> ScoreBackground:
    """Score ``count`` frames cut from random places of the map (north-up, the matcher's ground size) against the
    whole map; per window, the mean and standard deviation of the scores of the frames cut farther than
    ``exclusion_m`` (default: 3/4 of the frame's ground size) from it. Deterministic for a seed; ``count`` score
    maps, once per map."""
    exclusion_m = 0.75 * matcher.config.ground_size_m if exclusion_m is None else exclusion_m
    if count < 8:
        raise ValueError(f"a score background needs at least 8 frames, got {count}")
    side = int(round(matcher.config.ground_size_m / image.m_per_px))
    h, w = image.image.shape[:2]
    if side >= min(h, w):
        raise ValueError(f"the map ({h}x{w} px) is not larger than one frame ({side} px)")
    rng = np.random.default_rng(seed)
    total = total_sq = weight = None
    for _ in range(count):
        r0, c0 = (int(v) for v in rng.integers(0, (h - side, w - side)))
        query = matcher.prepare_aligned(image.image[r0:r0 + side, c0:c0 + side])
        scores = matcher.score_map(query).astype(np.float64)
        if total is None:
            k = query.shape[-1]
            east, north = _window_centres(matcher, scores.shape, k)
            total, total_sq, weight = np.zeros_like(scores), np.zeros_like(scores), np.zeros_like(scores)
        centre_e = image.west_m + (c0 + side / 2) * image.m_per_px
        centre_n = image.north_m - (r0 + side / 2) * image.m_per_px
        far = (np.hypot(east - centre_e, north - centre_n) > exclusion_m).astype(np.float64)
        total += far * scores
        total_sq += far * scores**2
        weight += far
    weight = np.maximum(weight, 1.0)
    mean = total / weight
    std = np.sqrt(np.maximum(total_sq / weight - mean**2, 0.0))
    floor = max(float(np.median(std)) * 0.25, 1e-6)  # a window no frame scored differently must not explode
    return ScoreBackground(mean.astype(np.float32), np.maximum(std, floor).astype(np.float32), k)


def score_georef(matcher: MapMatcher, shape: tuple[int, int], k: int, crs_epsg: int) -> PatchGeoref:
    """A score map of ``k``-cell frames as a raster: its pixel ``(row, col)`` is centred on the centre of the
    window whose top-left cell is ``(row, col)`` (:meth:`window_centre_en`)."""
    step = matcher.score_step_m
    east0, north0 = matcher.window_centre_en(0, 0, k)
    return PatchGeoref(crs_epsg, (step, 0.0, east0 - step / 2, 0.0, -step, north0 + step / 2), shape[0], shape[1])


def _window_centres(matcher: MapMatcher, shape: tuple[int, int], k: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    return matcher.window_centre_en(rows, cols, k)

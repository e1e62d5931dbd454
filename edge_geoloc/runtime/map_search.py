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

Positions are in the raster's CRS (east, north metres).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_geoloc.geo.raster import GeoRaster
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


def read_map(path: str | Path) -> MapImage:
    """Read a north-up RGB GeoTIFF/COG whole (see :meth:`GeoRaster.read_all`)."""
    with GeoRaster(path) as raster:
        patch = raster.read_all()
    west, north = patch.georef.pixel_to_crs(0.0, 0.0)
    return MapImage(patch.image, float(west), float(north), patch.georef.m_per_px)


def build_map_matcher(cfg: GlobalSearchConfig, map_path: str | Path,
                      backend: BackendConfig | None = None) -> MapMatcher:
    """The map matcher ``cfg.kind`` (``ncc`` or ``matcher``) names over the map at ``map_path``."""
    if cfg.kind not in ("ncc", "matcher"):
        raise ValueError(f"global_search.kind={cfg.kind!r} does not search a map image (ncc or matcher do)")
    m = read_map(map_path)
    if cfg.kind == "ncc":
        return NccMatcher(m.image, m.west_m, m.north_m, m.m_per_px, cfg.ncc)
    backend = backend or BackendConfig()
    return learned_matcher_for(cfg.model, m.image, m.west_m, m.north_m, m.m_per_px, backend.kind, backend.device,
                               cfg.exclusion_m)


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

"""The runtime's global searcher: where on the whole map a camera frame is, with no prior.

Built from the runtime config's ``global_search`` section for one north-up map raster (GeoTIFF/COG in a
projected CRS, UTM for the tile index): ``none`` builds nothing, ``ncc`` the classical template matcher
(:class:`~edge_geoloc.runtime.classical.NccMatcher`), ``learned`` the learned map matcher
(:class:`~edge_geoloc.runtime.learned_matcher.LearnedMatcher`) over the exported model at ``model``, run by the
``backend`` section's kind and device, with the geometry its sidecar declares. Both searchers answer the same
calls, so a caller (the particle filter's recovery, a benchmark) does not care which it got::

    query = searcher.prepare(frame_rgb, heading_rad, altitude_agl_m, hfov_deg)
    match = searcher.locate(query)                                  # whole map -> NccMatch
    match = searcher.locate(query, prior_en=(e, n), radius_m=200.0)  # around a prior

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

GlobalSearcher = NccMatcher | LearnedMatcher


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


def build_global_search(cfg: GlobalSearchConfig, map_path: str | Path,
                        backend: BackendConfig | None = None) -> GlobalSearcher | None:
    """The searcher ``cfg.kind`` names over the map at ``map_path`` (None for ``none``)."""
    if cfg.kind == "none":
        return None
    m = read_map(map_path)
    if cfg.kind == "ncc":
        return NccMatcher(m.image, m.west_m, m.north_m, m.m_per_px, cfg.ncc)
    backend = backend or BackendConfig()
    return learned_matcher_for(cfg.model, m.image, m.west_m, m.north_m, m.m_per_px, backend.kind, backend.device,
                               cfg.exclusion_m)

"""A localizer heat map over a geo-referenced patch, as a likelihood in the fusion's ENU frame.

The patch's pixel grid is a projected (UTM) grid; over a patch of a few hundred metres the map from the local
ENU tangent plane to its pixels is affine to millimetres, so three corners fix it (a least-squares fit over
the four corners, which also averages the few-centimetre curvature).
"""

from __future__ import annotations

import numpy as np

from edge_geoloc.fusion import HeatmapMeasurement
from edge_geoloc.fusion.likelihoods import affine_from_points
from edge_geoloc.geo import EnuFrame, PatchGeoref


def enu_to_pixel_affine(georef: PatchGeoref, origin: EnuFrame) -> np.ndarray:
    """(2, 3) affine ``[row, col] = A @ [east, north, 1]`` of a patch (``georef`` sized like the heat map)."""
    h, w = georef.height_px, georef.width_px
    corners_rc = np.array([[0.0, 0.0], [0.0, w], [h, 0.0], [h, w]])
    lat, lon = georef.pixel_to_latlon(corners_rc[:, 0], corners_rc[:, 1])
    east, north, _ = origin.to_enu(np.asarray(lat), np.asarray(lon), origin.alt0_m)
    return affine_from_points(np.stack([east, north], axis=1), corners_rc)


def heatmap_measurement(heatmap: np.ndarray, georef: PatchGeoref, origin: EnuFrame,
                        global_candidate: bool, confidence: float) -> HeatmapMeasurement:
    """The fusion's view of one heat map (``georef`` already resized to the heat map)."""
    return HeatmapMeasurement(np.asarray(heatmap, dtype=np.float64), enu_to_pixel_affine(georef, origin),
                              global_candidate, confidence)

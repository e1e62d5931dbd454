"""Heat map -> position, covariance in metres, confidence, lat/lon.

A localizer heat map ``(H, W)`` is a probability distribution over the pixels of a north-up aerial patch whose
geo-reference is a :class:`edge_geoloc.geo.PatchGeoref`. Pixel convention (SDK-wide): continuous
``(row, col)``, ``(0, 0)`` is the upper-left corner, the centre of pixel ``[i, j]`` is ``(i + 0.5, j + 0.5)``.

- Position: the mode (argmax) refined to sub-pixel precision by a parabola through the log-probabilities of
  the mode and its two neighbours along each axis: ``delta = (l[-1] - l[+1]) / (2 (l[-1] - 2 l[0] + l[+1]))``,
  clipped to +-0.5 px.
- Covariance: second moments of the heat map inside a disc of ``radius_px`` around the mode (so a second,
  far mode does not inflate it; that case is what the confidence reports), plus ``1/12 px^2`` of pixel
  quantisation, mapped to metres through the patch's affine: ``C_xy = J C_colrow J^T``. The patch axes are
  the projected CRS grid (UTM); the few tenths of a degree between grid and true north are ignored.
- Confidence: ``peak_probability`` (max value), ``peak_mass`` (probability inside the disc, in [0, 1]) and the
  entropy ``-sum p log p`` in nats (0 for a one-hot map, ``log(H*W)`` for a uniform one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_geoloc.geo.raster import PatchGeoref


@dataclass(frozen=True)
class HeatmapEstimate:
    """A position read from one heat map, with its uncertainty and confidence."""

    row: float
    col: float
    lat_deg: float
    lon_deg: float
    covariance_en_m2: tuple[float, float, float, float]  # row-major 2x2 (east, north)
    peak_probability: float
    peak_mass: float
    entropy_nats: float

    @property
    def sigma_m(self) -> float:
        """RMS of the east and north standard deviations."""
        return math.sqrt(max(0.0, 0.5 * (self.covariance_en_m2[0] + self.covariance_en_m2[3])))


def _check_heatmap(heatmap: np.ndarray) -> np.ndarray:
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim != 2 or min(heatmap.shape) < 3:
        raise ValueError(f"expected one (H, W) heat map of at least 3x3, got shape {heatmap.shape}; "
                         "index a batch first (heatmap[i])")
    if not np.all(np.isfinite(heatmap)) or heatmap.min() < 0 or heatmap.sum() <= 0:
        raise ValueError("heat map must be finite, non-negative and not all zero (pass probabilities)")
    return heatmap / heatmap.sum()


def heatmap_mode(heatmap: np.ndarray) -> tuple[int, int]:
    """Integer (row, col) index of the largest value (first one on ties)."""
    heatmap = np.asarray(heatmap)
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return int(row), int(col)


def _parabola_offset(left: float, centre: float, right: float) -> float:
    denom = left - 2.0 * centre + right
    if denom >= 0.0:  # not a strict maximum along this axis
        return 0.0
    return float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))


def refine_subpixel(heatmap: np.ndarray, row: int, col: int) -> tuple[float, float]:
    """Continuous (row, col) of the peak at index ``(row, col)``, refined by a log-parabola per axis."""
    logp = np.log(np.maximum(np.asarray(heatmap, dtype=np.float64), 1e-30))
    h, w = logp.shape
    d_row = _parabola_offset(logp[row - 1, col], logp[row, col], logp[row + 1, col]) if 0 < row < h - 1 else 0.0
    d_col = _parabola_offset(logp[row, col - 1], logp[row, col], logp[row, col + 1]) if 0 < col < w - 1 else 0.0
    return row + 0.5 + d_row, col + 0.5 + d_col


def _disc_mask(shape: tuple[int, int], row: float, col: float, radius_px: float) -> np.ndarray:
    rows = np.arange(shape[0])[:, None] + 0.5
    cols = np.arange(shape[1])[None, :] + 0.5
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius_px**2


def covariance_px(heatmap: np.ndarray, row: float, col: float, radius_px: float) -> np.ndarray:
    """2x2 covariance in pixels^2, ordered (col, row), of the probability inside the disc around (row, col)."""
    p = _check_heatmap(heatmap) * _disc_mask(heatmap.shape, row, col, radius_px)
    mass = p.sum()
    dr = np.arange(p.shape[0])[:, None] + 0.5 - row
    dc = np.arange(p.shape[1])[None, :] + 0.5 - col
    c_cc = float((p * dc * dc).sum() / mass) + 1.0 / 12.0
    c_rr = float((p * dr * dr).sum() / mass) + 1.0 / 12.0
    c_cr = float((p * dc * dr).sum() / mass)
    return np.array([[c_cc, c_cr], [c_cr, c_rr]])


def covariance_px_to_m2(cov_colrow: np.ndarray, georef: PatchGeoref) -> np.ndarray:
    """Map a (col, row) pixel covariance to (east, north) metres^2 with the patch affine's linear part."""
    a, b, _, d, e, _ = georef.affine
    jac = np.array([[a, b], [d, e]])
    return jac @ cov_colrow @ jac.T


def entropy_nats(heatmap: np.ndarray) -> float:
    """Shannon entropy ``-sum p log p`` of a normalised heat map."""
    p = _check_heatmap(heatmap).ravel()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def estimate_from_heatmap(heatmap: np.ndarray, georef: PatchGeoref, radius_m: float = 5.0) -> HeatmapEstimate:
    """Position, covariance (m^2, east/north), confidence and lat/lon of one heat map over a patch.

    ``georef`` describes the patch at the heat map's resolution (use ``georef.resized`` if the image fed to the
    model had another size); ``radius_m`` bounds the neighbourhood of the mode used for covariance and mass.
    """
    p = _check_heatmap(heatmap)
    if georef.height_px != p.shape[0] or georef.width_px != p.shape[1]:
        raise ValueError(f"georef is {georef.height_px}x{georef.width_px} px but the heat map is {p.shape}; "
                         "pass georef.resized(H, W)")
    mode = heatmap_mode(p)
    row, col = refine_subpixel(p, *mode)
    radius_px = max(1.0, radius_m / georef.m_per_px)
    cov_m2 = covariance_px_to_m2(covariance_px(p, row, col, radius_px), georef)
    lat, lon = georef.pixel_to_latlon(row, col)
    mass = float((p * _disc_mask(p.shape, row, col, radius_px)).sum())
    return HeatmapEstimate(row=row, col=col, lat_deg=float(lat), lon_deg=float(lon),
                           covariance_en_m2=tuple(float(v) for v in cov_m2.ravel()),
                           peak_probability=float(p.max()), peak_mass=min(1.0, mass), entropy_nats=entropy_nats(p))

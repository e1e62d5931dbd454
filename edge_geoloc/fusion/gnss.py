"""GNSS measurement covariance in ENU, with robot_localization / NavSatFix meanings.

Order of preference (what the receiver knows best first):

1. ``KNOWN`` / ``DIAGONAL_KNOWN`` covariance (NMEA GST sigmas, or a NavSatFix that says so): used as given.
2. ``APPROXIMATED``: used as given; the GNSS reader (:mod:`edge_geoloc.sensors`) already computed it as
   ``HDOP * UERE`` with the UERE of the fix quality (SPS, DGPS, RTK...), as a NavSatFix driver would.
3. ``UNKNOWN`` (a NavSatFix's covariance means nothing) with an HDOP: ``sigma_h = HDOP * uere_m``,
   ``sigma_up = vertical_factor * sigma_h`` (both from :class:`FusionConfig`).
4. ``UNKNOWN`` without HDOP: ``default_gnss_sigma_m`` on every axis.

Every diagonal entry is floored at ``min_gnss_sigma_m^2``, since GST sigmas tend to be optimistic.
"""

from __future__ import annotations

import math

import numpy as np

from edge_geoloc.fusion.config import FusionConfig
from edge_geoloc.types import CovarianceType, GnssFix


def gnss_covariance_enu(fix: GnssFix, cfg: FusionConfig) -> np.ndarray:
    """(3, 3) ENU measurement covariance in m^2 for ``fix`` (see module doc for the rules)."""
    hdop = fix.hdop if fix.hdop is not None and math.isfinite(fix.hdop) and fix.hdop > 0 else None
    if fix.covariance_type != CovarianceType.UNKNOWN:
        cov = fix.covariance_enu_m2.copy()
    elif hdop is not None:
        sigma_h = hdop * cfg.uere_m
        cov = np.diag([sigma_h**2, sigma_h**2, (cfg.vertical_factor * sigma_h) ** 2])
    else:
        cov = np.eye(3) * cfg.default_gnss_sigma_m**2
    return _floor_diagonal(0.5 * (cov + cov.T), cfg.min_gnss_sigma_m**2)


def usable_gnss_covariance(fix: GnssFix) -> bool:
    """A covariance the receiver claims to know must be finite and positive definite horizontally (a zero or
    negative variance means a broken driver, not a perfect fix): both filters reject such fixes (counted)."""
    if fix.covariance_type == CovarianceType.UNKNOWN:
        return True
    C = np.asarray(fix.covariance_enu_m2, dtype=np.float64)[:2, :2]
    return bool(np.all(np.isfinite(C)) and C[0, 0] > 0 and C[1, 1] > 0 and np.linalg.det(0.5 * (C + C.T)) > 0)


def _floor_diagonal(cov: np.ndarray, floor_m2: float) -> np.ndarray:
    """Raise each variance to at least ``floor_m2``, scaling covariances to keep correlations."""
    var = np.diag(cov).copy()
    new_var = np.maximum(var, floor_m2)
    scale = np.sqrt(new_var / np.where(var > 0, var, 1.0))
    out = cov * np.outer(scale, scale)
    np.fill_diagonal(out, new_var)
    return out


def velocity_from_course(fix: GnssFix) -> np.ndarray | None:
    """ENU horizontal velocity from RMC speed and course over ground (clockwise from north)."""
    if fix.speed_mps is None or fix.course_rad is None:
        return None
    if not (math.isfinite(fix.speed_mps) and math.isfinite(fix.course_rad)):
        return None
    return np.array([fix.speed_mps * math.sin(fix.course_rad), fix.speed_mps * math.cos(fix.course_rad)])

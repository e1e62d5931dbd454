"""GnssFix -> NMEA 0183 sentences (GGA, RMC, GST) with checksums: for simulators, replays and tests.

The inverse of the reader up to the printed precision (latitude/longitude to 1e-6 arc-minutes, ~0.2 mm;
heights and sigmas to 1 mm). The GST error ellipse is the eigen-decomposition of the horizontal covariance:
``a^2 >= b^2`` are its eigenvalues, the orientation is the major eigenvector's bearing from north.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from edge_geoloc.sensors.nmea import KNOTS_TO_MPS, with_checksum
from edge_geoloc.types import GnssFix


def _dm(value_deg: float, degree_digits: int, hemispheres: str) -> tuple[str, str]:
    hemisphere = hemispheres[0] if value_deg >= 0 else hemispheres[1]
    value = abs(value_deg)
    degrees = int(value)
    minutes = round((value - degrees) * 60.0, 6)
    if minutes >= 60.0:
        degrees, minutes = degrees + 1, 0.0
    return f"{degrees:0{degree_digits}d}{minutes:09.6f}", hemisphere


def covariance_to_ellipse(cov_en_m2: np.ndarray) -> tuple[float, float, float]:
    """(sigma_major_m, sigma_minor_m, orientation_deg clockwise from north in [0, 180)) of a 2x2 E/N covariance."""
    values, vectors = np.linalg.eigh(np.asarray(cov_en_m2, dtype=np.float64))
    east, north = vectors[:, 1]
    orientation = math.degrees(math.atan2(east, north)) % 180.0
    return math.sqrt(max(values[1], 0.0)), math.sqrt(max(values[0], 0.0)), orientation


def format_epoch(fix: GnssFix, talker: str = "GP", geoid_separation_m: float = 0.0,
                 with_gst: bool = True) -> list[str]:
    """GGA, RMC (and GST from the fix's covariance) for one fix; ``fix.alt_m`` is ellipsoidal."""
    moment = dt.datetime.fromtimestamp(round(fix.stamp_s, 2), dt.timezone.utc)
    hhmmss = f"{moment:%H%M%S}.{moment.microsecond // 10000:02d}"
    lat, ns = _dm(fix.lat_deg, 2, "NS")
    lon, ew = _dm(fix.lon_deg, 3, "EW")
    hdop = f"{fix.hdop:.2f}" if fix.hdop is not None else ""
    alt_msl = fix.alt_m - geoid_separation_m
    sentences = [with_checksum(f"{talker}GGA,{hhmmss},{lat},{ns},{lon},{ew},{fix.fix_quality},"
                               f"{fix.num_satellites:02d},{hdop},{alt_msl:.3f},M,{geoid_separation_m:.3f},M,,")]
    speed = f"{fix.speed_mps / KNOTS_TO_MPS:.3f}" if fix.speed_mps is not None else ""
    course = f"{math.degrees(fix.course_rad) % 360.0:.2f}" if fix.course_rad is not None else ""
    sentences.append(with_checksum(f"{talker}RMC,{hhmmss},A,{lat},{ns},{lon},{ew},{speed},{course},"
                                   f"{moment:%d%m%y},,,A"))
    if with_gst:
        cov = fix.covariance_enu_m2
        major, minor, orientation = covariance_to_ellipse(cov[:2, :2])
        sigma_lat, sigma_lon, sigma_alt = (math.sqrt(cov[i, i]) for i in (1, 0, 2))
        sentences.append(with_checksum(f"{talker}GST,{hhmmss},{major:.3f},{major:.3f},{minor:.3f},"
                                       f"{orientation:.2f},{sigma_lat:.3f},{sigma_lon:.3f},{sigma_alt:.3f}"))
    return sentences

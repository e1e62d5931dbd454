"""WGS84 <-> UTM and local ENU conversions (pyproj), and ground resolution helpers.

Conventions: latitudes and longitudes in degrees, heights in metres above the WGS84 ellipsoid, ENU axes
east/north/up (REP-103). Headings in this SDK are clockwise from north (``heading_rad``); ENU yaw is
counter-clockwise from east (``yaw_enu_rad``); :func:`heading_to_enu_yaw` converts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer

WGS84_EPSG = 4326
WGS84_3D_EPSG = 4979
ECEF_EPSG = 4978
WEB_MERCATOR_EQUATOR_M_PER_PX_Z0 = 156543.03392804097  # 2*pi*6378137 / 256


@dataclass(frozen=True)
class UtmZone:
    """A UTM zone: number 1..60 and hemisphere."""

    number: int
    north: bool

    def __post_init__(self) -> None:
        if not 1 <= self.number <= 60:
            raise ValueError(f"UTM zone number must be in 1..60, got {self.number}")

    @property
    def epsg(self) -> int:
        return (32600 if self.north else 32700) + self.number

    @property
    def crs(self) -> CRS:
        return CRS.from_epsg(self.epsg)

    @classmethod
    def from_epsg(cls, epsg: int) -> UtmZone:
        if 32601 <= epsg <= 32660:
            return cls(epsg - 32600, True)
        if 32701 <= epsg <= 32760:
            return cls(epsg - 32700, False)
        raise ValueError(f"EPSG:{epsg} is not a WGS84 UTM zone (32601-32660 or 32701-32760)")

    def __str__(self) -> str:
        return f"{self.number}{'N' if self.north else 'S'}"


def check_latlon(lat_deg: float, lon_deg: float) -> None:
    """Raise ValueError for latitudes or longitudes that are not finite or out of range."""
    if not (math.isfinite(lat_deg) and math.isfinite(lon_deg)):
        raise ValueError(f"latitude/longitude must be finite, got ({lat_deg}, {lon_deg})")
    if not -90.0 <= lat_deg <= 90.0:
        raise ValueError(f"latitude must be in [-90, 90] degrees, got {lat_deg}")
    if not -180.0 <= lon_deg <= 180.0:
        raise ValueError(f"longitude must be in [-180, 180] degrees, got {lon_deg}")


def utm_zone_for(lat_deg: float, lon_deg: float) -> UtmZone:
    """The standard UTM zone of a point, with the Norway and Svalbard exceptions."""
    check_latlon(lat_deg, lon_deg)
    number = int((lon_deg + 180.0) // 6.0) % 60 + 1
    if 56.0 <= lat_deg < 64.0 and 3.0 <= lon_deg < 12.0:
        number = 32
    elif 72.0 <= lat_deg < 84.0 and 0.0 <= lon_deg < 42.0:
        number = 31 if lon_deg < 9 else 33 if lon_deg < 21 else 35 if lon_deg < 33 else 37
    return UtmZone(number, lat_deg >= 0.0)


@lru_cache(maxsize=64)
def _transformer(src_epsg: int, dst_epsg: int) -> Transformer:
    return Transformer.from_crs(src_epsg, dst_epsg, always_xy=True)


def latlon_to_utm(lat_deg, lon_deg, zone: UtmZone | None = None):
    """(easting_m, northing_m, zone). Arrays are accepted; the zone defaults to that of the first point."""
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    if zone is None:
        zone = utm_zone_for(float(lat.flat[0]), float(lon.flat[0]))
    east, north = _transformer(WGS84_EPSG, zone.epsg).transform(lon, lat)
    return _scalar_or_array(east), _scalar_or_array(north), zone


def utm_to_latlon(easting_m, northing_m, zone: UtmZone):
    """(lat_deg, lon_deg) of UTM coordinates in ``zone``."""
    lon, lat = _transformer(zone.epsg, WGS84_EPSG).transform(
        np.asarray(easting_m, dtype=np.float64), np.asarray(northing_m, dtype=np.float64)
    )
    return _scalar_or_array(lat), _scalar_or_array(lon)


def _scalar_or_array(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


class EnuFrame:
    """A local East-North-Up tangent frame at a WGS84 origin (exact, through ECEF).

    ``to_enu`` and ``from_enu`` accept scalars or arrays. Heights are ellipsoidal.
    """

    def __init__(self, lat0_deg: float, lon0_deg: float, alt0_m: float = 0.0) -> None:
        check_latlon(lat0_deg, lon0_deg)
        self.lat0_deg, self.lon0_deg, self.alt0_m = float(lat0_deg), float(lon0_deg), float(alt0_m)
        self._to_ecef = _transformer(WGS84_3D_EPSG, ECEF_EPSG)
        self._from_ecef = _transformer(ECEF_EPSG, WGS84_3D_EPSG)
        self._origin_ecef = np.array(self._to_ecef.transform(lon0_deg, lat0_deg, alt0_m))
        self._rotation = _ecef_to_enu_rotation(math.radians(lat0_deg), math.radians(lon0_deg))

    def to_enu(self, lat_deg, lon_deg, alt_m=0.0):
        """(east_m, north_m, up_m) of WGS84 points."""
        lat, lon, alt = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (lat_deg, lon_deg, alt_m)))
        ecef = np.stack(self._to_ecef.transform(lon, lat, alt), axis=-1) - self._origin_ecef
        enu = ecef @ self._rotation.T
        return tuple(_scalar_or_array(enu[..., i]) for i in range(3))

    def from_enu(self, east_m, north_m, up_m=0.0):
        """(lat_deg, lon_deg, alt_m) of ENU points."""
        e, n, u = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (east_m, north_m, up_m)))
        ecef = np.stack([e, n, u], axis=-1) @ self._rotation + self._origin_ecef
        lon, lat, alt = self._from_ecef.transform(ecef[..., 0], ecef[..., 1], ecef[..., 2])
        return _scalar_or_array(lat), _scalar_or_array(lon), _scalar_or_array(alt)

    def __repr__(self) -> str:
        return f"EnuFrame(lat0_deg={self.lat0_deg}, lon0_deg={self.lon0_deg}, alt0_m={self.alt0_m})"


def _ecef_to_enu_rotation(lat_rad: float, lon_rad: float) -> np.ndarray:
    sl, cl = math.sin(lat_rad), math.cos(lat_rad)
    so, co = math.sin(lon_rad), math.cos(lon_rad)
    return np.array([[-so, co, 0.0], [-sl * co, -sl * so, cl], [cl * co, cl * so, sl]])


def haversine_m(lat1_deg, lon1_deg, lat2_deg, lon2_deg, radius_m: float = 6371008.8):
    """Great-circle distance in metres (mean Earth radius); good to ~0.5% for error statistics."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in
                              (lat1_deg, lon1_deg, lat2_deg, lon2_deg))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return _scalar_or_array(2 * radius_m * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


def web_mercator_m_per_px(lat_deg: float, zoom: int, scale: int = 1) -> float:
    """Ground resolution of a Web-Mercator tile pixel (e.g. VIGOR: zoom 20; KITTI: zoom 18, scale 2)."""
    return WEB_MERCATOR_EQUATOR_M_PER_PX_Z0 * math.cos(math.radians(lat_deg)) / (2**zoom) / scale


def heading_to_enu_yaw(heading_rad: float) -> float:
    """Heading (clockwise from north) -> ENU yaw (counter-clockwise from east), wrapped to (-pi, pi]."""
    return wrap_angle(math.pi / 2 - heading_rad)


def enu_yaw_to_heading(yaw_enu_rad: float) -> float:
    """ENU yaw (counter-clockwise from east) -> heading (clockwise from north), wrapped to [0, 2*pi)."""
    return (math.pi / 2 - yaw_enu_rad) % (2 * math.pi)


def wrap_angle(angle_rad: float) -> float:
    """Wrap an angle to (-pi, pi]."""
    wrapped = math.remainder(angle_rad, 2 * math.pi)
    return math.pi if wrapped == -math.pi else wrapped

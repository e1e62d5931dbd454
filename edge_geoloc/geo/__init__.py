"""Geodesy (WGS84, UTM, ENU) and geo-referenced raster windows."""

from edge_geoloc.geo.geodesy import (
    EnuFrame,
    UtmZone,
    check_latlon,
    enu_yaw_to_heading,
    haversine_m,
    heading_to_enu_yaw,
    latlon_to_utm,
    utm_to_latlon,
    utm_zone_for,
    web_mercator_m_per_px,
    wrap_angle,
)
from edge_geoloc.geo.raster import GeoRaster, Patch, PatchGeoref, RasterError, write_geotiff

__all__ = [
    "EnuFrame", "GeoRaster", "Patch", "PatchGeoref", "RasterError", "UtmZone", "check_latlon",
    "enu_yaw_to_heading", "haversine_m", "heading_to_enu_yaw", "latlon_to_utm", "utm_to_latlon",
    "utm_zone_for", "web_mercator_m_per_px", "wrap_angle", "write_geotiff",
]

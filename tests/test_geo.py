"""Golden values for geodesy, checked against formulas independent of pyproj."""

import math

import numpy as np
import pytest

from edge_geoloc.geo import (
    EnuFrame,
    GeoRaster,
    PatchGeoref,
    RasterError,
    UtmZone,
    heading_to_enu_yaw,
    latlon_to_utm,
    utm_to_latlon,
    utm_zone_for,
    web_mercator_m_per_px,
    write_geotiff,
)

WGS84_A = 6378137.0
WGS84_F = 1 / 298.257223563


def meridian_arc_m(lat_deg: float) -> float:
    """Meridian arc length from the equator (Helmert's series in n), accurate to well below 1 mm."""
    n = WGS84_F / (2 - WGS84_F)
    phi = math.radians(lat_deg)
    terms = (
        -3 / 2 * n * (1 - n**2 / 8) * math.sin(2 * phi)
        + 15 / 16 * n**2 * (1 - n**2 / 4) * math.sin(4 * phi)
        - 35 / 48 * n**3 * math.sin(6 * phi)
        + 315 / 512 * n**4 * math.sin(8 * phi)
    )
    return WGS84_A / (1 + n) * ((1 + n**2 / 4 + n**4 / 64) * phi + terms)


@pytest.mark.parametrize("lat", [0.0, 12.5, 45.0, 52.0, 71.3])
def test_utm_on_central_meridian_matches_meridian_arc_to_a_millimetre(lat):
    east, north, zone = latlon_to_utm(lat, 9.0)  # 9 E is the central meridian of zone 32
    assert zone == UtmZone(32, True)
    assert east == pytest.approx(500000.0, abs=1e-3)
    assert north == pytest.approx(0.9996 * meridian_arc_m(lat), abs=1e-3)


def test_meridian_arc_golden_value():
    # Published WGS84 value: equator to 45 deg N along a meridian is 4,984,944.378 m.
    assert meridian_arc_m(45.0) == pytest.approx(4984944.378, abs=2e-3)


def test_southern_hemisphere_false_northing():
    east, north, zone = latlon_to_utm(-33.0, 9.0)
    assert zone == UtmZone(32, False) and zone.epsg == 32732
    assert north == pytest.approx(10_000_000.0 - 0.9996 * meridian_arc_m(33.0), abs=1e-3)


def test_utm_round_trip_below_a_millimetre():
    lat, lon = np.array([52.0123, 52.0456]), np.array([4.3571, 4.3999])
    east, north, zone = latlon_to_utm(lat, lon)
    lat2, lon2 = utm_to_latlon(east, north, zone)
    assert np.abs(lat2 - lat).max() * 111_000 < 1e-3 and np.abs(lon2 - lon).max() * 70_000 < 1e-3


@pytest.mark.parametrize("lat, lon, zone", [(60.0, 5.0, 32), (78.0, 10.0, 33), (40.0, -74.0, 18), (-34.0, 151.0, 56)])
def test_utm_zone_rules_including_norway_and_svalbard(lat, lon, zone):
    assert utm_zone_for(lat, lon).number == zone


def test_enu_is_exact_for_up_and_meridian_offsets():
    frame = EnuFrame(45.0, 9.0, 100.0)
    e, n, u = frame.to_enu(45.0, 9.0, 1100.0)
    assert (e, n, u) == pytest.approx((0.0, 0.0, 1000.0), abs=1e-6)
    # 0.01 deg north along the meridian at sea-level-ish height: chord of the meridian arc.
    e, n, u = frame.to_enu(45.01, 9.0, 100.0)
    arc = meridian_arc_m(45.01) - meridian_arc_m(45.0)
    assert e == pytest.approx(0.0, abs=1e-6)
    assert n == pytest.approx(arc, abs=0.02)  # chord vs arc over 1.1 km differs by ~mm; height 100 m adds ~1.7 cm
    lat, lon, alt = frame.from_enu(123.4, -567.8, 9.0)
    assert frame.to_enu(lat, lon, alt) == pytest.approx((123.4, -567.8, 9.0), abs=1e-6)


def test_heading_conversion():
    assert heading_to_enu_yaw(0.0) == pytest.approx(math.pi / 2)  # north
    assert heading_to_enu_yaw(math.pi / 2) == pytest.approx(0.0)  # east


def test_web_mercator_resolution_matches_vigor_and_kitti_constants():
    assert web_mercator_m_per_px(40.7128, 20) == pytest.approx(0.1131, abs=2e-4)  # VIGOR New York
    assert web_mercator_m_per_px(49.015, 18, scale=2) == pytest.approx(0.1958, abs=1e-4)  # KITTI


def _synthetic_raster(tmp_path, gsd=0.5, size=400):
    east0, north0, zone = latlon_to_utm(52.0, 4.36)
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 0] = np.arange(size)[None, :] % 256  # red encodes the column
    image[..., 1] = np.arange(size)[:, None] % 256  # green encodes the row
    georef = PatchGeoref(zone.epsg, (gsd, 0.0, east0, 0.0, -gsd, north0), size, size)
    return write_geotiff(tmp_path / "ortho.tif", image, georef), georef, zone


def test_raster_window_pixel_latlon_round_trip(tmp_path):
    path, georef, zone = _synthetic_raster(tmp_path)
    with GeoRaster(path) as raster:
        lat, lon = georef.pixel_to_latlon(200.0, 100.0)
        patch = raster.read_around_latlon(lat, lon, size_m=40.0, out_px=80)  # 0.5 m/px, same scale
        assert patch.valid_fraction == 1.0
        assert patch.georef.m_per_px == pytest.approx(0.5)
        row, col = patch.georef.latlon_to_pixel(lat, lon)
        assert (row, col) == pytest.approx((40.0, 40.0), abs=1e-6)
        # the centre pixel [40, 40] covers raster pixel [200, 100]: red = col, green = row
        assert tuple(patch.image[40, 40, :2]) == (100, 200)
        lat2, lon2 = patch.georef.pixel_to_latlon(40.0, 40.0)
        assert (lat2, lon2) == pytest.approx((lat, lon), abs=1e-9)


def test_raster_window_at_the_edge_and_outside(tmp_path):
    path, georef, _ = _synthetic_raster(tmp_path)
    with GeoRaster(path) as raster:
        lat, lon = georef.pixel_to_latlon(0.0, 0.0)
        patch = raster.read_around_latlon(lat, lon, size_m=40.0, out_px=40)
        assert 0.2 < patch.valid_fraction < 0.3
        far_lat, far_lon = georef.pixel_to_latlon(-1000.0, -1000.0)
        with pytest.raises(RasterError, match="outside"):
            raster.read_around_latlon(far_lat, far_lon, size_m=40.0, out_px=40)


def test_missing_or_corrupt_raster_is_a_clear_error(tmp_path):
    with pytest.raises(RasterError, match="not found"):
        GeoRaster(tmp_path / "nope.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(RasterError, match="cannot read"):
        GeoRaster(bad)


def test_raster_window_past_the_edge_is_black_and_the_rest_is_the_raster(tmp_path):
    path, georef, _ = _synthetic_raster(tmp_path)  # red = column, green = row, 0.5 m/px
    with GeoRaster(path) as raster:
        lat, lon = georef.pixel_to_latlon(10.0, 10.0)
        patch = raster.read_around_latlon(lat, lon, size_m=40.0, out_px=80)  # raster rows/cols -30 .. 49
        assert 0.35 < patch.valid_fraction < 0.45
        assert not patch.image[:25, :25].any()  # off the raster (away from the resampling seam)
        assert tuple(patch.image[60, 70, :2]) == (40, 30)  # patch [60, 70] is raster [30, 40]

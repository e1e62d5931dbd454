"""Synthetic areas: determinism, geo-referencing against edge_geoloc.geo, styles, bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edge_geoloc.config import ConfigError
from edge_geoloc.geo import GeoRaster, latlon_to_utm
from edge_geoloc.sim import generate_area, get_style, load_area, load_style
from edge_geoloc.sim.layout import BUILDING, GRASS, ROAD, TREE


@pytest.fixture(scope="module")
def areas():
    return {name: generate_area(name, seed=3, size_m=400.0, gsd_m=0.5) for name in ("source", "target")}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path, areas):
    again = generate_area("source", seed=3, size_m=400.0, gsd_m=0.5)
    areas["source"].save(tmp_path / "a")
    again.save(tmp_path / "b")
    for name in ("ortho.tif", "scene.npz", "area.json"):
        assert _sha(tmp_path / "a" / name) == _sha(tmp_path / "b" / name), name
    other = generate_area("source", seed=4, size_m=400.0, gsd_m=0.5)
    assert np.mean(other.ortho != areas["source"].ortho) > 0.5


def test_geotiff_georeference_matches_geo_module(tmp_path, areas):
    area = areas["source"]
    area.save(tmp_path)
    east0, north0, zone = latlon_to_utm(52.0, 4.36)
    with GeoRaster(tmp_path / "ortho.tif") as raster:
        assert raster.crs_epsg == zone.epsg == 32631
        assert raster.m_per_px == pytest.approx(0.5)
        rows, cols = np.array([0.0, 400.0, 799.5, 123.25]), np.array([0.0, 400.0, 10.5, 700.0])
        lat, lon = raster.georef.pixel_to_latlon(rows, cols)
        east, north = area.pixel_to_local(rows, cols)
        lat2, lon2 = area.local_to_latlon(east, north)
        np.testing.assert_allclose(lat, lat2, atol=1e-9)
        np.testing.assert_allclose(lon, lon2, atol=1e-9)
        # the centre pixel corner is the requested lat/lon, and the UTM centre is where it should be
        lat_c, lon_c = raster.georef.pixel_to_latlon(400.0, 400.0)
        assert (lat_c, lon_c) == pytest.approx((52.0, 4.36), abs=1e-9)
        e, n = raster.georef.pixel_to_crs(400.0, 400.0)
        assert (float(e), float(n)) == pytest.approx((east0, north0), abs=1e-6)
        patch = raster.read_around_latlon(*area.local_to_latlon(30.0, -20.0), size_m=64.0, out_px=128)
    mine, georef = area.aerial_patch(30.0, -20.0, 64.0, 128)
    assert georef.affine == pytest.approx(patch.georef.affine, abs=1e-6)
    assert np.abs(mine.astype(int) - patch.image.astype(int)).mean() < 2.0


def test_load_area_round_trip(tmp_path, areas):
    area = areas["target"]
    loaded = load_area(area.save(tmp_path))
    assert np.array_equal(loaded.ortho, area.ortho)
    assert np.array_equal(loaded.scene.height_m, area.scene.height_m)
    assert np.array_equal(loaded.scene.buildings, area.scene.buildings)
    assert loaded.style == area.style and loaded.georef == area.georef


def test_local_pixel_latlon_round_trip(areas):
    area = areas["source"]
    east, north = np.array([-150.0, 0.0, 87.3]), np.array([99.0, 0.0, -12.5])
    lat, lon = area.local_to_latlon(east, north)
    e2, n2 = area.latlon_to_local(lat, lon)
    np.testing.assert_allclose(e2, east, atol=1e-6)
    np.testing.assert_allclose(n2, north, atol=1e-6)
    row, col = area.local_to_pixel(east, north)
    lat3, lon3 = area.georef.pixel_to_latlon(row, col)
    np.testing.assert_allclose(lat3, lat, atol=1e-10)


def test_building_table_matches_rasters(areas):
    area = areas["source"]
    scene = area.scene
    assert len(scene.buildings) > 30
    for index in range(0, len(scene.buildings), 7):
        ids = scene.building_id == index + 1
        footprint_m2 = ids.sum() * area.gsd_m**2
        assert footprint_m2 == pytest.approx(scene.buildings[index, 2] * scene.buildings[index, 3], rel=0.2)
        assert scene.height_m[ids].min() == pytest.approx(scene.buildings[index, 5], abs=0.01)
        corners = scene.building_corners(index)
        rows, cols = area.local_to_pixel(corners[:, 0] * 0.9 + corners[:, 0].mean() * 0.1,
                                         corners[:, 1] * 0.9 + corners[:, 1].mean() * 0.1)
        assert np.all(scene.building_id[rows.astype(int), cols.astype(int)] == index + 1)


def test_source_and_target_differ_like_two_cities(areas):
    src, tgt = areas["source"], areas["target"]

    def stats(area):
        cls = area.scene.classes
        b = area.scene.buildings
        return dict(height=np.median(b[:, 5]), size=np.median(b[:, 2] * b[:, 3]),
                    green=np.mean((cls == GRASS) | (cls == TREE)), trees=np.mean(cls == TREE),
                    road=np.mean(cls == ROAD), built=np.mean(cls == BUILDING),
                    colour=area.ortho.reshape(-1, 3).mean(0))

    s, t = stats(src), stats(tgt)
    assert t["height"] > 1.4 * s["height"]
    assert t["size"] > 2.0 * s["size"]
    assert s["trees"] > 2.0 * t["trees"]
    assert np.abs(s["colour"] - t["colour"]).max() > 10


def test_yaml_style_and_bad_input(tmp_path):
    path = tmp_path / "desert.yaml"
    path.write_text("name: desert\nroad_layout: grid\nground_color: [200, 170, 120]\ntree_density_per_ha: 0.5\n")
    style = load_style(path)
    assert style.name == "desert" and style.ground_color == (200, 170, 120)
    area = generate_area(str(path), seed=0, size_m=100.0, gsd_m=1.0)
    assert area.style_name == "desert" and area.ortho.shape == (100, 100, 3)
    path.write_text("name: bad\nroad_colour: [1, 2, 3]\n")
    with pytest.raises(ConfigError, match="road_colour"):
        load_style(path)
    with pytest.raises(ConfigError, match="unknown style"):
        get_style("atlantis")
    with pytest.raises(ValueError, match="size_m"):
        generate_area("source", 0, size_m=50000.0, gsd_m=0.3)
    with pytest.raises(ValueError, match="gsd_m"):
        generate_area("source", 0, size_m=100.0, gsd_m=-1.0)
    with pytest.raises(ValueError, match="center_lat_deg"):
        generate_area("source", 0, size_m=100.0, gsd_m=1.0, center_lat_deg=89.0)

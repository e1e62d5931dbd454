"""Conditions: the map and the flight share a layout but not the moment (light, season, change, sensor)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edge_geoloc.config import ConfigError
from edge_geoloc.sim import DronePose, PinholeCamera, render_drone_view
from edge_geoloc.sim.area import capture_area, generate_area, load_area
from edge_geoloc.sim.conditions import (
    Change,
    Condition,
    Light,
    Sensor,
    apply_sensor,
    builtin_condition_names,
    get_condition,
    load_condition,
)
from edge_geoloc.sim.flight import FlightConfig, load_flight, simulate_flight

SIZE_M, GSD_M = 300.0, 0.5


@pytest.fixture(scope="module")
def summer_map():
    return generate_area("source", 3, SIZE_M, GSD_M, condition="summer_map")


def _luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def test_builtin_conditions_load():
    names = builtin_condition_names()
    assert {"summer_map", "autumn_flight", "winter_flight", "overcast_flight"} <= set(names)
    for name in names:
        assert get_condition(name).name == name


def test_same_layout_under_two_conditions_has_identical_footprints(summer_map):
    overcast = capture_area(summer_map, "overcast_flight")  # light, cars and sensor differ; no building change
    assert np.array_equal(overcast.scene.building_id, summer_map.scene.building_id)
    assert np.array_equal(overcast.scene.buildings, summer_map.scene.buildings)
    assert np.mean(np.abs(overcast.ortho.astype(int) - summer_map.ortho.astype(int))) > 5  # it does look different


def test_building_changes_touch_only_the_declared_share(summer_map):
    autumn = capture_area(summer_map, "autumn_flight")
    n = len(summer_map.scene.buildings)
    before = set(np.unique(summer_map.scene.building_id)) - {0}
    after = set(np.unique(autumn.scene.building_id)) - {0}
    removed = before - after
    added = {b for b in after if b > n}
    share = get_condition("autumn_flight").change
    assert len(removed) == round(share.buildings_removed * n)
    assert 0 < len(added) <= round(share.buildings_added * n)
    kept = summer_map.scene.building_id > 0
    kept &= ~np.isin(summer_map.scene.building_id, list(removed))
    assert np.array_equal(autumn.scene.building_id[kept], summer_map.scene.building_id[kept])


@pytest.mark.parametrize("sun_azimuth_deg", [90.0, 225.0])
def test_shadows_fall_away_from_the_declared_sun(summer_map, sun_azimuth_deg):
    lit = Condition("test_lit", light=Light(sun_azimuth_deg, 50.0, 0.0))
    shaded = Condition("test_shaded", light=Light(sun_azimuth_deg, 50.0, 0.9))
    ratio = _luma(capture_area(summer_map, shaded).ortho) / (_luma(capture_area(summer_map, lit).ortho) + 1.0)
    buildings = summer_map.scene.building_id > 0
    shadow = (ratio < 0.6) & ~buildings
    az = math.radians(sun_azimuth_deg)
    away_px = np.array([math.cos(az), -math.sin(az)]) * 3.0 / GSD_M  # (rows, cols) away from the sun, 3 m

    def shadowed_share_beside(shift: np.ndarray) -> float:
        """Share in shadow of the open pixels just beside the buildings on one side."""
        beside = np.roll(buildings, tuple(np.round(shift).astype(int)), axis=(0, 1)) & ~buildings
        return float(shadow[beside].mean())

    away, toward = shadowed_share_beside(away_px), shadowed_share_beside(-away_px)
    # the sun side is shaded only by trees and neighbours; the far side almost always by the building itself
    assert away > 0.9 and away - toward > 0.4, (away, toward)


def test_capture_is_deterministic_and_textures_belong_to_the_layout(summer_map):
    again = generate_area("source", 3, SIZE_M, GSD_M, condition="summer_map")
    assert np.array_equal(again.ortho, summer_map.ortho)
    fresh = generate_area("source", 3, SIZE_M, GSD_M, condition="summer_map")
    assert np.array_equal(capture_area(fresh, "autumn_flight").ortho, capture_area(summer_map, "autumn_flight").ortho)
    # surface textures come from the layout: two captures that differ only by name are the same picture,
    # while cars are drawn per capture
    light = get_condition("summer_map").light
    one, two = (capture_area(summer_map, Condition(name, light=light)) for name in ("one", "two"))
    assert np.array_equal(one.ortho, two.ortho)
    cars = Change(car_cover=0.05)
    one, two = (capture_area(summer_map, Condition(name, light=light, change=cars)) for name in ("one", "two"))
    assert not np.array_equal(one.scene.height_m, two.scene.height_m)


def test_map_condition_is_saved_and_the_capture_rebuilt_from_disk(summer_map, tmp_path):
    summer_map.save(tmp_path / "area")
    loaded = load_area(tmp_path / "area")
    assert loaded.condition == get_condition("summer_map")
    assert capture_area(loaded, "summer_map") is loaded
    assert np.array_equal(capture_area(loaded, "winter_flight").ortho, capture_area(summer_map, "winter_flight").ortho)


def test_views_from_a_capture_carry_its_sensor(summer_map):
    pose, camera = DronePose(0.0, 0.0, 80.0, 0.3), PinholeCamera(96, 96, 60.0)
    map_view = render_drone_view(summer_map, pose, camera)
    autumn = capture_area(summer_map, "autumn_flight")
    first, second = render_drone_view(autumn, pose, camera), render_drone_view(autumn, pose, camera)
    assert not np.array_equal(first, second)  # sensor noise is drawn per view
    assert np.mean(np.abs(first.astype(int) - second.astype(int))) < 8  # ... but it is only noise
    assert np.mean(np.abs(first.astype(int) - map_view.astype(int))) > 10


def test_flight_renders_under_its_condition_and_records_both(summer_map, tmp_path):
    cfg = FlightConfig(duration_s=2.0, frame_rate_hz=1.0, width_px=64, height_px=64, condition="autumn_flight")
    flight = simulate_flight(summer_map, tmp_path / "flight", cfg)
    assert load_flight(flight.out_dir).meta["conditions"] == {"map": "summer_map", "capture": "autumn_flight"}
    saved = json.loads((tmp_path.parent / flight.meta["area_dir"] / "area.json").read_text())
    assert saved["condition"]["name"] == "summer_map"


def test_sensor_blur_is_in_metres():
    rng = np.random.default_rng(0)
    image = (rng.random((128, 128, 3)) * 255).astype(np.uint8)
    sensor = Sensor(blur_m=1.0)
    coarse = apply_sensor(image, sensor, 1.0, rng)  # 1 px sigma
    fine = apply_sensor(image, sensor, 0.25, rng)  # 4 px sigma: much smoother
    assert np.std(fine.astype(float)) < 0.6 * np.std(coarse.astype(float))
    assert apply_sensor(image, Sensor(), 1.0, rng) is image


@pytest.mark.parametrize("text, message", [
    ("light: {sun_elevation_deg: -3}\n", "above the horizon"),
    ("change: {car_cover: 1.5}\n", r"share in \[0, 1\]"),
    ("season: {leaf_off: -0.1}\n", r"share in \[0, 1\]"),
    ("sensor: {jpeg_quality: 300}\n", "jpeg_quality"),
    ("lighting: {sun_elevation_deg: 30}\n", "unknown key"),
    ("light: {sun_elevation: 30}\n", "unknown key"),
])
def test_bad_condition_files_are_rejected_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_condition(path)
    assert "bad.yaml" in str(err.value)


def test_unknown_condition_name_lists_the_builtins():
    with pytest.raises(ConfigError, match="summer_map"):
        get_condition("midsummer_night")


def test_change_shares_are_validated():
    with pytest.raises(ValueError, match="buildings_removed"):
        Change(buildings_removed=2.0)

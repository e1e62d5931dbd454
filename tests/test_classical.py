"""The classical NCC baseline finds a map crop, honours its search window, and rejects bad input clearly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_geoloc.runtime.classical import NccConfig, NccMatcher
from edge_geoloc.sim import DronePose, PinholeCamera, render_drone_view
from edge_geoloc.sim.area import generate_area


@pytest.fixture(scope="module")
def area():
    return generate_area("target", 5, 300.0, 0.5)


@pytest.fixture(scope="module")
def matcher(area):
    half = area.size_m / 2
    return NccMatcher(area.ortho, -half, half, area.gsd_m, NccConfig(ground_size_m=48.0))


def test_nadir_frame_is_found_on_its_own_map(area, matcher):
    frame = render_drone_view(area, DronePose(22.0, -35.0, 100.0, heading_rad=1.1), PinholeCamera(192, 192, 60.0))
    best = matcher.locate(matcher.prepare(frame, 1.1, 100.0, 60.0))
    assert math.hypot(best.east_m - 22.0, best.north_m + 35.0) < 3.0
    assert best.score > 0.5 and best.peak_ratio > 1.0


def test_search_window_limits_the_answer(area, matcher):
    frame = render_drone_view(area, DronePose(22.0, -35.0, 100.0, heading_rad=0.0), PinholeCamera(192, 192, 60.0))
    template = matcher.prepare(frame, 0.0, 100.0, 60.0)
    far = matcher.locate(template, prior_en=(-80.0, 80.0), radius_m=20.0)
    assert math.hypot(far.east_m + 80.0, far.north_m - 80.0) <= 20.0 * math.sqrt(2) + 1.0
    with pytest.raises(ValueError, match="outside the map"):
        matcher.locate(template, prior_en=(5000.0, 0.0), radius_m=20.0)


def test_bad_maps_and_configs_are_rejected():
    with pytest.raises(ValueError, match="RGB image"):
        NccMatcher(np.zeros((100, 100), np.uint8), 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="map_m_per_px"):
        NccMatcher(np.zeros((100, 100, 3), np.uint8), 0.0, 0.0, float("nan"))
    with pytest.raises(ValueError, match="8 pixels"):
        NccConfig(ground_size_m=4.0, m_per_px=1.0)

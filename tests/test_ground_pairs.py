"""Synthetic ground pairs for cars: views on roads, the truth inside the map patch, random training conditions."""

from __future__ import annotations

import math

import pytest

from edge_geoloc.data.ground_pairs import GroundPairConfig, write_synthetic_ground_pairs
from edge_geoloc.data.pairs import PairDataset, read_pairs
from edge_geoloc.sim.area import generate_area
from edge_geoloc.sim.layout import ROAD


@pytest.fixture(scope="module")
def area():
    return generate_area("source", 3001, 300.0, 0.5, condition="summer_map")


@pytest.mark.parametrize("kind,shape", [("ground_pano", (128, 256, 3)), ("ground_pinhole", (96, 160, 3))])
def test_pairs_put_the_car_on_a_road_inside_the_patch_near_the_coarse_fix(area, tmp_path, kind, shape):
    cfg = GroundPairConfig(count=6, query_kind=kind, pinhole_px=(160, 96), coarse_error_m=12.0, random_conditions=2)
    root = write_synthetic_ground_pairs(area, tmp_path / kind, cfg, seed=3)
    info, records = read_pairs(root, read_ground_truth=True)
    assert info.query_kind == kind and len(records) == 6
    for rec in records:
        g = rec.aerial_georef
        offset_m = math.hypot(rec.gt_row - g.height_px / 2, rec.gt_col - g.width_px / 2) * g.m_per_px
        assert offset_m <= 12.0 + g.m_per_px
        east, north = area.latlon_to_local(*g.pixel_to_latlon(rec.gt_row, rec.gt_col))
        row = int((area.size_m / 2 - north) / area.gsd_m)
        col = int((east + area.size_m / 2) / area.gsd_m)
        window = area.scene.classes[row - 4:row + 5, col - 4:col + 5]
        assert (window == ROAD).any()  # a car drives on a road (a few pixels of smoothing aside)
    dataset = PairDataset(root, (64, 128), 64, (0.5,) * 3, (0.25,) * 3, read_ground_truth=True)
    item = dataset[0]
    assert item["query"].shape == (3, 64, 128) and item["rowcol"].shape == (2,)
    assert item["heading_rad"] == (0.0 if kind == "ground_pano" else pytest.approx(records[0].heading_rad))


def test_coarse_error_must_stay_inside_the_patch():
    with pytest.raises(ValueError, match="inside the aerial patch"):
        GroundPairConfig(aerial_size_m=64.0, coarse_error_m=40.0)
    with pytest.raises(ValueError, match="query_kind"):
        GroundPairConfig(query_kind="drone")

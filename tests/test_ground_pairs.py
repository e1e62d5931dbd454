"""Synthetic ground pairs for cars: views on roads, the truth inside the map patch, random training conditions."""

from __future__ import annotations

import json
import math
import shutil

import cv2
import numpy as np
import pytest

from edge_geoloc.data.ground_bev_pairs import GroundBevPairConfig, coarse_pairs_from_dataset
from edge_geoloc.data.ground_pairs import GroundPairConfig, write_synthetic_ground_pairs
from edge_geoloc.data.images import read_image_rgb
from edge_geoloc.data.pairs import PairDataset, PairDatasetError, read_pairs
from edge_geoloc.models import create_model
from edge_geoloc.sim.area import generate_area
from edge_geoloc.sim.layout import ROAD
from edge_geoloc.train.matcher_adaptation import mode_errors_m


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


@pytest.fixture(scope="module")
def logged_like(area, tmp_path_factory):
    """Ground pairs as a drive's log holds them: the runtime's 96 m patch (0.5 m/px) around a coarse fix."""
    cfg = GroundPairConfig(count=5, aerial_size_m=96.0, aerial_px=192, coarse_error_m=12.0, condition="summer_map")
    return write_synthetic_ground_pairs(area, tmp_path_factory.mktemp("logged") / "pairs", cfg, seed=5)


@pytest.mark.parametrize("patch_m,patch_px", [(96.0, 192), (64.0, 64)])
def test_dataset_pairs_keep_each_camera_where_it_is_in_metres(area, tmp_path, patch_m, patch_px):
    """Cropping the patch to the matcher's tile around the coarse fix, and resampling it, moves no camera."""
    cfg = GroundPairConfig(count=5, aerial_size_m=patch_m, aerial_px=patch_px, coarse_error_m=12.0)
    root = write_synthetic_ground_pairs(area, tmp_path / "pairs", cfg, seed=5)
    pairs, made = coarse_pairs_from_dataset(root, GroundBevPairConfig(), read_ground_truth=True)
    _, records = read_pairs(root, read_ground_truth=True)
    assert made.samples == 5 and pairs.tiles.shape == (5, 128, 128, 3) and pairs.bevs.shape == (5, 64, 64, 3)
    for rec, truth in zip(records, pairs.truth, strict=True):
        g = rec.aerial_georef
        before = np.array([rec.gt_row - g.height_px / 2, rec.gt_col - g.width_px / 2]) * g.m_per_px
        np.testing.assert_allclose((truth - 64) * 0.5, before, atol=1e-9)


def test_dataset_pairs_cut_the_tile_from_the_patch_centre_and_never_read_truth_unasked(logged_like):
    pairs, _ = coarse_pairs_from_dataset(logged_like, GroundBevPairConfig())
    patch = read_image_rgb(logged_like / read_pairs(logged_like)[1][0].aerial)
    np.testing.assert_array_equal(pairs.tiles[0], patch[32:160, 32:160])  # 64 m of 96 m, same resolution
    assert np.isnan(pairs.truth).all()
    with pytest.raises(ValueError, match="no true positions"):
        mode_errors_m(create_model("map_matcher_micro", **GroundBevPairConfig().matcher_kwargs()), pairs)


def test_dataset_pairs_count_what_they_leave_out(logged_like, tmp_path):
    root = tmp_path / "pairs"
    shutil.copytree(logged_like, root)
    lines = [json.loads(t) for t in (root / "samples.jsonl").read_text().splitlines()]
    lines[0]["heading_rad"] = None  # a frame logged without heading
    cv2.imwrite(str(root / lines[1]["query"]), np.zeros((128, 128, 3), np.uint8))  # not a 2:1 panorama
    (root / lines[2]["aerial"]).write_bytes(b"\x89PNG truncated")
    (root / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    pairs, made = coarse_pairs_from_dataset(root, GroundBevPairConfig())
    assert (made.samples, made.no_heading, len(made.rejected)) == (2, 1, 2) and len(pairs.bevs) == 2
    assert "2:1" in made.rejected[0] and "cannot decode" in made.rejected[1]
    with pytest.raises(ValueError, match="smaller than"):
        coarse_pairs_from_dataset(logged_like, GroundBevPairConfig(tile_size_m=128.0, offset_m=16.0,
                                                                   area_size_m=400.0))


def test_dataset_pairs_refuse_a_drone_dataset(logged_like, tmp_path):
    root = tmp_path / "pairs"
    shutil.copytree(logged_like, root)
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "query_kind": "drone"}))
    with pytest.raises(PairDatasetError, match="ground panoramas"):
        coarse_pairs_from_dataset(root, GroundBevPairConfig())

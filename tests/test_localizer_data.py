"""Pair datasets (round trip, ground truth only on request, bad input), VIGOR and KITTI readers on tiny trees,
and the localization metrics against hand-computed cases."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from edge_geoloc.data.kitti import KITTI_M_PER_PX, KittiDataset, camera_pixel, read_heading_rad
from edge_geoloc.data.pairs import (
    PairDataset,
    PairDatasetError,
    PairWriter,
    dataset_for_model,
    read_pairs,
)
from edge_geoloc.data.vigor import CITY_M_PER_PX, VigorDataset, read_vigor, satellite_georef
from edge_geoloc.evaluate.localization_metrics import (
    localization_errors,
    orientation_error_deg,
    summarize_errors,
)
from edge_geoloc.geo import PatchGeoref
from edge_geoloc.geo.view_alignment import align_query_north_up, align_query_scale

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
GEOREF = PatchGeoref(32631, (0.5, 0.0, 500000.0, 0.0, -0.5, 5760000.0), 32, 32)


def _write_pairs(root, n=3, with_gt=True):
    rng = np.random.default_rng(0)
    with PairWriter(root, "drone", 16.0, 32, ("test",)) as w:
        for i in range(n):
            w.add(f"{i:03d}", rng.integers(0, 255, (24, 24, 3), dtype=np.uint8),
                  rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), GEOREF, 52.0, 4.36, heading_rad=0.1 * i,
                  stamp_s=float(i), **({"gt_row": 10.0 + i, "gt_col": 20.0} if with_gt else {}))
    return root


def test_pair_round_trip_and_ground_truth_only_on_request(tmp_path):
    root = _write_pairs(tmp_path / "pairs")
    info, recs = read_pairs(root)
    assert info.count == 3 and info.query_kind == "drone" and info.aerial_px == 32
    assert all(r.gt_row is None for r in recs)  # not read unless asked
    _, recs = read_pairs(root, read_ground_truth=True)
    assert [(r.gt_row, r.gt_col) for r in recs] == [(10.0, 20.0), (11.0, 20.0), (12.0, 20.0)]
    assert recs[1].aerial_georef == GEOREF and recs[2].heading_rad == pytest.approx(0.2)
    ds = PairDataset(root, (16, 16), 64, MEAN, STD, read_ground_truth=True)
    item = ds[1]
    assert item["query"].shape == (3, 16, 16) and item["aerial"].shape == (3, 64, 64)
    assert item["rowcol"].tolist() == [22.0, 40.0]  # scaled from 32 to 64 px
    rowcol, m_per_px, _ = ds.ground_truth()
    assert m_per_px[0] == pytest.approx(0.25)
    unlabeled = PairDataset(root, (16, 16), 64, MEAN, STD)
    assert "rowcol" not in unlabeled[0]
    with pytest.raises(PairDatasetError, match="without ground truth"):
        unlabeled.ground_truth()


def test_bad_pair_datasets_get_clear_errors_and_bad_lines_are_counted(tmp_path, caplog):
    with pytest.raises(PairDatasetError, match="not a pair dataset"):
        read_pairs(tmp_path)
    root = _write_pairs(tmp_path / "p")
    with (root / "samples.jsonl").open("a") as f:
        f.write(json.dumps({"id": "broken"}) + "\n")
    _, recs = read_pairs(root)
    assert len(recs) == 3 and "rejected" in caplog.text
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(PairDatasetError, match="format"):
        read_pairs(root)


def test_scale_alignment_cuts_the_ground_square_below_the_camera():
    image = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    alt_64m = 32.0 / math.tan(math.radians(30.0))  # 60 deg hfov at this height sees 64 m: 1 px per metre
    same = align_query_scale(image, alt_64m, 60.0, 32.0, 32)  # 32 m at 1 m/px: the centre crop, unchanged
    np.testing.assert_array_equal(same, image[16:48, 16:48])
    half = align_query_scale(image, alt_64m, 60.0, 64.0, 32)  # the whole view at 2 m/px
    assert half.shape == (32, 32, 3) and abs(float(half.mean()) - float(image.mean())) < 3.0
    wide = align_query_scale(np.full((64, 64, 3), 200, np.uint8), alt_64m, 60.0, 128.0, 32)  # beyond the view
    assert wide[0, 0].tolist() == [0, 0, 0] and wide[16, 16].tolist() == [200, 200, 200]
    with pytest.raises(ValueError, match="altitude_agl_m"):
        align_query_scale(image, None, 60.0, 32.0, 32)


def test_scale_aligned_dataset_needs_altitude_and_hfov(tmp_path):
    from edge_geoloc.models import create_model

    model = create_model("xcorr_drone_micro")
    with pytest.raises(PairDatasetError, match="altitude_agl_m"):
        dataset_for_model(_write_pairs(tmp_path / "no_alt"), model)
    rng = np.random.default_rng(0)
    with PairWriter(tmp_path / "alt", "drone", 16.0, 32) as w:
        w.add("0", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), rng.integers(0, 255, (32, 32, 3), np.uint8),
              GEOREF, 52.0, 4.36, heading_rad=0.3, altitude_agl_m=40.0, hfov_deg=60.0)
    _, recs = read_pairs(tmp_path / "alt")
    assert (recs[0].altitude_agl_m, recs[0].hfov_deg) == (40.0, 60.0)
    item = dataset_for_model(tmp_path / "alt", model)[0]
    assert tuple(item["query"].shape) == (3, 32, 32) and tuple(item["aerial"].shape) == (3, 64, 64)


def test_align_panorama_rolls_heading_to_the_centre():
    pano = np.zeros((4, 8, 3), np.uint8)
    pano[:, 2] = 255  # north is at column 2 for a query with heading 90 deg (centre column 4 looks east)
    aligned = align_query_north_up(pano, math.pi / 2, "ground_pano")
    assert aligned[0, 4, 0] == 255
    with pytest.raises(ValueError, match="orientation bins"):
        align_query_north_up(pano, 0.3, "ground_pinhole")


def _vigor_tree(root):
    for city in ("NewYork", "Seattle"):
        (root / city / "panorama").mkdir(parents=True)
        (root / city / "satellite").mkdir(parents=True)
        (root / "splits__corrected" / city).mkdir(parents=True)
        pano = f"p{city},40.7,-74.0,.jpg"
        sat = "satellite_40.7_-74.0.png"
        cv2.imwrite(str(root / city / "panorama" / pano), np.full((32, 64, 3), 80, np.uint8))
        cv2.imwrite(str(root / city / "satellite" / sat), np.full((64, 64, 3), 120, np.uint8))
        line = f"{pano} {sat} 12.5 -40.0 s1.png 0 0 s2.png 0 0 s3.png 0 0\nbroken line\n"
        (root / "splits__corrected" / city / "pano_label_balanced.txt").write_text(line)


def test_vigor_reader_labels_and_metres_per_pixel(tmp_path):
    _vigor_tree(tmp_path)
    samples = read_vigor(tmp_path, "cross_area", train=True)
    assert [s.city for s in samples] == ["NewYork", "Seattle"]
    assert (samples[0].gt_row_raw, samples[0].gt_col_raw) == (332.5, 360.0)  # (320 + dr, 320 - dc)
    ds = VigorDataset(tmp_path, "cross_area", True, (32, 64), 512, MEAN, STD)
    assert ds[0]["rowcol"].tolist() == [266.0, 288.0]  # x 0.8 at 512 px
    _, m_per_px, _ = ds.ground_truth()
    assert m_per_px[0] == pytest.approx(CITY_M_PER_PX["NewYork"] * 640 / 512)
    georef = satellite_georef(40.7, -74.0)
    lat, lon = georef.pixel_to_latlon(320, 320)
    assert (lat, lon) == pytest.approx((40.7, -74.0), abs=1e-9)
    ground_m_per_px = georef.m_per_px * math.cos(math.radians(40.7))  # Mercator scale -> ground
    assert ground_m_per_px == pytest.approx(CITY_M_PER_PX["NewYork"], rel=5e-3)


def test_kitti_reader_heading_shift_and_ground_truth(tmp_path):
    date, drive = "2011_09_26", "2011_09_26_drive_0001_sync"
    raw = tmp_path / "raw_data" / date / drive
    (raw / "image_02" / "data").mkdir(parents=True)
    (raw / "oxts" / "data").mkdir(parents=True)
    (tmp_path / "satmap" / date / drive).mkdir(parents=True)
    cv2.imwrite(str(raw / "image_02" / "data" / "0000000001.png"), np.full((20, 60, 3), 50, np.uint8))
    cv2.imwrite(str(tmp_path / "satmap" / date / drive / "0000000001.png"), np.full((512, 512, 3), 90, np.uint8))
    (raw / "oxts" / "data" / "0000000001.txt").write_text("49.0 8.4 110 0 0 0.0 " + "0 " * 24)  # yaw 0: east
    (tmp_path / "test1_files.txt").write_text(f"{date}/{drive}/0000000001.png 0.5 -0.25 0.1\n")
    assert read_heading_rad(raw / "oxts" / "data" / "0000000001.txt") == pytest.approx(math.pi / 2)
    ds = KittiDataset(tmp_path, "test1", (32, 128), 256, MEAN, STD)
    rowcol, m_per_px, heading = ds.ground_truth()
    # facing east: lateral +10 m (right of the car = south), longitudinal -5 m (west), plus the camera offset
    expected = camera_pixel(math.pi / 2) + np.array([10.0, -5.0]) / KITTI_M_PER_PX
    np.testing.assert_allclose(rowcol[0], expected * 0.5, atol=1e-6)
    assert m_per_px[0] == pytest.approx(2 * KITTI_M_PER_PX)
    assert ds[0]["rowcol"].tolist() == pytest.approx(rowcol[0].tolist(), abs=1e-4)


def test_metrics_against_hand_computed_errors():
    pred = np.array([[10.0, 10.0], [10.0, 14.0], [13.0, 14.0]])
    gt = np.array([[10.0, 10.0], [10.0, 10.0], [10.0, 10.0]])
    errors = localization_errors(pred, gt, 0.5, heading_rad=np.array([0.0, 0.0, math.pi / 2]))
    np.testing.assert_allclose(errors["distance_m"], [0.0, 2.0, 2.5])
    np.testing.assert_allclose(errors["lateral_m"], [0.0, 2.0, 1.5])  # heading north: east error is lateral
    np.testing.assert_allclose(errors["longitudinal_m"], [0.0, 0.0, 2.0])  # heading east: east error is along
    s = summarize_errors(errors, orientation_error_deg(np.radians([10.0, 350.0, 90.0]), np.radians([0, 0, 0])))
    assert s["mean_m"] == pytest.approx(1.5) and s["median_m"] == pytest.approx(2.0)
    assert s["recall_1m"] == pytest.approx(1 / 3) and s["recall_3m"] == pytest.approx(1.0)
    assert s["orientation_mean_deg"] == pytest.approx((10 + 10 + 90) / 3)
    with pytest.raises(ValueError, match="row, col"):
        localization_errors(pred[:, :1], gt, 1.0)

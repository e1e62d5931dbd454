"""Synthetic datasets in the University-1652 and VIGOR layouts, read back the way the real readers do."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from edge_geoloc.data.poses import read_view_poses
from edge_geoloc.geo import latlon_to_utm
from edge_geoloc.sim import generate_area
from edge_geoloc.sim.datasets import write_university_tree, write_vigor_tree


@pytest.fixture(scope="module")
def area():
    return generate_area("source", seed=11, size_m=400.0, gsd_m=0.5)


def _read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_university_tree_layout_and_content(tmp_path, area):
    root = write_university_tree(tmp_path / "U", area, n_train=3, n_test=2, n_distractors=2, views_per_location=3,
                                 drone_px=64, satellite_px=96, satellite_size_m=80.0, photometric=False)
    train_ids = sorted(p.name for p in (root / "train" / "drone").iterdir())
    test_ids = sorted(p.name for p in (root / "test" / "query_drone").iterdir())
    assert train_ids == ["0001", "0002", "0003"] and test_ids == ["0004", "0005"]
    for loc in train_ids:
        assert sorted(p.name for p in (root / "train" / "drone" / loc).iterdir()) == [
            "image-01.jpeg", "image-02.jpeg", "image-03.jpeg"]
        assert (root / "train" / "satellite" / loc / f"{loc}.jpg").is_file()
    gallery = sorted(p.name for p in (root / "test" / "gallery_satellite").iterdir())
    assert gallery == ["0004", "0005", "0006", "0007"]  # test locations + 2 distractors
    assert sorted(p.name for p in (root / "test" / "query_satellite").iterdir()) == test_ids
    assert sorted(p.name for p in (root / "test" / "gallery_drone").iterdir()) == test_ids
    rows = list(csv.DictReader((root / "locations.csv").open()))
    for row in rows:
        folder = "train/satellite" if row["split"] == "train" else "test/query_satellite"
        sat = _read_rgb(root / folder / row["id"] / f"{row['id']}.jpg").astype(float)
        east, north = area.latlon_to_local(float(row["lat_deg"]), float(row["lon_deg"]))
        expected, _ = area.aerial_patch(east, north, 80.0, 96)
        shifted, _ = area.aerial_patch(east + 20.0, north, 80.0, 96)
        error, error_shifted = np.abs(sat - expected).mean(), np.abs(sat - shifted).mean()
        assert error < 6.0 and error < 0.4 * error_shifted  # JPEG noise only; 20 m off is far worse
    poses = read_view_poses(root)  # the pose side file covers every drone view, at the location it orbits
    drone = {p.relative_to(root).as_posix() for p in root.glob("*/*drone/*/*.jpeg")}
    assert set(poses) == drone
    centre = {r["id"]: area.latlon_to_local(float(r["lat_deg"]), float(r["lon_deg"])) for r in rows}
    for rel, pose in poses.items():
        reach = pose.alt_agl_m / np.tan(pose.pitch_rad)  # where the camera axis meets the ground
        aim = (pose.east_m + reach * np.sin(pose.heading_rad), pose.north_m + reach * np.cos(pose.heading_rad))
        assert np.hypot(*(np.subtract(aim, centre[rel.split("/")[2]]))) < 1.0


def test_vigor_labels_match_geodesy(tmp_path, area):
    sat_px, m_per_px = 128, 0.5
    root = write_vigor_tree(tmp_path / "V", area, cities=["Synth"], panos_per_city=6, pano_px=(128, 64),
                            satellite_px=sat_px, satellite_m_per_px=m_per_px, seed=1)
    sat_names = (root / "splits" / "Synth" / "satellite_list.txt").read_text().split()
    assert all((root / "Synth" / "satellite" / n).is_file() for n in sat_names)
    lines = (root / "splits" / "Synth" / "pano_label_balanced.txt").read_text().splitlines()
    assert len(lines) == 6
    for line in lines:
        data = line.split(" ")
        assert len(data) == 13 and (root / "Synth" / "panorama" / data[0]).is_file()
        _, plat, plon, _ = data[0].split(",")
        pe, pn, _ = latlon_to_utm(float(plat), float(plon), area.zone)
        for k, i in enumerate((1, 4, 7, 10)):
            _, slat, slon = data[i][: -len(".png")].split("_")
            se, sn, _ = latlon_to_utm(float(slat), float(slon), area.zone)
            a, b = float(data[i + 1]), float(data[i + 2])
            row, col = sat_px / 2 + a, sat_px / 2 - b  # the VIGOR convention
            assert row == pytest.approx(sat_px / 2 + (sn - pn) / m_per_px, abs=0.01)
            assert col == pytest.approx(sat_px / 2 + (pe - se) / m_per_px, abs=0.01)
            assert 0 <= row <= sat_px and 0 <= col <= sat_px
            if k == 0:  # the positive tile holds the panorama in its central quarter
                assert abs(a) <= sat_px / 4 and abs(b) <= sat_px / 4
    train = (root / "splits" / "Synth" / "same_area_balanced_train.txt").read_text().splitlines()
    test = (root / "splits" / "Synth" / "same_area_balanced_test.txt").read_text().splitlines()
    assert sorted(train + test) == sorted(lines) and not set(train) & set(test)

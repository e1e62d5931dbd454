"""`edge-geoloc dataset from-logs`: field logs -> pair dataset, checked pixel for pixel and with the pairs reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_geoloc.fieldlog import FieldLogConfig, FieldLogger, encode_jpeg
from edge_geoloc.fieldlog.dataset import build_pairs_from_logs, interpolate_track
from edge_geoloc.fieldlog.dataset_cli import main
from edge_geoloc.geo import GeoRaster, PatchGeoref, write_geotiff
from edge_geoloc.geo.raster import _transformer
from edge_geoloc.interop.camera_info import PinholeIntrinsics
from edge_geoloc.types import GnssFix

EPSG = 32631  # UTM 31N
X0, Y0, GSD = 600000.0, 5762000.0, 0.5  # upper-left corner of a 400 m square ortho


@pytest.fixture
def ortho(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (800, 800, 3), dtype=np.uint8)
    return write_geotiff(tmp_path / "ortho.tif", image, PatchGeoref(EPSG, (GSD, 0, X0, 0, -GSD, Y0), 800, 800))


def latlon(x: float, y: float) -> tuple[float, float]:
    lon, lat = _transformer(EPSG, 4326).transform(x, y)
    return float(lat), float(lon)


def write_log(log_dir, ortho_path, t0=1000.0, with_patch_ref_at=(3,), scale=False):
    """10 frames at 1 Hz flying east across the map; GNSS at 1 Hz, half a second after each frame.

    ``scale``: also the height above ground (40 m + 4 m/s, logged 0.5 s after each frame) and the camera info
    (60 deg field of view, 40 deg from frame 6 on).
    """
    jpegs = []
    with FieldLogger(log_dir, FieldLogConfig(camera_rate_hz=0.0)) as logger:
        for i in range(10):
            t = t0 + i
            if scale:
                logger.log_camera_info(t, PinholeIntrinsics.from_hfov(32, 24, 60.0 if i < 6 else 40.0))
                logger.log_altitude_agl(t + 0.5, 40.0 + 4.0 * (i + 0.5))
            jpegs.append(encode_jpeg(np.full((24, 32, 3), 20 * i, np.uint8)))
            logger.log_jpeg(t, jpegs[-1])
            logger.log_heading(t, 0.1 * i)
            lat, lon = latlon(X0 + 100 + 30 * (i + 0.5), Y0 - 200)
            logger.log_gnss(GnssFix(stamp_s=t + 0.5, lat_deg=lat, lon_deg=lon, alt_m=50.0))
            if i in with_patch_ref_at:
                ref_lat, ref_lon = latlon(X0 + 250, Y0 - 250)
                logger.log_patch_ref(t, ortho_path, ref_lat, ref_lon, 40.0, 64)
        logger.log_jpeg(t0 + 14, jpegs[0])  # no GNSS fix within 1 s: no coarse position
        lat, lon = latlon(X0 + 10, Y0 - 10)  # a frame at the map's corner: mostly outside
        logger.log_jpeg(t0 + 20, jpegs[0])
        logger.log_gnss(GnssFix(stamp_s=t0 + 20, lat_deg=lat, lon_deg=lon, alt_m=50.0))
    return jpegs


def test_from_logs_cli_writes_the_pair_format_exactly(tmp_path, ortho, capsys):
    jpegs = write_log(tmp_path / "log", ortho)
    out = tmp_path / "pairs"
    assert main(["from-logs", str(tmp_path / "log"), "--out", str(out), "--ortho", str(ortho)]) == 0
    assert "no_coarse_position: 1" in capsys.readouterr().out
    meta = json.loads((out / "dataset.json").read_text())
    assert {k: meta[k] for k in ("format", "version", "query_kind", "aerial_size_m", "aerial_px", "count")} == {
        "format": "edge_geoloc.pairs", "version": 1, "query_kind": "drone", "aerial_size_m": 40.0, "aerial_px": 64,
        "count": 10}  # not the frame without GNSS nearby, nor the one off the map
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["stamp_s"] for s in samples] == [1000.0 + i for i in range(10)]
    assert all("gt_row" not in s for s in samples)
    first = samples[1]  # frame 1: halfway between the fixes at 0.5 s and 1.5 s
    expect_lat, expect_lon = latlon(X0 + 100 + 30 * 1.0, Y0 - 200)
    assert first["coarse_lat_deg"] == pytest.approx(expect_lat, abs=1e-7)
    assert first["coarse_lon_deg"] == pytest.approx(expect_lon, abs=1e-7)
    assert first["heading_rad"] == pytest.approx(0.1)
    assert (samples[3]["coarse_lat_deg"], samples[3]["coarse_lon_deg"]) == pytest.approx(latlon(X0 + 250, Y0 - 250))
    assert (out / first["query"]).read_bytes() == jpegs[1]  # copied, not re-encoded
    import cv2

    aerial = cv2.imread(str(out / first["aerial"]))[:, :, ::-1]
    with GeoRaster(ortho) as raster:
        patch = raster.read_around_latlon(first["coarse_lat_deg"], first["coarse_lon_deg"], 40.0, 64)
    np.testing.assert_array_equal(aerial, patch.image)
    georef = PatchGeoref(first["aerial_georef"]["crs_epsg"], tuple(first["aerial_georef"]["affine"]), 64, 64)
    assert georef.latlon_to_pixel(first["coarse_lat_deg"], first["coarse_lon_deg"]) == pytest.approx((32, 32))


def test_output_loads_with_the_pairs_reader_and_geometry_comes_from_the_logs(tmp_path, ortho):
    pairs = pytest.importorskip("edge_geoloc.data.pairs")
    write_log(tmp_path / "log", ortho, with_patch_ref_at=(0, 5))
    report = build_pairs_from_logs(tmp_path / "log", tmp_path / "pairs")  # raster, size, px from patch_ref
    assert (report.samples, report.no_coarse_position, report.outside_map) == (10, 1, 1)
    info, records = pairs.read_pairs(tmp_path / "pairs")
    assert (info.aerial_size_m, info.aerial_px, info.count, len(records)) == (40.0, 64, 10, 10)
    dataset = pairs.PairDataset(tmp_path / "pairs", (32, 32), 64, (0.5,) * 3, (0.25,) * 3)
    item = dataset[0]
    assert tuple(item["query"].shape) == (3, 32, 32) and tuple(item["aerial"].shape) == (3, 64, 64)


def test_clear_errors_for_no_map_and_an_existing_dataset(tmp_path, ortho, capsys):
    write_log(tmp_path / "log", ortho, with_patch_ref_at=())
    assert main(["from-logs", str(tmp_path / "log"), "--out", str(tmp_path / "a")]) == 2
    assert "pass --ortho" in capsys.readouterr().err
    args = ["from-logs", str(tmp_path / "log"), "--out", str(tmp_path / "b"), "--ortho", str(ortho),
            "--aerial-size-m", "40", "--aerial-px", "64"]
    assert main(args) == 0
    assert main(args) == 2 and "already holds a dataset" in capsys.readouterr().err


def test_interpolate_track_uses_neighbours_or_the_nearest_fix_within_the_gap():
    stamps = np.array([0.0, 1.0, 10.0])
    track = np.array([[50.0, 4.0], [50.001, 4.002], [50.01, 4.01]])
    assert interpolate_track(stamps, track, 0.25, 1.0) == pytest.approx((50.00025, 4.0005))
    assert interpolate_track(stamps, track, 1.5, 1.0) == pytest.approx((50.001, 4.002))  # 9 s gap: nearest
    assert interpolate_track(stamps, track, 5.0, 1.0) is None
    assert interpolate_track(stamps[:0], track[:0], 0.0, 1.0) is None


def test_pairs_carry_altitude_interpolated_to_the_frame_and_hfov_from_camera_info(tmp_path, ortho):
    pairs = pytest.importorskip("edge_geoloc.data.pairs")
    write_log(tmp_path / "log", ortho, scale=True)
    report = build_pairs_from_logs(tmp_path / "log", tmp_path / "pairs", ortho=ortho)
    assert (report.samples, report.no_altitude_agl, report.no_hfov) == (10, 0, 0)
    samples = [json.loads(line) for line in (tmp_path / "pairs" / "samples.jsonl").read_text().splitlines()]
    # frame 0 precedes the first height (0.5 s later, within the 1 s gap): that one; then linear between two
    assert [s["altitude_agl_m"] for s in samples] == pytest.approx([42.0] + [40.0 + 4.0 * i for i in range(1, 10)])
    assert [s["hfov_deg"] for s in samples] == pytest.approx([60.0] * 6 + [40.0] * 4)
    _, records = pairs.read_pairs(tmp_path / "pairs")
    assert (records[3].altitude_agl_m, records[3].hfov_deg) == pytest.approx((52.0, 60.0))
    pairs._check_scale_metadata(tmp_path / "pairs", records)  # what scale-aligned adaptation requires


def test_missing_altitude_and_camera_info_stay_null_and_hfov_can_be_given(tmp_path, ortho, capsys):
    pairs = pytest.importorskip("edge_geoloc.data.pairs")
    write_log(tmp_path / "log", ortho)
    report = build_pairs_from_logs(tmp_path / "log", tmp_path / "a", ortho=ortho)
    assert (report.samples, report.no_altitude_agl, report.no_hfov) == (10, 10, 10)
    samples = [json.loads(line) for line in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    assert all(s["altitude_agl_m"] is None and s["hfov_deg"] is None for s in samples)
    _, records = pairs.read_pairs(tmp_path / "a")
    with pytest.raises(pairs.PairDatasetError, match="altitude_agl_m/hfov_deg"):
        pairs._check_scale_metadata(tmp_path / "a", records)
    args = ["from-logs", str(tmp_path / "log"), "--out", str(tmp_path / "b"), "--ortho", str(ortho)]
    assert main([*args, "--hfov-deg", "75"]) == 0
    samples = [json.loads(line) for line in (tmp_path / "b" / "samples.jsonl").read_text().splitlines()]
    assert all(s["hfov_deg"] == 75.0 and s["altitude_agl_m"] is None for s in samples)
    capsys.readouterr()
    assert main([*args[:3], str(tmp_path / "c"), *args[4:], "--hfov-deg", "180"]) == 2
    assert "hfov_deg must be in (0, 180)" in capsys.readouterr().err


def test_altitude_farther_than_the_gap_is_not_used(tmp_path, ortho):
    with FieldLogger(tmp_path / "log", FieldLogConfig(camera_rate_hz=0.0)) as logger:
        lat, lon = latlon(X0 + 200, Y0 - 200)
        for t in (100.0, 105.0):
            logger.log_jpeg(t, encode_jpeg(np.full((24, 32, 3), 50, np.uint8)))
            logger.log_gnss(GnssFix(stamp_s=t, lat_deg=lat, lon_deg=lon, alt_m=50.0))
        logger.log_altitude_agl(102.0, 30.0)  # 2 s from the first frame, 3 s from the second
    report = build_pairs_from_logs(tmp_path / "log", tmp_path / "pairs", ortho=ortho, aerial_size_m=40.0,
                                   aerial_px=64, max_altitude_gap_s=2.0)
    samples = [json.loads(line) for line in (tmp_path / "pairs" / "samples.jsonl").read_text().splitlines()]
    assert [s["altitude_agl_m"] for s in samples] == [30.0, None] and report.no_altitude_agl == 1

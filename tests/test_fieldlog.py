"""Field logger: round trip through rosbag2 MCAP, a writer that never blocks producers, rotation, disk guard."""

from __future__ import annotations

import hashlib
import json
import threading

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from edge_geoloc.fieldlog import FieldLogConfig, FieldLogger, ReadReport, read_log
from edge_geoloc.fieldlog import logger as logger_module
from edge_geoloc.fieldlog import messages as m
from edge_geoloc.fieldlog.storage import BagPart
from edge_geoloc.geo import PatchGeoref
from edge_geoloc.interop.camera_info import PinholeIntrinsics, camera_info_msg_to_intrinsics
from edge_geoloc.interop.navsat import navsatfix_to_gnss
from edge_geoloc.interop.stamps import header_stamp_s
from edge_geoloc.types import CameraFrame, CovarianceType, FixStatus, FusedState, GnssFix

WAIT_S = 10.0


def gnss(i: int, t0: float = 1.7e9) -> GnssFix:
    return GnssFix(stamp_s=t0 + 0.1 * i, lat_deg=52.0 + 1e-5 * i, lon_deg=4.36, alt_m=40.0 + i,
                   position_covariance_m2=(4.0, 0.5, 0.0, 0.5, 3.0, 0.0, 0.0, 0.0, 9.0),
                   covariance_type=CovarianceType.KNOWN, status=FixStatus.SBAS_FIX, fix_quality=2)


def image(i: int) -> np.ndarray:
    yy, xx = np.mgrid[0:48, 0:64]
    return np.stack([(xx * 4 + i) % 256, (yy * 5) % 256, np.full_like(xx, 60 + i)], -1).astype(np.uint8)


def stamps(path, topic=m.GNSS_FIX) -> list[float]:
    """Bag time stamps, rounded to the microsecond (they are stored as integer nanoseconds)."""
    return [round(r.stamp_s, 6) for r in read_log(path, topics=[topic])]


def expected(indices) -> list[float]:
    return [round(gnss(i).stamp_s, 6) for i in indices]


def test_round_trip_of_every_topic_and_the_bag_opens_in_rosbags(tmp_path):
    raster = tmp_path / "area.tif"
    raster.write_bytes(b"not really a tiff, but hashed all the same")
    cfg = FieldLogConfig(camera_rate_hz=2.0, jpeg_quality=95)
    georef = PatchGeoref(32631, (0.5, 0.0, 600000.0, 0.0, -0.5, 5760000.0), 256, 256)
    state = FusedState(stamp_s=1.7e9, lat_deg=52.0, lon_deg=4.36, alt_m=41.0, east_m=12.5, north_m=-3.0,
                       vel_east_mps=1.0, vel_north_mps=0.0,
                       position_covariance_m2=(2.0, 0.1, 0, 0.1, 3.0, 0, 0, 0, 8.0),
                       initialized=True, gnss_used=True, visual_used=False)
    with FieldLogger(tmp_path / "log", cfg) as logger:
        for i in range(20):  # 10 Hz camera, logged at 2 Hz
            logger.log_frame(CameraFrame(stamp_s=1.7e9 + 0.1 * i, image_rgb=image(i)))
            logger.log_gnss(gnss(i))
        logger.log_fused(state)
        logger.log_heading(1.7e9, 1.25)
        logger.log_patch_ref(1.7e9, raster, 52.0, 4.36, 128.0, 256, georef)
        logger.log_altitude_agl(1.7e9 + 0.5, 87.25)
        intrinsics = PinholeIntrinsics.from_hfov(64, 48, 90.0)
        assert logger.log_camera_info(1.7e9, intrinsics)
        assert not logger.log_camera_info(1.7e9 + 1.0, intrinsics)  # unchanged: not logged again
    c = logger.counters
    assert (c.enqueued, c.rate_limited, c.dropped_queue_full, c.written) == (29, 16, 0, 30)
    records = list(read_log(tmp_path / "log"))
    by_topic = {t: [r for r in records if r.topic == t] for t in m.TOPIC_TYPES}
    assert [len(by_topic[t]) for t in m.TOPIC_TYPES] == [4, 20, 1, 1, 1, 1, 1, 1]
    assert [navsatfix_to_gnss(r.msg) for r in by_topic[m.GNSS_FIX]] == [gnss(i) for i in range(20)]
    frame = by_topic[m.CAMERA][1]
    assert frame.msg.format == "jpeg" and header_stamp_s(frame.msg) == pytest.approx(1.7e9 + 0.5)
    decoded = cv2.cvtColor(cv2.imdecode(frame.msg.data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.abs(decoded.astype(int) - image(5)).mean() < 3.0
    pose = by_topic[m.FUSED_POSE][0].msg.pose
    assert (pose.pose.position.x, pose.pose.position.y) == (12.5, -3.0) and pose.covariance[7] == 3.0
    assert pose.pose.position.z == 41.0 and pose.pose.orientation.w == 1.0  # z = alt_m, orientation unknown
    assert (pose.covariance[21], pose.covariance[28], pose.covariance[35]) == (1e6, 1e6, 1e6)
    fused = by_topic[m.FUSED_FIX][0].msg
    assert (fused.header.frame_id, by_topic[m.FUSED_POSE][0].msg.header.frame_id) == ("gnss", "map")
    assert (fused.status.status, fused.status.service, fused.position_covariance_type) == (0, 1, 3)
    assert by_topic[m.HEADING][0].msg.data == 1.25
    ref = json.loads(by_topic[m.PATCH_REF][0].msg.data)
    assert ref["raster_sha256"] == hashlib.sha256(raster.read_bytes()).hexdigest()
    assert ref["georef"]["affine"] == list(georef.affine) and ref["size_m"] == 128.0
    altitude = by_topic[m.ALTITUDE_AGL][0]
    assert (altitude.msg.data, altitude.stamp_s) == (87.25, pytest.approx(1.7e9 + 0.5))
    info = by_topic[m.CAMERA_INFO][0].msg
    assert (info.width, info.height, info.header.frame_id, header_stamp_s(info)) == (64, 48, "camera", 1.7e9)
    assert list(info.k) == pytest.approx([32.0, 0.0, 32.0, 0.0, 32.0, 24.0, 0.0, 0.0, 1.0])
    assert camera_info_msg_to_intrinsics(info).hfov_deg == pytest.approx(90.0)
    with AnyReader(logger.parts) as reader:  # complete bag: metadata.yaml + summary, standard tooling reads it
        assert reader.message_count == 30
        assert {c.topic: c.msgtype for c in reader.connections} == m.TOPIC_TYPES


def test_camera_info_is_logged_on_change_and_again_at_the_start_of_each_part(tmp_path):
    cfg = FieldLogConfig(max_file_bytes=1)  # every write rotates: each record ends its part
    first, second = PinholeIntrinsics.from_hfov(640, 480, 70.0), PinholeIntrinsics.from_hfov(640, 480, 50.0)
    with FieldLogger(tmp_path / "log", cfg) as logger:
        assert logger.log_camera_info(10.0, first)
        logger.log_altitude_agl(10.5, 50.0)
        assert not logger.log_camera_info(11.0, first) and logger.log_camera_info(12.0, second)
        logger.log_altitude_agl(12.5, 60.0)
    parts = [[(r.topic, round(r.stamp_s, 3)) for r in read_log(part)] for part in logger.parts]
    assert parts == [[(m.CAMERA_INFO, 10.0)], [(m.CAMERA_INFO, 10.0), (m.ALTITUDE_AGL, 10.5)],
                     [(m.CAMERA_INFO, 10.0), (m.CAMERA_INFO, 12.0)], [(m.CAMERA_INFO, 12.0), (m.ALTITUDE_AGL, 12.5)]]
    hfovs = [camera_info_msg_to_intrinsics(r.msg).hfov_deg for r in read_log(logger.parts[2])]
    assert hfovs == pytest.approx([70.0, 50.0])


def test_producers_never_wait_on_a_stalled_disk_and_drops_are_counted(tmp_path):
    entered, release = threading.Event(), threading.Event()

    def stalled_disk(_path):  # the writer thread hangs here, as on a stuck SD card
        entered.set()
        release.wait(WAIT_S)
        return 10**12

    cfg = FieldLogConfig(queue_size=8, free_space_check_s=0.0)
    logger = FieldLogger(tmp_path / "log", cfg, free_bytes=stalled_disk)
    logger.log_gnss(gnss(0))
    assert entered.wait(WAIT_S)  # the writer took item 0 and is stuck
    accepted = [logger.log_gnss(gnss(i)) for i in range(1, 101)]  # returns at once: put_nowait only
    assert sum(accepted) == 8 and accepted[:8] == [True] * 8
    assert logger.counters.dropped_queue_full == 92
    release.set()
    logger.close()
    assert stamps(tmp_path / "log") == expected(range(9))


def test_an_idle_logger_still_flushes_its_chunk_after_flush_interval(tmp_path):
    cfg = FieldLogConfig(chunk_bytes=2**20, flush_interval_s=0.05)
    with FieldLogger(tmp_path / "log", cfg) as logger:
        logger.log_gnss(gnss(0))
        assert logger.wait_for(lambda lg: lg.counters.chunks_flushed >= 1, WAIT_S)
        report = ReadReport()  # the bag is still open: no footer yet, but the record is on disk
        assert [round(r.stamp_s, 6) for r in read_log(tmp_path / "log", report=report)] == expected([0])
        assert report.truncated_files


def test_rotation_makes_complete_parts_and_nothing_is_lost_or_duplicated(tmp_path):
    cfg = FieldLogConfig(chunk_bytes=2048, max_file_bytes=12 * 1024)
    with FieldLogger(tmp_path / "log", cfg) as logger:
        for i in range(400):
            logger.log_gnss(gnss(i))
            if i % 50 == 0:
                logger.flush()  # keep the queue from overflowing on a busy CI machine
    assert len(logger.parts) >= 3 and all((p / "metadata.yaml").is_file() for p in logger.parts)
    report = ReadReport()
    assert [round(r.stamp_s, 6) for r in read_log(tmp_path / "log", report=report)] == expected(range(400))
    assert not report.truncated_files and logger.counters.dropped_queue_full == 0


def test_free_space_guard_pauses_and_resumes_in_a_new_part(tmp_path):
    free = {"bytes": 10**9}
    cfg = FieldLogConfig(min_free_bytes=10**6, free_space_check_s=0.0)
    with FieldLogger(tmp_path / "log", cfg, free_bytes=lambda _p: free["bytes"]) as logger:
        for i in range(10):
            logger.log_gnss(gnss(i))
        assert logger.flush(WAIT_S)
        free["bytes"] = 10**5
        for i in range(10, 20):
            logger.log_gnss(gnss(i))
        assert logger.flush(WAIT_S)
        assert (logger.parts[0] / "metadata.yaml").is_file()  # closed cleanly when space ran low
        free["bytes"] = 10**9
        for i in range(20, 30):
            logger.log_gnss(gnss(i))
    assert logger.counters.dropped_low_disk == 10 and len(logger.parts) == 2
    assert stamps(tmp_path / "log") == expected((*range(10), *range(20, 30)))


def test_a_write_error_is_counted_and_logging_continues_in_a_new_part(tmp_path, monkeypatch):
    real_write = BagPart.write
    calls = {"n": 0}

    def failing_write(self, topic, stamp_s, data):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        real_write(self, topic, stamp_s, data)

    monkeypatch.setattr(BagPart, "write", failing_write)
    with FieldLogger(tmp_path / "log", FieldLogConfig(chunk_bytes=512)) as logger:
        for i in range(10):
            logger.log_gnss(gnss(i))
    assert (logger.counters.write_errors, logger.counters.dropped_io_error) == (1, 1)
    assert len(logger.parts) == 2
    assert stamps(tmp_path / "log") == expected(i for i in range(10) if i != 4)


def test_a_record_that_cannot_be_encoded_is_counted_and_the_logger_goes_on(tmp_path, monkeypatch):
    real = logger_module.heading_to_float64_msg

    def fragile_float64_msg(factory, value):
        if value >= 1.0:
            raise TypeError("cannot encode")
        return real(factory, value)

    monkeypatch.setattr(logger_module, "heading_to_float64_msg", fragile_float64_msg)
    with FieldLogger(tmp_path / "log") as logger:
        for i in range(4):
            logger.log_heading(1.7e9 + i, 0.5 * i)  # 1.0 and 1.5 fail to encode
            logger.log_gnss(gnss(i))
    assert logger.counters.encode_errors == 2 and logger.counters.written == 6
    assert [r.msg.data for r in read_log(tmp_path / "log", topics=[m.HEADING])] == [0.0, 0.5]


def test_a_restart_appends_a_new_part_instead_of_overwriting(tmp_path):
    for start in (0, 5):
        with FieldLogger(tmp_path / "log") as logger:
            for i in range(start, start + 5):
                logger.log_gnss(gnss(i))
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["fieldlog_0000", "fieldlog_0001"]
    assert stamps(tmp_path / "log") == expected(range(10))


def test_bad_config_and_missing_logs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="jpeg_quality"):
        FieldLogConfig(jpeg_quality=0)
    with pytest.raises(FileNotFoundError, match="not an .mcap file"):
        list(read_log(tmp_path / "nothing"))

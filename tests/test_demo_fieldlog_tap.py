"""The demo's field-log tap records what a vehicle records: the node's and the demo's logs are the same."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from edge_geoloc.data.images import read_image_rgb
from edge_geoloc.demo.flight import FieldLogTap
from edge_geoloc.fieldlog import FieldLogConfig, FieldLogger, encode_jpeg, read_log
from edge_geoloc.fieldlog.step import MapPatchSpec
from edge_geoloc.fieldlog.switch import FieldLogSwitch
from edge_geoloc.interop import camera_info_msg_to_intrinsics
from edge_geoloc.interop.camera_info import flight_intrinsics
from edge_geoloc.runtime.replay import measured_attitude
from edge_geoloc.types import CameraFrame, FusedState, GnssFix


class NoBar:
    def update(self, n: int) -> None:
        pass


def _flight(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i:06d}.jpg")
        paths[-1].write_bytes(encode_jpeg(np.full((24, 32, 3), 40 * i, np.uint8)))
    sensors = {"stamp_s": np.array([0.0, 2.0]), "heading_rad": np.array([0.1, 0.3]),
               "altitude_agl_m": np.array([50.0, 70.0])}
    camera = {"width_px": 32, "height_px": 24, "hfov_deg": 75.0}
    gnss = [GnssFix(stamp_s=t, lat_deg=52.0 + 1e-5 * t, lon_deg=4.36, alt_m=40.0) for t in (-0.5, 0.5, 0.9)]
    return SimpleNamespace(gnss=gnss, frame_stamps_s=np.array([0.0, 1.0, 2.0]), frame_paths=paths,
                           meta={"camera": camera}, sensors=sensors)


def _frames_and_states(flight):
    """The replay's frames (measured heading and height) and fused states (initialised from the second)."""
    for i, stamp in enumerate(flight.frame_stamps_s):
        frame = CameraFrame(float(stamp), read_image_rgb(flight.frame_paths[i]), f"frame_{i:06d}",
                            *measured_attitude(flight, float(stamp)))
        nan = math.nan if i == 0 else 0.0
        state = FusedState(float(stamp), 52.0 + nan, 4.36 + nan, 40.0, 0.0, 0.0, 0.0, 0.0, (1.0,) * 9, i > 0,
                           True, False)
        yield i, frame, state


def _records(log_dir):
    return [(r.topic, round(r.stamp_s, 6)) for r in read_log(log_dir)]


def test_tap_logs_the_measured_height_at_each_frame_and_the_flight_camera_once(tmp_path):
    flight = _flight(tmp_path)
    with FieldLogger(tmp_path / "log", FieldLogConfig(camera_rate_hz=0.0)) as logger:
        tap = FieldLogTap(flight, logger, None, NoBar())
        for i, frame, state in _frames_and_states(flight):
            tap(i, frame, state)
    records = list(read_log(tmp_path / "log", topics=["/altitude_agl", "/camera/camera_info"]))
    heights = [(r.stamp_s, r.msg.data) for r in records if r.topic == "/altitude_agl"]
    assert heights == [(0.0, 50.0), (1.0, pytest.approx(60.0)), (2.0, 70.0)]
    infos = [camera_info_msg_to_intrinsics(r.msg) for r in records if r.topic == "/camera/camera_info"]
    assert infos == [flight_intrinsics(flight.meta)] and infos[0].hfov_deg == pytest.approx(75.0)


def test_the_demo_logs_exactly_the_records_the_node_logs(tmp_path):
    """Same frames, fixes and states through the node's switch and the demo's tap: the same topics at the same
    stamps (GNSS, camera info, image, fused, heading, height, patch reference)."""
    flight, patch = _flight(tmp_path), MapPatchSpec(tmp_path / "ortho.tif", 64.0, 64)
    with FieldLogger(tmp_path / "demo", FieldLogConfig(camera_rate_hz=0.0)) as logger:
        tap = FieldLogTap(flight, logger, patch, NoBar())
        for i, frame, state in _frames_and_states(flight):
            tap(i, frame, state)
    switch = FieldLogSwitch(tmp_path / "node", 0, hfov_deg=75.0, patch=patch,
                            make_logger=lambda d: FieldLogger(d, FieldLogConfig(camera_rate_hz=0.0)))
    switch.start()
    sent = 0
    for _, frame, state in _frames_and_states(flight):
        while sent < len(flight.gnss) and flight.gnss[sent].stamp_s <= frame.stamp_s:  # the node's GNSS callback
            switch.on_gnss(flight.gnss[sent])
            sent += 1
        switch.on_state(frame, state)
    switch.stop()
    demo, node = _records(tmp_path / "demo"), _records(tmp_path / "node")
    assert demo == node
    assert {topic for topic, _ in demo} >= {"/gnss/fix", "/camera/camera_info", "/geoloc/fix", "/heading",
                                            "/altitude_agl", "/geoloc/patch_ref"}
    refs = [r.msg for r in read_log(tmp_path / "node", topics=["/geoloc/patch_ref"])]
    assert len(refs) == 3  # the first frame's coarse position is the GNSS fix received before it


def test_flight_camera_from_k_or_field_of_view_else_none():
    k = [[400.0, 0.0, 320.0], [0.0, 410.0, 240.0], [0.0, 0.0, 1.0]]
    with_k = flight_intrinsics({"camera": {"width_px": 640, "height_px": 480, "hfov_deg": 10.0, "K": k}})
    assert (with_k.fx_px, with_k.fy_px, with_k.cx_px, with_k.cy_px) == (400.0, 410.0, 320.0, 240.0)
    assert flight_intrinsics({"camera": {"width_px": 640, "height_px": 480, "hfov_deg": 90.0}}).fx_px == (
        pytest.approx(320.0))
    assert flight_intrinsics({}) is None
    assert flight_intrinsics({"camera": {"width_px": 640, "height_px": 480}}) is None

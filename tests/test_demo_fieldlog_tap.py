"""The demo's field-log tap records what scale-aligned adaptation needs: measured height and camera info."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from edge_geoloc.demo.flight import FieldLogTap
from edge_geoloc.fieldlog import FieldLogConfig, FieldLogger, encode_jpeg, read_log
from edge_geoloc.interop import camera_info_msg_to_intrinsics
from edge_geoloc.interop.camera_info import flight_intrinsics
from edge_geoloc.types import FusedState


class NoBar:
    def update(self, n: int) -> None:
        pass


def test_tap_logs_the_measured_height_at_each_frame_and_the_flight_camera_once(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i:06d}.jpg")
        paths[-1].write_bytes(encode_jpeg(np.full((24, 32, 3), 40 * i, np.uint8)))
    sensors = {"stamp_s": np.array([0.0, 2.0]), "heading_rad": np.array([0.1, 0.3]),
               "altitude_agl_m": np.array([50.0, 70.0])}
    camera = {"width_px": 32, "height_px": 24, "hfov_deg": 75.0}
    flight = SimpleNamespace(gnss=[], frame_stamps_s=np.array([0.0, 1.0, 2.0]), frame_paths=paths,
                             meta={"camera": camera}, sensors=sensors)
    state = FusedState(0.0, math.nan, math.nan, math.nan, 0.0, 0.0, 0.0, 0.0, (1.0,) * 9, False, False, False)
    with FieldLogger(tmp_path / "log", FieldLogConfig(camera_rate_hz=0.0)) as logger:
        tap = FieldLogTap(flight, logger, None, NoBar())
        for i in range(3):
            tap(i, state)
    records = list(read_log(tmp_path / "log", topics=["/altitude_agl", "/camera/camera_info"]))
    heights = [(r.stamp_s, r.msg.data) for r in records if r.topic == "/altitude_agl"]
    assert heights == [(0.0, 50.0), (1.0, pytest.approx(60.0)), (2.0, 70.0)]
    infos = [camera_info_msg_to_intrinsics(r.msg) for r in records if r.topic == "/camera/camera_info"]
    assert infos == [flight_intrinsics(flight.meta)] and infos[0].hfov_deg == pytest.approx(75.0)


def test_flight_camera_from_k_or_field_of_view_else_none():
    k = [[400.0, 0.0, 320.0], [0.0, 410.0, 240.0], [0.0, 0.0, 1.0]]
    with_k = flight_intrinsics({"camera": {"width_px": 640, "height_px": 480, "hfov_deg": 10.0, "K": k}})
    assert (with_k.fx_px, with_k.fy_px, with_k.cx_px, with_k.cy_px) == (400.0, 410.0, 320.0, 240.0)
    assert flight_intrinsics({"camera": {"width_px": 640, "height_px": 480, "hfov_deg": 90.0}}).fx_px == (
        pytest.approx(320.0))
    assert flight_intrinsics({}) is None
    assert flight_intrinsics({"camera": {"width_px": 640, "height_px": 480}}) is None

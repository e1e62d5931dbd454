"""The node's start/stop field logging over the real FieldLogger: sessions, what is logged, status."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edge_geoloc.fieldlog import read_log
from edge_geoloc.fieldlog.step import MapPatchSpec, map_patch_of
from edge_geoloc.fieldlog.switch import FieldLogSwitch, open_field_logger
from edge_geoloc.interop.params import NodeSettings
from edge_geoloc.types import CameraFrame, FusedState, GnssFix


def test_logging_only_between_start_and_stop(tmp_path):
    switch = FieldLogSwitch(tmp_path / "logs", min_free_bytes=0)
    fix = GnssFix(stamp_s=10.0, lat_deg=52.0, lon_deg=4.36, alt_m=40.0)
    switch.on_gnss(fix)  # not started: ignored
    assert switch.status()["active"] is False
    assert switch.start() == f"logging to {tmp_path / 'logs'}"
    assert switch.start().startswith("already logging")
    frame = CameraFrame(stamp_s=10.5, image_rgb=np.full((16, 16, 3), 120, np.uint8), heading_rad=1.25)
    state = FusedState(10.5, 52.0, 4.36, 40.0, 0.0, 0.0, 0.0, 0.0, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 4.0), True, True,
                       False)
    switch.on_gnss(fix)
    switch.on_state(frame, state)  # the frame carries the heading measured for it
    assert switch.status()["active"] is True and switch.status()["enqueued"] == 4
    assert "messages written" in switch.stop()
    assert switch.stop() == "field logging was not running"
    topics = sorted(r.topic for r in read_log(tmp_path / "logs"))
    assert topics.count("/gnss/fix") == 1 and "/heading" in topics and "/geoloc/fix" in topics
    assert any("image" in t for t in topics)
    assert switch.status()["free_bytes"] > 0 and switch.status()["sessions"] == 1


def test_disabled_without_log_dir(tmp_path):
    assert open_field_logger(NodeSettings()) is None
    switch = open_field_logger(NodeSettings(log_dir=str(tmp_path / "x"), log_min_free_gb=0.5))
    assert switch.min_free_bytes == 500_000_000 and switch.status()["free_bytes"] > 0  # folder not made yet


def test_frames_log_their_altitude_and_the_camera_info_once(tmp_path):
    from edge_geoloc.interop import camera_info_msg_to_intrinsics

    switch = open_field_logger(NodeSettings(log_dir=str(tmp_path / "logs"), log_min_free_gb=0.0, camera_hfov_deg=60.0))
    assert switch.hfov_deg == 60.0
    switch.start()
    state = FusedState(1.0, 52.0, 4.36, 40.0, 0.0, 0.0, 0.0, 0.0, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 4.0), True, True, False)
    for i, altitude in enumerate((None, 55.0, 56.0)):
        frame = CameraFrame(stamp_s=1.0 + i, image_rgb=np.full((24, 32, 3), 90, np.uint8), altitude_agl_m=altitude)
        switch.on_state(frame, state)
    switch.stop()
    records = list(read_log(tmp_path / "logs", topics=["/altitude_agl", "/camera/camera_info"]))
    assert [(r.stamp_s, r.msg.data) for r in records if r.topic == "/altitude_agl"] == [(2.0, 55.0), (3.0, 56.0)]
    infos = [r.msg for r in records if r.topic == "/camera/camera_info"]
    assert len(infos) == 1 and (infos[0].width, infos[0].height) == (32, 24)
    assert camera_info_msg_to_intrinsics(infos[0]).hfov_deg == pytest.approx(60.0)
    assert FieldLogSwitch(tmp_path / "x", 0).hfov_deg == 0.0  # unknown: no camera info is logged


def test_the_node_names_the_map_patch_its_pipeline_cuts(tmp_path):
    raster = tmp_path / "ortho.tif"
    raster.write_bytes(b"")
    index = SimpleNamespace(manifest={"sources": [{"path": str(raster)}], "tile_size_m": 100.0, "tile_px": 96},
                            root=tmp_path)
    pipeline = SimpleNamespace(index=index, aerial_size_m=64.0, localizer=SimpleNamespace(aerial_px=64))
    assert map_patch_of(pipeline) == MapPatchSpec(raster, 64.0, 64)
    pipeline.aerial_size_m, pipeline.localizer = None, SimpleNamespace()  # the index's tiles, as the pipeline
    assert map_patch_of(pipeline) == MapPatchSpec(raster, 100.0, 96)
    assert map_patch_of(SimpleNamespace()) is None  # a fake pipeline: no patch reference is logged

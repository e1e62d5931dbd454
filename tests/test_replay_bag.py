"""``edge-geoloc replay-bag``: bags written with rosbags (Humble and Jazzy, MCAP and sqlite3) through a
deterministic pipeline double; the output bag's messages are read back and checked."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from edge_geoloc.interop import (
    RosbagsFactory,
    gnss_to_navsatfix,
    msg_to_diagnostics,
    navsatfix_to_gnss,
    pose_msg_to_local,
    rgb_to_compressed_msg,
    rgb_to_image_msg,
)
from edge_geoloc.interop import replay_bag as replay_module
from edge_geoloc.interop.replay_bag import ReplayError, ReplayOptions, replay_bag
from edge_geoloc.interop.stamps import s_to_ns
from edge_geoloc.types import CameraFrame, FusedState, GnssFix, PipelineCounters, StageLatency, VisualFix

T0 = 1_700_000_000.0
N_FRAMES = 6
COV = (4.0, 1.0, 0.0, 1.0, 9.0, 0.0, 0.0, 0.0, 16.0)


def frame_pixels(i: int) -> np.ndarray:
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[:, : 4 + i, 2] = 40 * i, 255 - 30 * i, 200
    return rgb


class FakePipeline:
    """Initialised by the first GNSS fix; a visual fix on every second frame; records what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, np.ndarray, float | None, float | None]] = []
        self.counters = PipelineCounters()
        self.last_gnss: GnssFix | None = None

    def process(self, frame: CameraFrame, gnss: GnssFix | None) -> FusedState:
        self.seen.append((frame.stamp_s, frame.image_rgb, None if gnss is None else gnss.stamp_s, frame.heading_rad))
        self.counters.frames += 1
        self.last_gnss = gnss or self.last_gnss
        vf = None
        if len(self.seen) % 2 == 0:
            vf = VisualFix(frame.stamp_s, 52.0005, 4.3605, 30.0, 50.0, (2.0, 0.0, 0.0, 2.0), 0.9, 1.0, 7, 0.8,
                           frame.heading_rad)
        if self.last_gnss is None:
            nan = math.nan
            return FusedState(frame.stamp_s, nan, nan, nan, nan, nan, nan, nan, (nan,) * 9, False, False, False, vf)
        g = self.last_gnss
        return FusedState(frame.stamp_s, g.lat_deg, g.lon_deg, g.alt_m, 10.0 * len(self.seen), -5.0, 1.0, 0.0,
                          COV, True, gnss is not None, vf is not None, vf, StageLatency(total_ms=12.0))


def write_flight_bag(path: Path, distro: Stores, storage: StoragePlugin, compressed: bool = True,
                     broken_frame: int | None = None) -> Path:
    """Camera at 2 Hz (frames 0..N-1), GNSS at 4 Hz starting after frame 1, heading at 2 Hz."""
    ts = get_typestore(distro)
    factory = RosbagsFactory(ts)
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    with Writer(path, version=8, storage_plugin=storage) as writer:
        cam = writer.add_connection("/camera/image/compressed" if compressed else "/camera/image", image_type,
                                    typestore=ts)
        gps = writer.add_connection("/gnss/fix", "sensor_msgs/msg/NavSatFix", typestore=ts)
        hdg = writer.add_connection("/heading", "std_msgs/msg/Float64", typestore=ts)
        for i in range(N_FRAMES):
            stamp = T0 + 0.5 * i
            if i >= 2:
                for k, dt in enumerate((-0.25, -0.1)):
                    fix = GnssFix(stamp + dt, 52.0 + 1e-5 * i, 4.36 + k * 1e-6, 40.0, COV)
                    msg = gnss_to_navsatfix(factory, fix)
                    writer.write(gps, s_to_ns(stamp + dt), ts.serialize_cdr(msg, msg.__msgtype__))
            heading = ts.types["std_msgs/msg/Float64"](data=0.1 * i)
            writer.write(hdg, s_to_ns(stamp - 0.01), ts.serialize_cdr(heading, heading.__msgtype__))
            build = rgb_to_compressed_msg if compressed else rgb_to_image_msg
            msg = build(factory, frame_pixels(i), stamp, "camera", "png") if compressed else \
                build(factory, frame_pixels(i), stamp, "camera")
            if i == broken_frame:
                msg.data = np.frombuffer(b"garbage", np.uint8)
            writer.write(cam, s_to_ns(stamp), ts.serialize_cdr(msg, msg.__msgtype__))
    return path


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    out: dict[str, list[tuple[int, object]]] = {}
    with AnyReader([path]) as reader:
        for conn, t_ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t_ns, reader.deserialize(raw, conn.msgtype)))
    return out


@pytest.mark.parametrize("distro, storage, compressed", [
    (Stores.ROS2_HUMBLE, StoragePlugin.MCAP, True),
    (Stores.ROS2_JAZZY, StoragePlugin.SQLITE3, False),
], ids=["humble-mcap-compressed", "jazzy-sqlite3-raw"])
def test_replay_writes_outputs_per_frame_with_paired_gnss(tmp_path, distro, storage, compressed):
    bag = write_flight_bag(tmp_path / "in", distro, storage, compressed)
    pipeline = FakePipeline()
    options = ReplayOptions(storage="mcap" if storage == StoragePlugin.MCAP else "sqlite3")
    report = replay_bag(bag, tmp_path / "out", pipeline, options, backend={"backend": "fake"})

    assert [s for s, *_ in pipeline.seen] == [T0 + 0.5 * i for i in range(N_FRAMES)]
    for i, (_, rgb, gnss_stamp, heading) in enumerate(pipeline.seen):
        np.testing.assert_array_equal(rgb, frame_pixels(i))  # PNG and raw are lossless
        assert gnss_stamp == (None if i < 2 else T0 + 0.5 * i - 0.1)  # the newest fix, used once
        assert math.isclose(heading, 0.1 * i)
    assert report.counters["gnss_superseded"] == N_FRAMES - 2

    out = read_bag(tmp_path / "out")
    fixes = [navsatfix_to_gnss(m) for _, m in out["/geoloc/fix"]]
    assert fixes[:2] == [None, None]  # NO_FIX until the first GNSS fix initialised the (fake) filter
    assert [f.stamp_s for f in fixes[2:]] == [T0 + 0.5 * i for i in range(2, N_FRAMES)]
    assert all(f.position_covariance_m2 == COV for f in fixes[2:])
    assert [t for t, _ in out["/geoloc/fix"]] == [s_to_ns(T0 + 0.5 * i) for i in range(N_FRAMES)]
    poses = [pose_msg_to_local(m) for _, m in out["/geoloc/pose"]]
    assert [p.east_m for p in poses] == [30.0, 40.0, 50.0, 60.0] and poses[0].frame_id == "map"
    assert len(out["/geoloc/visual_fix"]) == N_FRAMES // 2
    assert len(out["/gnss/fix"]) == 2 * (N_FRAMES - 2) and len(out["/heading"]) == N_FRAMES  # inputs copied
    _, entries = msg_to_diagnostics(out["/diagnostics"][-1][1])
    values = {e.name: e.values for e in entries}
    assert values["edge_geoloc: fusion"]["frames"] == str(N_FRAMES)
    assert values["edge_geoloc: input"]["frames_processed"] == str(N_FRAMES)
    assert values["edge_geoloc: inference"]["backend"] == "fake"


def test_rate_limit_and_broken_frames_are_counted(tmp_path):
    bag = write_flight_bag(tmp_path / "in", Stores.ROS2_HUMBLE, StoragePlugin.MCAP, broken_frame=3)
    pipeline = FakePipeline()
    report = replay_bag(bag, tmp_path / "out", pipeline, ReplayOptions(max_rate_hz=1.0, copy_inputs=False))
    assert [s for s, *_ in pipeline.seen] == [T0, T0 + 1.0, T0 + 2.0]  # frame 3 (T0+1.5) is undecodable
    assert report.counters["conversion_errors"] == 1 and report.counters["frames_throttled"] == 2
    out = read_bag(tmp_path / "out")
    assert "/camera/image/compressed" not in out and len(out["/geoloc/fix"]) == 3


def test_bad_bags_and_options_get_clear_errors(tmp_path):
    bag = write_flight_bag(tmp_path / "in", Stores.ROS2_HUMBLE, StoragePlugin.MCAP)
    (tmp_path / "exists").mkdir()
    with pytest.raises(ReplayError, match="already exists"):
        replay_bag(bag, tmp_path / "exists", FakePipeline())
    with pytest.raises(ReplayError, match="not found"):
        replay_bag(tmp_path / "nope", tmp_path / "o1", FakePipeline())
    with pytest.raises(ReplayError, match="--image-topic '/gnss/fix'"):
        replay_bag(bag, tmp_path / "o2", FakePipeline(), ReplayOptions(image_topic="/gnss/fix"))
    with pytest.raises(ReplayError, match="heading topic"):
        replay_bag(bag, tmp_path / "o3", FakePipeline(), ReplayOptions(heading_topic="/gnss/fix"))


def test_cli_uses_the_node_parameter_file(tmp_path, monkeypatch, capsys):
    bag = write_flight_bag(tmp_path / "in", Stores.ROS2_HUMBLE, StoragePlugin.MCAP)
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    max_inference_rate_hz: 1.0\n    map_frame: local\n")
    seen = {}

    def fake_build(settings):
        seen["settings"] = settings
        return FakePipeline()

    monkeypatch.setattr("edge_geoloc.interop.build.build_pipeline", fake_build)
    code = replay_module.main([str(bag), "-o", str(tmp_path / "out"), "--params-file", str(params),
                               "--param", "tile_index_path=idx", "--report", str(tmp_path / "r.json")])
    assert code == 0 and seen["settings"].tile_index_path == "idx"
    out = read_bag(tmp_path / "out")
    assert len(out["/geoloc/fix"]) == 3 and pose_msg_to_local(out["/geoloc/pose"][0][1]).frame_id == "local"
    assert '"frames_throttled": 3' in (tmp_path / "r.json").read_text()


def test_cli_without_models_says_what_to_set(tmp_path, capsys):
    bag = write_flight_bag(tmp_path / "in", Stores.ROS2_HUMBLE, StoragePlugin.MCAP)
    assert replay_module.main([str(bag), "-o", str(tmp_path / "out")]) == 2
    assert "tile_index_path is empty" in capsys.readouterr().err


def test_altitude_agl_topic_goes_with_each_frame_after_the_fixed_value(tmp_path):
    ts = get_typestore(Stores.ROS2_HUMBLE)
    factory = RosbagsFactory(ts)
    with Writer(tmp_path / "in", version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        cam = writer.add_connection("/camera/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=ts)
        alt = writer.add_connection("/drone/altitude_agl", "std_msgs/msg/Float64", typestore=ts)
        for i in range(3):
            stamp = T0 + 0.5 * i
            if i > 0:
                height = ts.types["std_msgs/msg/Float64"](data=40.0 + i)
                writer.write(alt, s_to_ns(stamp - 0.01), ts.serialize_cdr(height, height.__msgtype__))
            msg = rgb_to_compressed_msg(factory, frame_pixels(i), stamp, "camera", "png")
            writer.write(cam, s_to_ns(stamp), ts.serialize_cdr(msg, msg.__msgtype__))
    frames = []

    class Recording(FakePipeline):
        def process(self, frame, gnss):
            frames.append(frame)
            return super().process(frame, gnss)

    report = replay_bag(tmp_path / "in", tmp_path / "out", Recording(), ReplayOptions(altitude_agl_m=25.0))
    assert report.altitude_agl_topic == "/drone/altitude_agl"  # found by its name
    assert [f.altitude_agl_m for f in frames] == [25.0, 41.0, 42.0]
    with pytest.raises(ReplayError, match="altitude topic '/camera/image/compressed'"):
        replay_bag(tmp_path / "in", tmp_path / "o2", FakePipeline(),
                   ReplayOptions(altitude_agl_topic="/camera/image/compressed"))

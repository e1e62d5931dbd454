"""The node's wiring, run here without ROS against a minimal stand-in of the rclpy API it uses.

The stand-in only records what the node declares, subscribes, publishes and serves (messages are the real
ROS 2 definitions from the rosbags Humble typestore). It catches errors in node.py that would otherwise show
only on a robot: settings, callbacks -> worker -> publishers, diagnostics, services, parameter refusal.
The real rclpy run is tests/test_ros_node.py (skipped where ROS 2 is not installed).
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore
from test_replay_bag import FakePipeline, frame_pixels

from edge_geoloc.fieldlog.switch import FieldLogSwitch
from edge_geoloc.interop import RosbagsFactory, gnss_to_navsatfix, msg_to_diagnostics, rgb_to_compressed_msg
from edge_geoloc.types import GnssFix

PKG = Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "edge_geoloc_ros"
WAIT_S = 10.0


class Param:
    def __init__(self, name, value=None):
        self.name, self.value = name, value


class Result:
    def __init__(self, successful=True, reason=""):
        self.successful, self.reason = successful, reason


class Plain:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class Publisher:
    def __init__(self):
        self.sent, self.event = [], threading.Event()

    def publish(self, msg):
        self.sent.append(msg)
        self.event.set()


class ParameterException(Exception):  # noqa: N818  (rclpy's name)
    """rclpy.exceptions.ParameterException: the message, then ': ' and the parameter name(s)."""

    def __init__(self, error_msg, parameters):
        super().__init__(f"{error_msg}: {parameters}")


class InvalidParameterValueException(ParameterException):
    """As rclpy raises it from declare_parameter when a callback refuses the value."""

    def __init__(self, parameter, value, reason):
        super().__init__(f"Invalid parameter value ({value}) for parameter. Reason: {reason}", parameter)


class RecordingLogger:
    """An rclpy logger that keeps (method, message) pairs."""

    def __init__(self):
        self.lines, self.logged = [], threading.Event()

    def __getattr__(self, method):
        if method not in ("debug", "info", "warning", "error", "fatal"):
            raise AttributeError(method)
        return lambda msg, **kw: (self.lines.append((method, msg)), self.logged.set())


class StandInNode:
    """The subset of rclpy.node.Node that node.py calls."""

    yaml_overrides: dict = {}  # what a --params-file would set (main() builds the node without arguments)

    def __init__(self, name, parameter_overrides=(), **_):
        self.name, self.params, self.on_set = name, {}, []
        self.overrides = {**self.yaml_overrides, **{p.name: p.value for p in parameter_overrides}}
        self.subs, self.pubs, self.services, self.timers = {}, {}, {}, []
        self.logger = RecordingLogger()

    def add_on_set_parameters_callback(self, callback):
        self.on_set.append(callback)

    def declare_parameter(self, name, value, descriptor):
        value = self.overrides.get(name, value)
        for callback in self.on_set:
            result = callback([Param(name, value)])
            if not result.successful:
                raise InvalidParameterValueException(name, value, result.reason)
        self.params[name] = value

    def get_parameter(self, name):
        return Param(name, self.params[name])

    def create_publisher(self, cls, topic, qos):
        return self.pubs.setdefault(topic, Publisher())

    def create_subscription(self, cls, topic, callback, qos):
        self.subs[topic] = callback

    def create_service(self, cls, name, callback):
        self.services[name] = callback

    def create_timer(self, period_s, callback):
        self.timers.append((period_s, callback))

    def get_clock(self):
        return Plain(now=lambda: Plain(nanoseconds=1_700_000_100 * 10**9))

    def get_logger(self):
        return self.logger

    def destroy_node(self):
        pass


def checked(cls):
    """A stand-in that accepts a subset of the real message's fields (rclpy has defaults, rosbags has none)."""
    names = set(cls.__dataclass_fields__)

    def build(**kw):
        unknown = set(kw) - names
        assert not unknown, f"{cls.__msgtype__} has no field(s) {unknown}"
        return Plain(**kw)

    return build


def _module(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


@pytest.fixture
def node_module(monkeypatch):
    ts = get_typestore(Stores.ROS2_HUMBLE)
    msgs = {}
    for msgtype, cls in ts.types.items():
        package, _, name = msgtype.split("/")
        msgs.setdefault(package, {})[name] = cls
    fake = {
        "rclpy": _module("rclpy", init=lambda args=None: None, ok=lambda: True, shutdown=lambda: None),
        "rclpy.node": _module("rclpy.node", Node=StandInNode),
        "rclpy.executors": _module("rclpy.executors", MultiThreadedExecutor=object),
        "rclpy.exceptions": _module("rclpy.exceptions", ParameterException=ParameterException,
                                    InvalidParameterValueException=InvalidParameterValueException),
        "rclpy.logging": _module("rclpy.logging", get_logger=lambda name: Plain(fatal=print)),
        "rclpy.qos": _module("rclpy.qos", HistoryPolicy=Plain(KEEP_LAST=1), ReliabilityPolicy=Plain(
            RELIABLE=1, BEST_EFFORT=2), DurabilityPolicy=Plain(TRANSIENT_LOCAL=1, VOLATILE=2), QoSProfile=Plain,
            qos_profile_sensor_data=Plain(depth=5)),
        "rcl_interfaces": _module("rcl_interfaces"),
        "rcl_interfaces.msg": _module("rcl_interfaces.msg", FloatingPointRange=checked(
                                          msgs["rcl_interfaces"]["FloatingPointRange"]),
                                      ParameterDescriptor=checked(msgs["rcl_interfaces"]["ParameterDescriptor"]),
                                      SetParametersResult=Result, ParameterType=Plain(
                                          PARAMETER_BOOL=1, PARAMETER_INTEGER=2, PARAMETER_DOUBLE=3,
                                          PARAMETER_STRING=4, PARAMETER_STRING_ARRAY=9)),
        "std_srvs": _module("std_srvs"),
        "std_srvs.srv": _module("std_srvs.srv", Trigger=Plain),
    }
    for package, classes in msgs.items():
        if package == "rcl_interfaces":
            continue
        fake[package] = _module(package)
        fake[f"{package}.msg"] = _module(f"{package}.msg", **classes)
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(PKG))
    for name in ("edge_geoloc_ros.node", "edge_geoloc_ros.parameters", "edge_geoloc_ros"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("edge_geoloc_ros.node"), ts


def test_callbacks_feed_the_pipeline_and_results_are_published(node_module, tmp_path):
    module, ts = node_module
    factory = RosbagsFactory(ts)
    pipeline = FakePipeline()
    node = module.GeolocNode(pipeline=pipeline, field_logger=FieldLogSwitch(tmp_path / "logs", 0),
                             parameter_overrides=[Param("image_transport", "compressed"),
                                                  Param("max_image_age_s", 0.0), Param("max_inference_rate_hz", 0.0),
                                                  Param("runtime_overrides", ["fusion.uere_m=3.0"])])
    try:
        assert node.settings.runtime_overrides == ("fusion.uere_m=3.0",)
        assert node.settings.runtime_config_overrides() == ["fusion.uere_m=3.0"]
        assert set(node.subs) == {"image/compressed", "gnss/fix"}
        assert set(node.services) == {"geoloc/start_logging", "geoloc/stop_logging"}
        response = node.services["geoloc/start_logging"](Plain(), Plain(success=None, message=""))
        assert response.success and "logging to" in response.message
        node.subs["gnss/fix"](gnss_to_navsatfix(factory, GnssFix(1.0, 52.0, 4.36, 40.0)))
        fix_pub = node.pubs["geoloc/fix"]
        node.subs["image/compressed"](rgb_to_compressed_msg(factory, frame_pixels(0), 1.5, "cam", "png"))
        assert fix_pub.event.wait(WAIT_S)
        assert pipeline.seen[0][2] == 1.0 and np.array_equal(pipeline.seen[0][1], frame_pixels(0))
        sent = fix_pub.sent[0]
        assert sent.status.status == 0 and sent.header.frame_id == "base_link" and sent.latitude == 52.0
        assert node.pubs["geoloc/pose"].event.wait(WAIT_S)  # published right after the fix, same thread
        assert node.pubs["geoloc/pose"].sent[0].header.frame_id == "map"
        node.timers[0][1]()  # the diagnostics timer
        entries = {e.name: e for e in msg_to_diagnostics(node.pubs["/diagnostics"].sent[-1])[1]}
        assert entries["edge_geoloc: input"].values["frames_processed"] == "1"
        assert entries["edge_geoloc: field logger"].values["active"] == "True"
        assert node.timers[0][0] == 1.0  # 1 / diagnostics_rate_hz
    finally:
        node.destroy_node()
    assert node.field_logger.active is False


def test_parameter_callback_judges_only_the_schema_parameters(node_module):
    module, _ = node_module
    on_set = importlib.import_module("edge_geoloc_ros.parameters")._on_set
    assert on_set([Param("use_sim_time", True)]).successful  # ROS's own parameter
    refused = on_set([Param("max_inference_rate_hz", 500.0)])
    assert not refused.successful and "[0.0, 100.0] Hz" in refused.reason
    assert on_set([Param("runtime_overrides", ["fusion.uere_m=3.0"])]).successful


def test_bad_parameter_and_missing_models_stop_the_node_with_the_reason(node_module):
    module, _ = node_module
    with pytest.raises(InvalidParameterValueException, match="backend must be one of"):
        module.GeolocNode(pipeline=FakePipeline(), parameter_overrides=[Param("backend", "tensorflow")])
    with pytest.raises(ValueError, match="tile_index_path is empty"):
        module.GeolocNode()


def test_main_exits_with_the_reason_instead_of_a_traceback(node_module, capsys):
    module, _ = node_module
    with pytest.raises(SystemExit) as stopped:
        module.main([])
    assert stopped.value.code == 1 and "tile_index_path is empty" in capsys.readouterr().out


def test_a_value_rclpy_refuses_at_declaration_exits_with_one_line(node_module, capsys, monkeypatch):
    """rclpy raises InvalidParameterValueException (not our ParameterError) for a refused YAML value."""
    module, _ = node_module
    monkeypatch.setattr(StandInNode, "yaml_overrides", {"max_inference_rate_hz": 500.0})
    with pytest.raises(SystemExit) as stopped:
        module.main([])
    out = capsys.readouterr().out.strip()
    assert stopped.value.code == 1 and len(out.splitlines()) == 1
    assert "[0.0, 100.0] Hz" in out and "max_inference_rate_hz" in out and "Traceback" not in out


def test_library_logging_reaches_the_node_logger_until_the_node_is_destroyed(node_module):
    import logging

    module, _ = node_module
    node = module.GeolocNode(pipeline=FakePipeline())
    library_logger = logging.getLogger("edge_geoloc.runtime.replay")
    try:
        library_logger.warning("frame %d skipped", 7)
        library_logger.debug("below the forwarded level")
        logging.getLogger("someone_else").warning("not ours")
        assert node.logger.lines == [("warning", "[edge_geoloc.runtime.replay] frame 7 skipped")]
    finally:
        node.destroy_node()
    library_logger.error("after destroy")
    assert len(node.logger.lines) == 1


class OriginPipeline(FakePipeline):
    """A pipeline whose fusion filter has an ENU origin (set lazily, like the real one)."""

    def __init__(self) -> None:
        super().__init__()
        self.fusion = Plain(origin=None)


def test_map_origin_is_published_once_known_and_again_when_it_changes(node_module):
    from edge_geoloc.geo import EnuFrame

    module, ts = node_module
    factory = RosbagsFactory(ts)
    pipeline = OriginPipeline()
    node = module.GeolocNode(pipeline=pipeline, parameter_overrides=[
        Param("image_transport", "compressed"), Param("max_image_age_s", 0.0), Param("max_inference_rate_hz", 0.0)])
    fix_pub, origin_pub = node.pubs["geoloc/fix"], node.pubs["geoloc/map_origin"]

    def one_frame(stamp_s):
        fix_pub.event.clear()
        node.subs["image/compressed"](rgb_to_compressed_msg(factory, frame_pixels(0), stamp_s, "cam", "png"))
        assert fix_pub.event.wait(WAIT_S)

    try:
        one_frame(1.0)
        assert origin_pub.sent == []  # no origin yet: nothing to publish
        pipeline.fusion.origin = EnuFrame(52.01, 4.36, 0.0)
        one_frame(2.0)
        one_frame(3.0)
        pipeline.fusion.origin = EnuFrame(52.02, 4.37, 5.0)
        one_frame(4.0)
    finally:
        node.destroy_node()
    sent = [(m.latitude, m.longitude, m.altitude, m.header.frame_id, m.header.stamp.sec) for m in origin_pub.sent]
    assert sent == [(52.01, 4.36, 0.0, "map", 2), (52.02, 4.37, 5.0, "map", 4)]


class FramePipeline(FakePipeline):
    """Also keeps each frame, to check what the runner attached to it."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = []

    def process(self, frame, gnss):
        self.frames.append(frame)
        return super().process(frame, gnss)


def test_heading_and_altitude_topics_go_with_each_frame_and_into_the_field_log(node_module, tmp_path):
    module, ts = node_module
    factory = RosbagsFactory(ts)
    pipeline = FramePipeline()
    switch = FieldLogSwitch(tmp_path / "logs", 0, hfov_deg=90.0)
    node = module.GeolocNode(pipeline=pipeline, field_logger=switch, parameter_overrides=[
        Param("image_transport", "compressed"), Param("max_image_age_s", 0.0), Param("max_inference_rate_hz", 0.0),
        Param("heading_source", "float64"), Param("altitude_source", "float64"),
        Param("camera_altitude_agl_m", 30.0), Param("camera_hfov_deg", 90.0), Param("log_on_start", True)])
    float64 = ts.types["std_msgs/msg/Float64"]
    try:
        assert set(node.subs) == {"image/compressed", "gnss/fix", "heading", "altitude_agl"}
        assert node.settings.runtime_config_overrides() == ["camera.hfov_deg=90.0"]
        fix_pub = node.pubs["geoloc/fix"]
        node.subs["image/compressed"](rgb_to_compressed_msg(factory, frame_pixels(0), 1.0, "cam", "png"))
        assert fix_pub.event.wait(WAIT_S)  # nothing measured yet: the fixed height, no heading
        fix_pub.event.clear()
        node.subs["heading"](float64(data=1.25))
        node.subs["altitude_agl"](float64(data=-5.0))  # refused and counted
        node.subs["altitude_agl"](float64(data=62.5))
        node.subs["image/compressed"](rgb_to_compressed_msg(factory, frame_pixels(1), 2.0, "cam", "png"))
        assert fix_pub.event.wait(WAIT_S)
        assert [(f.heading_rad, f.altitude_agl_m) for f in pipeline.frames] == [(None, 30.0), (1.25, 62.5)]
        assert node.worker.counters.snapshot()["conversion_errors"] == 1
    finally:
        node.destroy_node()
    from edge_geoloc.fieldlog import read_log
    from edge_geoloc.interop import camera_info_msg_to_intrinsics

    records = list(read_log(tmp_path / "logs", topics=["/altitude_agl", "/camera/camera_info", "/heading"]))
    assert [(r.topic, r.stamp_s, getattr(r.msg, "data", None)) for r in records if r.topic == "/altitude_agl"] == [
        ("/altitude_agl", 1.0, 30.0), ("/altitude_agl", 2.0, 62.5)]
    assert [(r.stamp_s, r.msg.data) for r in records if r.topic == "/heading"] == [(2.0, 1.25)]  # per frame
    infos = [r.msg for r in records if r.topic == "/camera/camera_info"]
    assert len(infos) == 1 and camera_info_msg_to_intrinsics(infos[0]).hfov_deg == pytest.approx(90.0)


def test_a_corrupt_image_is_counted_and_the_next_frame_still_processed(node_module):
    module, ts = node_module
    factory = RosbagsFactory(ts)
    pipeline = FakePipeline()
    node = module.GeolocNode(pipeline=pipeline, parameter_overrides=[
        Param("image_transport", "compressed"), Param("max_image_age_s", 0.0), Param("max_inference_rate_hz", 0.0)])
    fix_pub = node.pubs["geoloc/fix"]
    try:
        corrupt = rgb_to_compressed_msg(factory, frame_pixels(0), 1.0, "cam", "jpeg")
        corrupt.data = np.frombuffer(b"\xff\xd8\xff\xe0 not a jpeg", np.uint8)
        node.subs["image/compressed"](corrupt)
        assert node.logger.logged.wait(WAIT_S)  # the library's warning, forwarded to the node's logger
        assert "dropping a camera message at 1.000 s" in node.logger.lines[0][1]
        node.subs["image/compressed"](rgb_to_compressed_msg(factory, frame_pixels(1), 2.0, "cam", "png"))
        assert fix_pub.event.wait(WAIT_S)
    finally:
        node.destroy_node()
    assert [seen[0] for seen in pipeline.seen] == [2.0]
    assert node.worker.counters.snapshot()["conversion_errors"] == 1

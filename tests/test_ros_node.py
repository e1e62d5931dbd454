"""The rclpy node itself: started in-process, fed a rosbags-written bag, checked on geoloc/fix.

Runs only where ROS 2 (rclpy) is installed and sourced; reported as skipped elsewhere (as in this project's
CI). The pipeline is the deterministic double of the replay tests, so no model is needed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Humble/Jazzy) is not installed; source ROS 2 to run")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.rosbag2 import StoragePlugin  # noqa: E402
from rosbags.typesys import Stores  # noqa: E402
from sensor_msgs.msg import CompressedImage, NavSatFix  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from test_replay_bag import N_FRAMES, T0, FakePipeline, write_flight_bag  # noqa: E402

from edge_geoloc.fieldlog.switch import FieldLogSwitch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "edge_geoloc_ros"))
from edge_geoloc_ros.node import GeolocNode  # noqa: E402

TYPES = {"/camera/image/compressed": ("image/compressed", CompressedImage), "/gnss/fix": ("gnss/fix", NavSatFix),
         "/heading": ("heading", Float64)}
DEADLINE_S = 30.0


@pytest.fixture
def context():
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def spin_until(executor, condition) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while not condition() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return condition()


def test_node_publishes_geoloc_fix_for_a_played_bag(tmp_path, context):
    bag = write_flight_bag(tmp_path / "in", Stores.ROS2_HUMBLE, StoragePlugin.MCAP)
    overrides = [Parameter("image_transport", value="compressed"), Parameter("max_inference_rate_hz", value=0.0),
                 Parameter("max_image_age_s", value=0.0), Parameter("heading_source", value="float64")]
    pipeline = FakePipeline()
    node = GeolocNode(pipeline=pipeline, field_logger=FieldLogSwitch(tmp_path / "logs", 0), context=context,
                      parameter_overrides=overrides)
    player = rclpy.create_node("player", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(player)
    fixes: list[NavSatFix] = []
    player.create_subscription(NavSatFix, "geoloc/fix", fixes.append, 10)
    pubs = {topic: player.create_publisher(cls, name, 10) for topic, (name, cls) in TYPES.items()}
    client = player.create_client(Trigger, "geoloc/start_logging")
    try:
        assert spin_until(executor, lambda: all(p.get_subscription_count() for p in pubs.values()))
        future = client.call_async(Trigger.Request())
        assert spin_until(executor, future.done) and future.result().success
        with AnyReader([bag]) as reader:
            for conn, _, raw in reader.messages():
                msg = deserialize_message(raw, TYPES[conn.topic][1])
                pubs[conn.topic].publish(msg)
                # wait until the node has it, so the pairing does not depend on DDS delivery order
                if conn.topic == "/camera/image/compressed":
                    n = len(fixes) + 1
                    assert spin_until(executor, lambda n=n: len(fixes) >= n)
                elif conn.topic == "/gnss/fix":
                    n = node.worker.counters.snapshot()["gnss_received"] + 1
                    assert spin_until(executor, lambda n=n: node.worker.counters.snapshot()["gnss_received"] >= n)
                else:
                    assert spin_until(executor, lambda v=msg.data: node.worker.runner.heading_rad == pytest.approx(v))
        assert len(fixes) == N_FRAMES
        assert [f.status.status for f in fixes[:2]] == [-1, -1] and fixes[-1].status.status == 0
        assert fixes[-1].position_covariance_type == 3 and fixes[-1].header.frame_id == "base_link"
        assert [g for _, _, g, _ in pipeline.seen] == [None, None] + [T0 + 0.5 * i - 0.1 for i in range(2, N_FRAMES)]
        assert [h for *_, h in pipeline.seen] == pytest.approx([0.1 * i for i in range(N_FRAMES)])
        assert node.field_logger.status()["active"]
    finally:
        node.destroy_node()
        player.destroy_node()


def test_invalid_parameter_is_refused_with_the_schema_reason(context):
    with pytest.raises(Exception, match="one of"):
        GeolocNode(pipeline=FakePipeline(), context=context, parameter_overrides=[Parameter("backend", value="tf")])

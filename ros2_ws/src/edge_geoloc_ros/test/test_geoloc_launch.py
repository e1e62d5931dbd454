"""
launch_testing: launch the node, play a bag with `ros2 bag play`, wait for geoloc/fix.

Needs a ROS 2 install (rclpy, launch_testing, ros2bag with the MCAP plugin) and a real model set:
    EDGE_GEOLOC_TEST_PARAMS  parameter YAML with tile_index_path, the model/engine paths and
                             image_transport: compressed
    EDGE_GEOLOC_TEST_BAG     a rosbag2 with /camera/image/compressed and /gnss/fix
                             (e.g. a field log)
Run with `colcon test --packages-select edge_geoloc_ros` or
`launch_test test/test_geoloc_launch.py`; skipped (with the reason) where any is missing.
"""

import os
import time
import unittest

import pytest

pytest.importorskip("launch_testing", reason="launch_testing (ROS 2) is not installed")
rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
PARAMS = os.environ.get("EDGE_GEOLOC_TEST_PARAMS")
BAG = os.environ.get("EDGE_GEOLOC_TEST_BAG")
if not (PARAMS and BAG):
    pytest.skip(
        "set EDGE_GEOLOC_TEST_PARAMS and EDGE_GEOLOC_TEST_BAG (models, index and a bag)",
        allow_module_level=True,
    )

from launch import LaunchDescription  # noqa: E402
from launch.actions import ExecuteProcess, IncludeLaunchDescription, TimerAction  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch.substitutions import PathJoinSubstitution  # noqa: E402
from launch_ros.substitutions import FindPackageShare  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from sensor_msgs.msg import NavSatFix  # noqa: E402

WAIT_S = 120.0


@pytest.mark.launch_test
def generate_test_description():
    geoloc = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution(
                [FindPackageShare("edge_geoloc_ros"), "launch", "geoloc.launch.py"]
            )
        ),
        launch_arguments={
            "params_file": PARAMS,
            "compressed_image_topic": "/camera/image/compressed",
            "use_sim_time": "true",
        }.items(),
    )
    play = ExecuteProcess(cmd=["ros2", "bag", "play", "--clock", BAG], output="screen")
    return LaunchDescription(
        [geoloc, TimerAction(period=5.0, actions=[play]), launch_testing.actions.ReadyToTest()]
    ), {"play": play}


class TestGeolocFix(unittest.TestCase):
    def test_fix_is_published(self):
        rclpy.init()
        node = rclpy.create_node("geoloc_fix_listener")
        fixes = []
        node.create_subscription(NavSatFix, "geoloc/fix", fixes.append, 10)
        deadline = time.monotonic() + WAIT_S
        try:
            while not any(f.status.status >= 0 for f in fixes) and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.1)
        finally:
            node.destroy_node()
            rclpy.shutdown()
        self.assertTrue(
            any(f.status.status >= 0 for f in fixes), f"{len(fixes)} geoloc/fix, none with a fix"
        )


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])

"""ROS 2 interoperability without ROS: message <-> dataclass conversions and the frame/GNSS runner shared by
the node and ``edge-geoloc replay-bag``; the node's parameter schema is :mod:`edge_geoloc.interop.params`.

Conversions read any object with the ROS message fields (rclpy messages, rosbags messages, test doubles)
and build messages through a :class:`~edge_geoloc.interop.factory.MessageFactory`. Nothing here imports rclpy.
"""

from edge_geoloc.interop.camera_info import (
    PinholeIntrinsics,
    altitude_agl_to_float64_msg,
    camera_info_msg_to_intrinsics,
    float64_msg_to_altitude_agl_m,
    intrinsics_to_camera_info_msg,
)
from edge_geoloc.interop.diagnostics import (
    DiagnosticEntry,
    DiagnosticLevel,
    DiagnosticThresholds,
    build_diagnostics,
    diagnostics_to_msg,
    msg_to_diagnostics,
)
from edge_geoloc.interop.factory import ConversionError, MessageFactory, PythonMessageFactory, RosbagsFactory
from edge_geoloc.interop.images import (
    any_image_msg_to_rgb,
    compressed_msg_to_rgb,
    encoded_to_compressed_msg,
    image_msg_to_frame,
    image_msg_to_rgb,
    rgb_to_compressed_msg,
    rgb_to_image_msg,
)
from edge_geoloc.interop.navsat import (
    GnssVelocity,
    fused_to_navsatfix,
    gnss_to_navsatfix,
    gnss_to_twist_msg,
    navsatfix_to_gnss,
    twist_msg_to_gnss_velocity,
    visual_fix_to_navsatfix,
)
from edge_geoloc.interop.pose import (
    LocalPose,
    float64_msg_to_heading_rad,
    fused_to_pose,
    heading_to_float64_msg,
    imu_msg_to_heading_rad,
    pose_msg_to_local,
)
from edge_geoloc.interop.runner import AsyncRunner, Counters, GeolocRunner, LatestSlot
from edge_geoloc.interop.stamps import make_header, s_to_sec_nanosec, stamp_to_s

__all__ = [
    "AsyncRunner", "ConversionError", "Counters", "DiagnosticEntry", "DiagnosticLevel", "DiagnosticThresholds",
    "GeolocRunner", "GnssVelocity", "LatestSlot", "LocalPose", "MessageFactory", "PinholeIntrinsics",
    "PythonMessageFactory", "RosbagsFactory", "altitude_agl_to_float64_msg", "any_image_msg_to_rgb",
    "build_diagnostics",
    "camera_info_msg_to_intrinsics", "compressed_msg_to_rgb", "diagnostics_to_msg", "encoded_to_compressed_msg",
    "float64_msg_to_altitude_agl_m", "float64_msg_to_heading_rad", "fused_to_navsatfix", "fused_to_pose",
    "gnss_to_navsatfix", "gnss_to_twist_msg", "heading_to_float64_msg", "image_msg_to_frame", "image_msg_to_rgb",
    "imu_msg_to_heading_rad", "intrinsics_to_camera_info_msg", "make_header", "msg_to_diagnostics",
    "navsatfix_to_gnss", "pose_msg_to_local", "rgb_to_compressed_msg", "rgb_to_image_msg", "s_to_sec_nanosec",
    "stamp_to_s", "twist_msg_to_gnss_velocity", "visual_fix_to_navsatfix",
]

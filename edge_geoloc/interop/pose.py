"""Fused state -> ``geometry_msgs/PoseWithCovarianceStamped`` in the local map frame, and back.

REP-105 / REP-103: the ``map`` frame is ENU (x east, y north, z up) at the pipeline's local origin, so
``x = east_m`` and ``y = north_m``. The pose is horizontal: z = 0 (altitude is in ``geoloc/fix``), with the
up variance of the fused covariance. ``pose.covariance`` is row-major 6x6 over (x, y, z, rotX, rotY, rotZ);
its top-left 3x3 block is the ENU position covariance. Orientation is a yaw about z from the heading
(clockwise from north) when one is known; otherwise identity with :data:`UNKNOWN_ROTATION_VARIANCE_RAD2`
on the rotation diagonal so consumers (robot_localization) ignore it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_geoloc.geo import enu_yaw_to_heading, heading_to_enu_yaw
from edge_geoloc.interop.factory import ConversionError, MessageFactory
from edge_geoloc.interop.stamps import header_stamp_s, make_header
from edge_geoloc.types import FusedState

UNKNOWN_ROTATION_VARIANCE_RAD2 = 1.0e6
ROLL_PITCH_VARIANCE_RAD2 = UNKNOWN_ROTATION_VARIANCE_RAD2  # the pipeline measures no roll/pitch


@dataclass(frozen=True)
class LocalPose:
    """A pose in the local ENU map frame, as read back from a PoseWithCovarianceStamped."""

    stamp_s: float
    frame_id: str
    east_m: float
    north_m: float
    up_m: float
    heading_rad: float  # clockwise from north, from the quaternion's yaw
    covariance_6x6: np.ndarray  # (6, 6) over (x, y, z, rotX, rotY, rotZ)


def yaw_to_quaternion_xyzw(yaw_rad: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a rotation by ``yaw_rad`` about z."""
    return 0.0, 0.0, math.sin(yaw_rad / 2.0), math.cos(yaw_rad / 2.0)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about z, counter-clockwise from x) of any unit quaternion, ZYX convention."""
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(norm) or norm < 1e-9:
        raise ConversionError(f"orientation quaternion ({x}, {y}, {z}, {w}) is not a rotation")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def pose_covariance(position_covariance_m2: tuple[float, ...], heading_sigma_rad: float | None) -> np.ndarray:
    """(6, 6) pose covariance: ENU position block, roll/pitch unknown, yaw from the heading sigma if known."""
    cov = np.zeros((6, 6))
    cov[:3, :3] = np.asarray(position_covariance_m2, dtype=np.float64).reshape(3, 3)
    cov[3, 3] = cov[4, 4] = ROLL_PITCH_VARIANCE_RAD2
    cov[5, 5] = UNKNOWN_ROTATION_VARIANCE_RAD2 if heading_sigma_rad is None else heading_sigma_rad**2
    return cov


def fused_to_pose(factory: MessageFactory, state: FusedState, frame_id: str = "map",
                  heading_rad: float | None = None, heading_sigma_rad: float | None = None,
                  up_m: float = 0.0) -> Any:
    """``geoloc/pose`` for a fused state; ``heading_rad`` (clockwise from north) sets the yaw if given.

    ``up_m`` is the z written: 0 for the node's horizontal pose, the ellipsoidal ``alt_m`` in field logs.
    """
    yaw = 0.0 if heading_rad is None else heading_to_enu_yaw(heading_rad)
    qx, qy, qz, qw = yaw_to_quaternion_xyzw(yaw)
    sigma = None if heading_rad is None else heading_sigma_rad
    pose = factory.new(
        "geometry_msgs/msg/Pose",
        position=factory.new("geometry_msgs/msg/Point", x=float(state.east_m), y=float(state.north_m),
                             z=float(up_m)),
        orientation=factory.new("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw),
    )
    with_cov = factory.new("geometry_msgs/msg/PoseWithCovariance", pose=pose,
                           covariance=pose_covariance(state.position_covariance_m2, sigma).reshape(36))
    return factory.new("geometry_msgs/msg/PoseWithCovarianceStamped",
                       header=make_header(factory, state.stamp_s, frame_id), pose=with_cov)


def pose_msg_to_local(msg: Any) -> LocalPose:
    """Read a PoseWithCovarianceStamped (any object with its fields) back into plain numbers."""
    pose, cov = msg.pose.pose, [float(v) for v in msg.pose.covariance]
    if len(cov) != 36:
        raise ConversionError(f"pose covariance must have 36 entries (row-major 6x6), got {len(cov)}")
    q = pose.orientation
    yaw = quaternion_to_yaw(float(q.x), float(q.y), float(q.z), float(q.w))
    return LocalPose(stamp_s=header_stamp_s(msg), frame_id=str(msg.header.frame_id),
                     east_m=float(pose.position.x), north_m=float(pose.position.y), up_m=float(pose.position.z),
                     heading_rad=enu_yaw_to_heading(yaw), covariance_6x6=np.asarray(cov).reshape(6, 6))


def imu_msg_to_heading_rad(msg: Any) -> float:
    """Heading (clockwise from north) from a ``sensor_msgs/Imu`` orientation in ENU (REP-103: yaw 0 = east)."""
    q = msg.orientation
    return enu_yaw_to_heading(quaternion_to_yaw(float(q.x), float(q.y), float(q.z), float(q.w)))


def heading_to_float64_msg(factory: MessageFactory, heading_rad: float) -> Any:
    """A ``std_msgs/Float64`` of a heading (rad clockwise from north, the field log's ``/heading``), as given."""
    return factory.new("std_msgs/msg/Float64", data=float(heading_rad))


def float64_msg_to_heading_rad(msg: Any) -> float:
    """Heading from a ``std_msgs/Float64`` (rad clockwise from north, the field log's ``/heading``)."""
    value = float(msg.data)
    if not math.isfinite(value):
        raise ConversionError(f"heading {value} is not finite")
    return value % (2.0 * math.pi)

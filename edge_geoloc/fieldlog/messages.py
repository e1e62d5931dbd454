"""SDK dataclasses <-> ROS 2 Humble messages (rosbags typestore), without ROS installed.

Topics and types are the contract in docs/interfaces.md. ``/geoloc/pose`` is in the pipeline's local ENU
frame (``map``): x = east_m, y = north_m, z = ellipsoidal height; orientation unknown (identity with a huge
variance, the robot_localization way of saying "do not use").
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from edge_geoloc.types import CovarianceType, FixStatus, FusedState, GnssFix

CAMERA = "/camera/image/compressed"
GNSS_FIX = "/gnss/fix"
FUSED_FIX = "/geoloc/fix"
FUSED_POSE = "/geoloc/pose"
PATCH_REF = "/geoloc/patch_ref"
HEADING = "/heading"

TOPIC_TYPES = {
    CAMERA: "sensor_msgs/msg/CompressedImage",
    GNSS_FIX: "sensor_msgs/msg/NavSatFix",
    FUSED_FIX: "sensor_msgs/msg/NavSatFix",
    FUSED_POSE: "geometry_msgs/msg/PoseWithCovarianceStamped",
    PATCH_REF: "std_msgs/msg/String",
    HEADING: "std_msgs/msg/Float64",
}
UNKNOWN_ROTATION_VARIANCE = 1e6
_SERVICE_GPS = 1


@functools.lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Humble typestore (built on first use, not at import)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def _msg(name: str, **fields: Any):
    return typestore().types[name](**fields)


def header(stamp_s: float, frame_id: str):
    sec = math.floor(stamp_s)
    nanosec = min(int(round((stamp_s - sec) * 1e9)), 999_999_999)
    return _msg("std_msgs/msg/Header", stamp=_msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec),
                frame_id=frame_id)


def header_stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def compressed_image(stamp_s: float, jpeg: bytes, frame_id: str):
    import numpy as np

    return _msg(TOPIC_TYPES[CAMERA], header=header(stamp_s, frame_id), format="jpeg",
                data=np.frombuffer(jpeg, dtype=np.uint8))


def navsatfix(stamp_s: float, lat_deg: float, lon_deg: float, alt_m: float, covariance: tuple[float, ...],
              covariance_type: int, status: int, frame_id: str):
    import numpy as np

    return _msg(TOPIC_TYPES[GNSS_FIX], header=header(stamp_s, frame_id),
                status=_msg("sensor_msgs/msg/NavSatStatus", status=int(status), service=_SERVICE_GPS),
                latitude=float(lat_deg), longitude=float(lon_deg), altitude=float(alt_m),
                position_covariance=np.asarray(covariance, dtype=np.float64),
                position_covariance_type=int(covariance_type))


def gnss_fix_to_msg(fix: GnssFix, frame_id: str = "gnss"):
    return navsatfix(fix.stamp_s, fix.lat_deg, fix.lon_deg, fix.alt_m, fix.position_covariance_m2,
                     fix.covariance_type, fix.status, frame_id)


def msg_to_gnss_fix(msg) -> GnssFix:
    """A NavSatFix back to a GnssFix (fields NavSatFix does not carry take their defaults)."""
    return GnssFix(stamp_s=header_stamp_s(msg), lat_deg=float(msg.latitude), lon_deg=float(msg.longitude),
                   alt_m=float(msg.altitude), position_covariance_m2=tuple(float(v) for v in msg.position_covariance),
                   covariance_type=CovarianceType(int(msg.position_covariance_type)),
                   status=FixStatus(int(msg.status.status)))


def fused_state_to_msgs(state: FusedState, fix_frame_id: str = "gnss", map_frame_id: str = "map") -> tuple:
    """(/geoloc/fix NavSatFix, /geoloc/pose PoseWithCovarianceStamped) of one fused state."""
    import numpy as np

    status = FixStatus.FIX if state.initialized else FixStatus.NO_FIX
    fix = navsatfix(state.stamp_s, state.lat_deg, state.lon_deg, state.alt_m, state.position_covariance_m2,
                    CovarianceType.KNOWN, status, fix_frame_id)
    covariance = np.zeros((6, 6))
    covariance[:3, :3] = np.asarray(state.position_covariance_m2).reshape(3, 3)
    covariance[3:, 3:] = np.eye(3) * UNKNOWN_ROTATION_VARIANCE
    pose = _msg("geometry_msgs/msg/Pose",
                position=_msg("geometry_msgs/msg/Point", x=state.east_m, y=state.north_m, z=state.alt_m),
                orientation=_msg("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0))
    stamped = _msg(TOPIC_TYPES[FUSED_POSE], header=header(state.stamp_s, map_frame_id),
                   pose=_msg("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=covariance.ravel()))
    return fix, stamped


def string_msg(payload: dict) -> Any:
    return _msg(TOPIC_TYPES[PATCH_REF], data=json.dumps(payload, sort_keys=True))


def float64_msg(value: float) -> Any:
    return _msg(TOPIC_TYPES[HEADING], data=float(value))


def serialize(msg, msgtype: str) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msgtype))


def deserialize(data: bytes, msgtype: str):
    return typestore().deserialize_cdr(data, msgtype)

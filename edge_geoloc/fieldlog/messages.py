"""The field log's topics and ROS 2 Humble typestore; messages are built and read by :mod:`edge_geoloc.interop`.

Topics and types are the contract in docs/interfaces.md. Only what is specific to the log lives here: the
topic table, the (cached) typestore and its factory, CDR (de)serialisation, the ``/geoloc/patch_ref`` JSON
string, and the log's fused pair, which differs from the node's outputs in two documented ways: ``/geoloc/pose``
carries the ellipsoidal ``alt_m`` in z, and its orientation is always unknown (identity, variance 1e6).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from edge_geoloc.interop.factory import RosbagsFactory
from edge_geoloc.interop.images import encoded_to_compressed_msg
from edge_geoloc.interop.navsat import SERVICE_GPS, fused_to_navsatfix
from edge_geoloc.interop.pose import fused_to_pose
from edge_geoloc.types import FusedState

CAMERA = "/camera/image/compressed"
GNSS_FIX = "/gnss/fix"
FUSED_FIX = "/geoloc/fix"
FUSED_POSE = "/geoloc/pose"
PATCH_REF = "/geoloc/patch_ref"
HEADING = "/heading"
ALTITUDE_AGL = "/altitude_agl"
CAMERA_INFO = "/camera/camera_info"

TOPIC_TYPES = {
    CAMERA: "sensor_msgs/msg/CompressedImage",
    GNSS_FIX: "sensor_msgs/msg/NavSatFix",
    FUSED_FIX: "sensor_msgs/msg/NavSatFix",
    FUSED_POSE: "geometry_msgs/msg/PoseWithCovarianceStamped",
    PATCH_REF: "std_msgs/msg/String",
    HEADING: "std_msgs/msg/Float64",
    ALTITUDE_AGL: "std_msgs/msg/Float64",
    CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
}


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """The ROS 2 Humble typestore (built on first use, not at import)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


@functools.lru_cache(maxsize=1)
def factory() -> RosbagsFactory:
    """The interop message factory over :func:`typestore`."""
    return RosbagsFactory(typestore())


def compressed_image(stamp_s: float, jpeg: bytes, frame_id: str) -> Any:
    """``/camera/image/compressed``: the JPEG bytes as they are (no second compression)."""
    return encoded_to_compressed_msg(factory(), jpeg, stamp_s, frame_id, "jpeg")


def fused_state_to_msgs(state: FusedState, fix_frame_id: str = "gnss", map_frame_id: str = "map") -> tuple:
    """(/geoloc/fix NavSatFix, /geoloc/pose PoseWithCovarianceStamped) of one fused state, as the log has them.

    Both are written for every state; until the filter starts, the fix is the node's NO_FIX message.
    """
    fix = fused_to_navsatfix(factory(), state, fix_frame_id, service=SERVICE_GPS)
    pose = fused_to_pose(factory(), state, map_frame_id, heading_rad=None, up_m=state.alt_m)
    return fix, pose


def patch_ref_msg(payload: dict) -> Any:
    """``/geoloc/patch_ref``: a ``std_msgs/String`` holding the payload as JSON (sorted keys)."""
    return factory().new(TOPIC_TYPES[PATCH_REF], data=json.dumps(payload, sort_keys=True))


def serialize(msg: Any, msgtype: str) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msgtype))


def deserialize(data: bytes, msgtype: str) -> Any:
    return typestore().deserialize_cdr(data, msgtype)

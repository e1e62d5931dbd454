"""Camera intrinsics and height above ground as ROS 2 messages (``sensor_msgs/CameraInfo``, ``std_msgs/Float64``).

The field log records both (``/camera/camera_info`` once per session and on change, ``/altitude_agl`` per
measurement) so that pairs cut from it can be scale-aligned: the query is cut to a fixed ground size from the
height above ground and the horizontal field of view, ``hfov = 2 * atan(width / (2 * fx))``.
CameraInfo describes an ideal pinhole here: no distortion, ``R`` identity, ``P = [K | 0]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edge_geoloc.interop.factory import ConversionError, MessageFactory
from edge_geoloc.interop.stamps import make_header


@dataclass(frozen=True)
class PinholeIntrinsics:
    """Image size and pinhole intrinsics in pixels (what a ``CameraInfo`` carries that the library uses)."""

    width_px: int
    height_px: int
    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float

    @classmethod
    def from_hfov(cls, width_px: int, height_px: int, hfov_deg: float) -> PinholeIntrinsics:
        """Square pixels, principal point at the image centre: ``fx = fy = width / (2 * tan(hfov / 2))``."""
        if width_px <= 0 or height_px <= 0 or not 0.0 < hfov_deg < 180.0:
            raise ConversionError(f"need width_px, height_px > 0 and 0 < hfov_deg < 180, got {width_px}, "
                                  f"{height_px}, {hfov_deg}")
        f = width_px / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
        return cls(int(width_px), int(height_px), f, f, width_px / 2.0, height_px / 2.0)

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view: ``2 * atan(width / (2 * fx))``."""
        return math.degrees(2.0 * math.atan(self.width_px / (2.0 * self.fx_px)))


def intrinsics_to_camera_info_msg(factory: MessageFactory, intrinsics: PinholeIntrinsics, stamp_s: float,
                                  frame_id: str) -> Any:
    """A ``sensor_msgs/CameraInfo`` (``plumb_bob`` with zero distortion, ``R = I``, ``P = [K | 0]``)."""
    c = intrinsics
    k = [c.fx_px, 0.0, c.cx_px, 0.0, c.fy_px, c.cy_px, 0.0, 0.0, 1.0]
    p = [c.fx_px, 0.0, c.cx_px, 0.0, 0.0, c.fy_px, c.cy_px, 0.0, 0.0, 0.0, 1.0, 0.0]
    roi = factory.new("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0,
                      do_rectify=False)
    return factory.new(
        "sensor_msgs/msg/CameraInfo", header=make_header(factory, stamp_s, frame_id), height=c.height_px,
        width=c.width_px, distortion_model="plumb_bob", d=factory.float64_array([0.0] * 5),
        k=factory.float64_array(k), r=factory.float64_array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]),
        p=factory.float64_array(p), binning_x=0, binning_y=0, roi=roi)


def camera_info_msg_to_intrinsics(msg: Any) -> PinholeIntrinsics:
    """Image size and ``K`` of a ``CameraInfo``; raises :class:`ConversionError` when it has no usable ``K``."""
    k = [float(v) for v in msg.k]
    width, height = int(msg.width), int(msg.height)
    if len(k) != 9 or width <= 0 or height <= 0 or not all(map(math.isfinite, k)) or k[0] <= 0 or k[4] <= 0:
        raise ConversionError(f"CameraInfo has no usable intrinsics (width={width}, height={height}, K={k}); "
                              "an uncalibrated camera publishes K = 0")
    return PinholeIntrinsics(width, height, k[0], k[4], k[2], k[5])


def altitude_agl_to_float64_msg(factory: MessageFactory, altitude_agl_m: float) -> Any:
    """A ``std_msgs/Float64`` of a height above ground in metres (the field log's ``/altitude_agl``)."""
    return factory.new("std_msgs/msg/Float64", data=float(altitude_agl_m))


def float64_msg_to_altitude_agl_m(msg: Any) -> float:
    """Height above ground (m) from a ``std_msgs/Float64``; must be finite and not negative."""
    value = float(msg.data)
    if not math.isfinite(value) or value < 0.0:
        raise ConversionError(f"height above ground {value} m is not a finite, non-negative number")
    return value


def flight_intrinsics(meta: dict[str, Any]) -> PinholeIntrinsics | None:
    """The camera of ``flight.json`` (``camera``: ``width_px``, ``height_px`` and ``K`` or ``hfov_deg``);
    None when it does not say."""
    cam = meta.get("camera") or {}
    width, height = int(cam.get("width_px") or 0), int(cam.get("height_px") or 0)
    if width <= 0 or height <= 0:
        return None
    if cam.get("K") is not None:
        (fx, _, cx), (_, fy, cy), _ = cam["K"]
        return PinholeIntrinsics(width, height, float(fx), float(fy), float(cx), float(cy))
    hfov = float(cam.get("hfov_deg") or 0.0)
    return PinholeIntrinsics.from_hfov(width, height, hfov) if 0.0 < hfov < 180.0 else None

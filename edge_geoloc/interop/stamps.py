"""ROS time stamps <-> plain seconds, and message headers.

``builtin_interfaces/Time`` is ``(sec: int32, nanosec: uint32)``; the library uses ``stamp_s`` floats.
A float64 holds a Unix-epoch stamp (~1.7e9 s) to about 2.4e-7 s, so a round trip through seconds is exact to
the nanosecond only for stamps below about 2**22 s; bag log times therefore stay in integer nanoseconds.
"""

from __future__ import annotations

import math
from typing import Any

from edge_geoloc.interop.factory import ConversionError, MessageFactory

_INT32_MAX = 2**31 - 1


def stamp_to_s(stamp: Any) -> float:
    """Seconds of a ``builtin_interfaces/Time`` (anything with ``sec`` and ``nanosec``)."""
    nanosec = int(stamp.nanosec)
    if not 0 <= nanosec < 1_000_000_000:
        raise ConversionError(f"stamp nanosec must be in [0, 1e9), got {nanosec}")
    return float(int(stamp.sec)) + nanosec / 1e9


def s_to_sec_nanosec(stamp_s: float) -> tuple[int, int]:
    """``(sec, nanosec)`` of a time in seconds, rounded to the nearest nanosecond (carry handled)."""
    if not math.isfinite(stamp_s) or stamp_s < 0 or stamp_s > _INT32_MAX:
        raise ConversionError(f"stamp {stamp_s!r} s does not fit builtin_interfaces/Time (0 <= sec <= 2**31-1)")
    sec = math.floor(stamp_s)
    nanosec = round((stamp_s - sec) * 1e9)  # stamp_s - floor(stamp_s) is exact in floating point
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return int(sec), int(nanosec)


def ns_to_s(stamp_ns: int) -> float:
    """Seconds of an integer-nanosecond time (bag log times)."""
    return stamp_ns / 1e9


def s_to_ns(stamp_s: float) -> int:
    """Integer nanoseconds of a time in seconds (through :func:`s_to_sec_nanosec`, so both agree)."""
    sec, nanosec = s_to_sec_nanosec(stamp_s)
    return sec * 1_000_000_000 + nanosec


def make_stamp(factory: MessageFactory, stamp_s: float) -> Any:
    sec, nanosec = s_to_sec_nanosec(stamp_s)
    return factory.new("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def make_header(factory: MessageFactory, stamp_s: float, frame_id: str) -> Any:
    """A ``std_msgs/Header``: stamp = measurement time, frame_id = the sensor or map frame."""
    return factory.new("std_msgs/msg/Header", stamp=make_stamp(factory, stamp_s), frame_id=str(frame_id))


def header_stamp_s(msg: Any) -> float:
    """Seconds of ``msg.header.stamp``."""
    return stamp_to_s(msg.header.stamp)

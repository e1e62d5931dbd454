"""Stamps (sec/nanosec <-> seconds) and the rclpy-style message factory, without ROS installed."""

from __future__ import annotations

import array
import sys
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rosbags.typesys import Stores, get_typestore

from edge_geoloc.interop import (
    ConversionError,
    DiagnosticEntry,
    DiagnosticLevel,
    PythonMessageFactory,
    diagnostics_to_msg,
    image_msg_to_rgb,
    msg_to_diagnostics,
    rgb_to_image_msg,
)
from edge_geoloc.interop.stamps import s_to_ns, s_to_sec_nanosec, stamp_to_s


class Stamp:
    def __init__(self, sec: int, nanosec: int) -> None:
        self.sec, self.nanosec = sec, nanosec


@given(st.integers(0, 2**20), st.integers(0, 999_999_999))
def test_stamp_round_trip_is_exact_below_2_pow_20_s(sec, nanosec):
    assert s_to_sec_nanosec(stamp_to_s(Stamp(sec, nanosec))) == (sec, nanosec)


@given(st.integers(1_500_000_000, 2**31 - 2), st.integers(0, 999_999_999))
def test_epoch_stamps_round_trip_within_float_resolution(sec, nanosec):
    back_sec, back_ns = s_to_sec_nanosec(stamp_to_s(Stamp(sec, nanosec)))
    assert 0 <= back_ns < 1_000_000_000
    assert abs((back_sec - sec) * 1_000_000_000 + back_ns - nanosec) <= 120  # float64 spacing at 2**31 s: 238 ns


def test_nanosecond_carry_and_invalid_stamps():
    assert s_to_sec_nanosec(4.9999999999) == (5, 0)
    assert s_to_ns(12.5) == 12_500_000_000
    for bad in (-0.5, float("nan"), float("inf"), 2.0**31):
        with pytest.raises(ConversionError, match="builtin_interfaces/Time"):
            s_to_sec_nanosec(bad)
    with pytest.raises(ConversionError, match="nanosec"):
        stamp_to_s(Stamp(1, 1_000_000_000))


@pytest.fixture
def ros_python_packages(monkeypatch):
    """Message packages laid out like a ROS 2 install (``sensor_msgs.msg.Image``...), with rosbags classes."""
    ts = get_typestore(Stores.ROS2_HUMBLE)
    for msgtype, cls in ts.types.items():
        package, kind, name = msgtype.split("/")
        if package not in ("sensor_msgs", "std_msgs", "builtin_interfaces", "diagnostic_msgs"):
            continue
        module = sys.modules.get(f"{package}.{kind}") or types.ModuleType(f"{package}.{kind}")
        setattr(module, name, cls)
        monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
        monkeypatch.setitem(sys.modules, f"{package}.{kind}", module)
    return ts


def test_python_factory_uses_rclpy_representations(ros_python_packages):
    factory = PythonMessageFactory()
    rgb = np.random.default_rng(0).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    msg = rgb_to_image_msg(factory, rgb, 3.5, "cam")
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B"  # what rclpy's uint8[] setter takes
    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)
    entry = DiagnosticEntry("x", DiagnosticLevel.ERROR, "m", {"k": "v"})
    diag = diagnostics_to_msg(factory, [entry], 3.5)
    assert diag.status[0].level == b"\x02"  # rosidl maps `byte` to one-byte bytes
    assert msg_to_diagnostics(diag)[1] == [entry]


def test_python_factory_names_the_missing_package():
    with pytest.raises(ConversionError, match="source your ROS 2 setup.bash"):
        PythonMessageFactory().new("no_such_msgs/msg/Thing")
    with pytest.raises(ConversionError, match="package/msg/Name"):
        PythonMessageFactory().new("NavSatFix")

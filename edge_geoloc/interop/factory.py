"""Message factories: build ROS 2 messages without importing rclpy.

The conversions in :mod:`edge_geoloc.interop` read messages by duck typing (any object with the ROS field
names works) and build messages through a small factory, so the same code serves three worlds:

- :class:`RosbagsFactory`: the message classes of a ``rosbags`` typestore (Humble, Jazzy...), used by
  ``edge-geoloc replay-bag``, the field logger and the tests;
- :class:`PythonMessageFactory`: the generated Python classes of a ROS 2 install (``sensor_msgs.msg``...),
  used by the rclpy node; it imports the message packages by name, never rclpy itself.

Every builder passes *all* fields of a message, because rosbags classes have no defaults.
"""

from __future__ import annotations

import array
import importlib
from typing import Any, Protocol

import numpy as np


class ConversionError(ValueError):
    """A message cannot be converted (malformed, unsupported encoding, out-of-range value)."""


class MessageFactory(Protocol):
    """What the conversions need to build messages of one ROS 2 type system."""

    def new(self, msgtype: str, **fields: Any) -> Any:
        """Build a message of ``msgtype`` (``"sensor_msgs/msg/NavSatFix"``) from all of its fields."""
        ...

    def uint8_array(self, data: bytes) -> Any:
        """The value a ``uint8[]`` field accepts in this type system."""
        ...

    def byte(self, value: int) -> Any:
        """The value a ``byte`` field (``DiagnosticStatus.level``) accepts in this type system."""
        ...

    def float64_array(self, values: Any) -> Any:
        """The value a ``float64[N]`` or ``float64[]`` field (``CameraInfo.k``, ``.d``) accepts."""
        ...


class RosbagsFactory:
    """Builds the message classes of a ``rosbags`` typestore (``get_typestore(Stores.ROS2_HUMBLE)``)."""

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore

    def new(self, msgtype: str, **fields: Any) -> Any:
        try:
            cls = self.typestore.types[msgtype]
        except KeyError:
            raise ConversionError(f"message type {msgtype!r} is not in this rosbags typestore") from None
        return cls(**fields)

    def uint8_array(self, data: bytes) -> np.ndarray:
        return np.frombuffer(bytes(data), dtype=np.uint8)

    def byte(self, value: int) -> int:
        return int(value)

    def float64_array(self, values: Any) -> np.ndarray:
        return np.asarray(values, dtype=np.float64).reshape(-1)


class PythonMessageFactory:
    """Builds the generated message classes of a ROS 2 install (``from sensor_msgs.msg import NavSatFix``).

    The rclpy node uses this one; message packages are imported by name on first use, so this module has no
    ROS dependency of its own.
    """

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}

    def new(self, msgtype: str, **fields: Any) -> Any:
        cls = self._classes.get(msgtype)
        if cls is None:
            cls = self._classes[msgtype] = _import_message_class(msgtype)
        return cls(**fields)

    def uint8_array(self, data: bytes) -> array.array:
        return array.array("B", bytes(data))

    def byte(self, value: int) -> bytes:
        return bytes([int(value)])  # rosidl maps ``byte`` to a one-byte ``bytes``

    def float64_array(self, values: Any) -> list[float]:
        return [float(v) for v in values]  # rosidl accepts a list for both fixed and unbounded arrays


def _import_message_class(msgtype: str) -> type:
    package, kind, name = _split_msgtype(msgtype)
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError) as err:
        raise ConversionError(
            f"cannot import ROS 2 message {msgtype!r} ({err}); source your ROS 2 setup.bash or install the "
            f"{package} package"
        ) from err


def _split_msgtype(msgtype: str) -> tuple[str, str, str]:
    parts = msgtype.split("/")
    if len(parts) != 3 or not all(parts):
        raise ConversionError(f"message type {msgtype!r} is not of the form package/msg/Name")
    return parts[0], parts[1], parts[2]


def as_uint8_array(data: Any) -> np.ndarray:
    """A ``uint8[]`` field as a 1-D numpy array, whatever the type system stores it as.

    rosbags gives numpy arrays, rclpy gives ``array.array('B')`` (or ``bytes``), hand-made objects may use lists.
    """
    if isinstance(data, np.ndarray):
        return data.astype(np.uint8, copy=False).reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    return np.asarray(list(data), dtype=np.uint8)

"""Field logging switched on and off at run time (the node's start/stop services), over ``FieldLogger``.

Each ``start`` opens a new :class:`edge_geoloc.fieldlog.FieldLogger` session in ``log_dir`` (new bag parts);
``stop`` finishes it. What is logged: every GNSS fix and heading, and each frame the pipeline processed with
its fused state (the logger's own ``camera_rate_hz`` limit applies) -- the coarse-GPS pairs adaptation needs --
plus, for scale-aligned adaptation, the frame's height above ground (``/altitude_agl``, when the frame has one)
and the camera info from the image size and ``hfov_deg`` (``/camera/camera_info``, when the field of view is
known; the logger writes it once per session and on change).
Calls never block on disk: the logger queues and writes on its own thread.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge_geoloc.fieldlog.config import FieldLogConfig
from edge_geoloc.fieldlog.logger import FieldLogger
from edge_geoloc.interop.camera_info import PinholeIntrinsics
from edge_geoloc.types import CameraFrame, FusedState, GnssFix


class FieldLogSwitch:
    """A field logger that can be started and stopped; logging calls are no-ops while stopped."""

    def __init__(self, log_dir: str | Path, min_free_bytes: int, make_logger: Callable[..., Any] | None = None,
                 hfov_deg: float = 0.0) -> None:
        if not 0.0 <= hfov_deg < 180.0:
            raise ValueError(f"hfov_deg must be in (0, 180) degrees, or 0 for unknown, got {hfov_deg}")
        self.log_dir = Path(log_dir)
        self.min_free_bytes = int(min_free_bytes)
        self.hfov_deg = float(hfov_deg)
        self._make_logger = make_logger
        self._lock = threading.Lock()
        self._logger: Any = None
        self._sessions = 0

    def start(self) -> str:
        with self._lock:
            if self._logger is not None:
                return f"already logging to {self.log_dir}"
            self._logger = self._new_logger()
            self._sessions += 1
            return f"logging to {self.log_dir}"

    def stop(self) -> str:
        with self._lock:
            logger, self._logger = self._logger, None
        if logger is None:
            return "field logging was not running"
        logger.close()
        return f"stopped; {logger.counters.written} messages written to {self.log_dir}"

    def close(self) -> None:
        self.stop()

    @property
    def active(self) -> bool:
        return self._logger is not None

    def on_gnss(self, fix: GnssFix) -> None:
        self._call("log_gnss", fix)

    def on_heading(self, stamp_s: float, heading_rad: float) -> None:
        self._call("log_heading", stamp_s, heading_rad)

    def on_state(self, frame: CameraFrame, state: FusedState) -> None:
        """A processed frame and its fused state (called on the inference worker thread)."""
        if self.hfov_deg > 0.0:
            height_px, width_px = frame.image_rgb.shape[:2]
            intrinsics = PinholeIntrinsics.from_hfov(width_px, height_px, self.hfov_deg)
            self._call("log_camera_info", frame.stamp_s, intrinsics)
        self._call("log_frame", frame)
        self._call("log_fused", state)
        if frame.altitude_agl_m is not None:
            self._call("log_altitude_agl", frame.stamp_s, frame.altitude_agl_m)

    def status(self) -> dict[str, Any]:
        """For ``/diagnostics``: active, folder, free bytes, and the logger's counters while active."""
        logger = self._logger
        status: dict[str, Any] = {"active": logger is not None, "log_dir": str(self.log_dir),
                                  "free_bytes": _free_bytes(self.log_dir), "sessions": self._sessions}
        if logger is not None:
            status.update(asdict(logger.counters))
        return status

    def _call(self, method: str, *args: Any) -> None:
        logger = self._logger
        if logger is not None:
            getattr(logger, method)(*args)

    def _new_logger(self) -> Any:
        if self._make_logger is not None:
            return self._make_logger(self.log_dir)
        return FieldLogger(self.log_dir, FieldLogConfig(min_free_bytes=self.min_free_bytes))


def _free_bytes(path: Path) -> int:
    """Free space where the logs go (the nearest existing parent if the folder is not made yet)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def open_field_logger(settings: Any) -> FieldLogSwitch | None:
    """The node's field logger from its settings (``log_dir``, ``log_min_free_gb``, ``camera_hfov_deg``); None
    when disabled."""
    if not settings.log_dir:
        return None
    return FieldLogSwitch(settings.log_dir, int(settings.log_min_free_gb * 1e9),
                          hfov_deg=settings.camera_hfov_deg)

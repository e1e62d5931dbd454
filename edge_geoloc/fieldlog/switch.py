"""Field logging switched on and off at run time (the node's start/stop services), over ``FieldLogger``.

Each ``start`` opens a new :class:`edge_geoloc.fieldlog.FieldLogger` session in ``log_dir`` (new bag parts);
``stop`` finishes it. What is logged is :mod:`edge_geoloc.fieldlog.step`'s record, the same one the demo
writes: every GNSS fix, and per processed frame the image (the logger's own ``camera_rate_hz`` limit applies),
the fused state, the frame's heading and height above ground, the camera info from the image size and
``hfov_deg`` (when the field of view is known) and the map patch reference (when the pipeline names its map).
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
from edge_geoloc.fieldlog.step import MapPatchSpec, StepRecorder
from edge_geoloc.types import CameraFrame, FusedState, GnssFix


class FieldLogSwitch:
    """A field logger that can be started and stopped; logging calls are no-ops while stopped."""

    def __init__(self, log_dir: str | Path, min_free_bytes: int, make_logger: Callable[..., Any] | None = None,
                 hfov_deg: float = 0.0, patch: MapPatchSpec | None = None) -> None:
        if not 0.0 <= hfov_deg < 180.0:
            raise ValueError(f"hfov_deg must be in (0, 180) degrees, or 0 for unknown, got {hfov_deg}")
        self.log_dir = Path(log_dir)
        self.min_free_bytes = int(min_free_bytes)
        self.hfov_deg = float(hfov_deg)
        self.patch = patch
        self._make_logger = make_logger
        self._lock = threading.Lock()
        self._logger: Any = None
        self._recorder: StepRecorder | None = None
        self._sessions = 0

    def start(self) -> str:
        with self._lock:
            if self._logger is not None:
                return f"already logging to {self.log_dir}"
            self._logger = self._new_logger()
            self._recorder = StepRecorder(self._logger, hfov_deg=self.hfov_deg, patch=self.patch)
            self._sessions += 1
            return f"logging to {self.log_dir}"

    def stop(self) -> str:
        with self._lock:
            logger, self._logger, self._recorder = self._logger, None, None
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
        recorder = self._recorder
        if recorder is not None:
            recorder.on_gnss(fix)

    def on_state(self, frame: CameraFrame, state: FusedState) -> None:
        """A processed frame and its fused state (called on the inference worker thread)."""
        recorder = self._recorder
        if recorder is not None:
            recorder.log_step(frame, state)

    def status(self) -> dict[str, Any]:
        """For ``/diagnostics``: active, folder, free bytes, and the logger's counters while active."""
        logger = self._logger
        status: dict[str, Any] = {"active": logger is not None, "log_dir": str(self.log_dir),
                                  "free_bytes": _free_bytes(self.log_dir), "sessions": self._sessions}
        if logger is not None:
            status.update(asdict(logger.counters))
        return status

    def _new_logger(self) -> Any:
        if self._make_logger is not None:
            return self._make_logger(self.log_dir)
        return FieldLogger(self.log_dir, FieldLogConfig(min_free_bytes=self.min_free_bytes))


def _free_bytes(path: Path) -> int:
    """Free space where the logs go (the nearest existing parent if the folder is not made yet)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def open_field_logger(settings: Any, patch: MapPatchSpec | None = None) -> FieldLogSwitch | None:
    """The node's field logger from its settings (``log_dir``, ``log_min_free_gb``, ``camera_hfov_deg``) and the
    pipeline's map patch (:func:`edge_geoloc.fieldlog.step.map_patch_of`); None when disabled."""
    if not settings.log_dir:
        return None
    return FieldLogSwitch(settings.log_dir, int(settings.log_min_free_gb * 1e9),
                          hfov_deg=settings.camera_hfov_deg, patch=patch)

"""The one per-frame field-log record, written the same way by the ROS node and by the demo.

Per GNSS fix (:meth:`StepRecorder.on_gnss`): ``/gnss/fix``. Per processed camera frame
(:meth:`StepRecorder.log_step`): the camera info (written once, and again on change), the image, the fused
state once the filter is initialised, the frame's measured heading and height above ground when it has them,
and -- when the map patch is known -- ``/geoloc/patch_ref``: the patch around the coarse position known
*before* the frame (the previous initialised fused state, else the last GNSS fix), which adaptation cuts again
later. A vehicle and a simulated flight therefore leave the same logs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_geoloc.interop.camera_info import PinholeIntrinsics
from edge_geoloc.runtime.tile_index import resolve_source
from edge_geoloc.types import CameraFrame, FusedState, GnssFix


@dataclass(frozen=True)
class MapPatchSpec:
    """Where the aerial patch of a frame is cut: the map raster, the patch's ground size and pixels."""

    raster: Path
    size_m: float
    px: int


def map_patch_of(pipeline: Any) -> MapPatchSpec | None:
    """The patch a runtime pipeline cuts for its localizer (its tile index's first map raster; the aerial
    ground size and pixels, else the index's tile size and pixels, as the pipeline does); None when the
    pipeline does not say (a fake, or an index without a map source)."""
    index = getattr(pipeline, "index", None)
    manifest = getattr(index, "manifest", None) or {}
    if not manifest.get("sources"):
        return None
    size_m = getattr(pipeline, "aerial_size_m", None) or manifest.get("tile_size_m")
    px = getattr(getattr(pipeline, "localizer", None), "aerial_px", None) or manifest.get("tile_px")
    if not size_m or not px:
        return None
    return MapPatchSpec(resolve_source(manifest["sources"][0], getattr(index, "root", None)), float(size_m), int(px))


class StepRecorder:
    """Writes GNSS fixes and per-frame records to a ``FieldLogger`` and remembers the coarse position.

    ``intrinsics``: the camera's, when known up front; otherwise, with ``hfov_deg`` > 0, they follow from each
    frame's image size. ``patch``: where the frame's aerial patch is cut (no ``patch_ref`` without it).
    """

    def __init__(self, logger: Any, intrinsics: PinholeIntrinsics | None = None, hfov_deg: float = 0.0,
                 patch: MapPatchSpec | None = None) -> None:
        self.logger, self.intrinsics, self.hfov_deg, self.patch = logger, intrinsics, float(hfov_deg), patch
        self._last_fix: GnssFix | None = None
        self._last_state: FusedState | None = None

    def on_gnss(self, fix: GnssFix) -> None:
        self.logger.log_gnss(fix)
        self._last_fix = fix

    def log_step(self, frame: CameraFrame, state: FusedState, jpeg: bytes | None = None) -> None:
        """One processed frame and its fused state; ``jpeg``: the camera's own encoding of the frame, written
        as is instead of encoding ``frame.image_rgb`` again."""
        coarse = self._last_state or self._last_fix  # what the vehicle believed before this frame
        intrinsics = self._intrinsics(frame)
        if intrinsics is not None:
            self.logger.log_camera_info(frame.stamp_s, intrinsics)
        if jpeg is not None:
            self.logger.log_jpeg(frame.stamp_s, jpeg)
        else:
            self.logger.log_frame(frame)
        if state.initialized:
            self.logger.log_fused(state)
            self._last_state = state
        if frame.heading_rad is not None:
            self.logger.log_heading(frame.stamp_s, frame.heading_rad)
        if frame.altitude_agl_m is not None:
            self.logger.log_altitude_agl(frame.stamp_s, frame.altitude_agl_m)
        if self.patch is not None and coarse is not None and math.isfinite(coarse.lat_deg):
            self.logger.log_patch_ref(frame.stamp_s, self.patch.raster, coarse.lat_deg, coarse.lon_deg,
                                      self.patch.size_m, self.patch.px)

    def _intrinsics(self, frame: CameraFrame) -> PinholeIntrinsics | None:
        if self.intrinsics is not None or self.hfov_deg <= 0.0:
            return self.intrinsics
        height_px, width_px = frame.image_rgb.shape[:2]
        return PinholeIntrinsics.from_hfov(width_px, height_px, self.hfov_deg)

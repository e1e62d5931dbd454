"""Camera poses and the pinhole model used by the renderers.

World frame: the area's local frame, x = east, y = north, z = up (metres, ground at z = 0).
Camera frame: OpenCV (x right, y down, z along the optical axis). A drone camera looks along ``heading_rad``
(clockwise from north), tilted down by ``pitch_rad`` below the horizon (``pi/2`` = nadir), with no roll;
the image "up" direction points along the heading. Pixel convention: ``(0, 0)`` is the upper-left corner of
the upper-left pixel, so the principal point of a centred camera is ``(W/2, H/2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    """A distortion-free pinhole camera with square pixels and the principal point at the image centre."""

    width_px: int
    height_px: int
    hfov_deg: float

    def __post_init__(self) -> None:
        if not (isinstance(self.width_px, int) and isinstance(self.height_px, int)):
            raise TypeError(f"width_px and height_px must be ints, got {self.width_px!r}, {self.height_px!r}")
        if not (8 <= self.width_px <= 8192 and 8 <= self.height_px <= 8192):
            raise ValueError(f"image size must be in [8, 8192] pixels, got {self.width_px}x{self.height_px}")
        if not (math.isfinite(self.hfov_deg) and 1.0 <= self.hfov_deg <= 170.0):
            raise ValueError(f"hfov_deg must be in [1, 170] degrees, got {self.hfov_deg}")

    @property
    def focal_px(self) -> float:
        return 0.5 * self.width_px / math.tan(math.radians(self.hfov_deg) / 2)

    @property
    def K(self) -> np.ndarray:  # noqa: N802 (the field's name for the intrinsic matrix)
        """3x3 intrinsic matrix (corner pixel convention)."""
        f = self.focal_px
        return np.array([[f, 0.0, self.width_px / 2], [0.0, f, self.height_px / 2], [0.0, 0.0, 1.0]])

    @property
    def vfov_deg(self) -> float:
        return math.degrees(2 * math.atan(0.5 * self.height_px / self.focal_px))

    def pixel_directions(self) -> np.ndarray:
        """(H, W, 3) float32 unnormalised camera-frame ray directions through the pixel centres."""
        f = self.focal_px
        u = (np.arange(self.width_px, dtype=np.float32) + 0.5 - self.width_px / 2) / f
        v = (np.arange(self.height_px, dtype=np.float32) + 0.5 - self.height_px / 2) / f
        uu, vv = np.meshgrid(u, v)
        return np.stack([uu, vv, np.ones_like(uu)], -1)


@dataclass(frozen=True)
class DronePose:
    """Where a drone camera is and where it looks (local frame, see the module docstring)."""

    east_m: float
    north_m: float
    alt_agl_m: float
    heading_rad: float
    pitch_rad: float = math.pi / 2

    def __post_init__(self) -> None:
        values = (self.east_m, self.north_m, self.alt_agl_m, self.heading_rad, self.pitch_rad)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"DronePose values must be finite, got {values}")
        if self.alt_agl_m <= 0.0:
            raise ValueError(f"alt_agl_m must be > 0 metres above ground, got {self.alt_agl_m}")
        if not 0.0 < self.pitch_rad <= math.pi / 2 + 1e-9:
            raise ValueError(f"pitch_rad (depression below the horizon) must be in (0, pi/2], got {self.pitch_rad}")

    @property
    def position(self) -> np.ndarray:
        return np.array([self.east_m, self.north_m, self.alt_agl_m])

    def rotation_world_from_camera(self) -> np.ndarray:
        """3x3 matrix whose columns are the camera x (right), y (down), z (forward) axes in world coordinates."""
        return camera_rotation(self.heading_rad, self.pitch_rad)


def camera_rotation(heading_rad: float, pitch_rad: float) -> np.ndarray:
    """World-from-camera rotation for a camera looking along ``heading_rad``, ``pitch_rad`` below the horizon."""
    sh, ch = math.sin(heading_rad), math.cos(heading_rad)
    sp, cp = math.sin(pitch_rad), math.cos(pitch_rad)
    forward = np.array([sh * cp, ch * cp, -sp])
    right = np.array([ch, -sh, 0.0])
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def project_points(points_world: np.ndarray, position: np.ndarray, rotation: np.ndarray,
                   camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continuous (row, col) and depth of (N, 3) world points; depth <= 0 means behind the camera."""
    cam = (np.asarray(points_world, np.float64) - position) @ rotation
    depth = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = cam @ camera.K.T
        col, row = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    return row, col, depth

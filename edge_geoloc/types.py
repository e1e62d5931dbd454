"""The runtime's plain dataclasses: what flows from sensors through the pipeline to publishers and logs.

Plain numbers with units in their names (``stamp_s``, ``sigma_m``, ``heading_rad``); no ROS types. Covariances
are row-major tuples in the local ENU frame, in the same layout and meaning as ROS ``NavSatFix``
(``position_covariance_m2``: 3x3 E, N, U) so the ROS adapter only copies numbers.
Headings are clockwise from north in radians (see :mod:`edge_geoloc.geo.geodesy`).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np


class CovarianceType(enum.IntEnum):
    """Same values as ``sensor_msgs/NavSatFix.position_covariance_type``."""

    UNKNOWN = 0
    APPROXIMATED = 1
    DIAGONAL_KNOWN = 2
    KNOWN = 3


class FixStatus(enum.IntEnum):
    """Same values as ``sensor_msgs/NavSatStatus.status``."""

    NO_FIX = -1
    FIX = 0
    SBAS_FIX = 1
    GBAS_FIX = 2


def diagonal_covariance(sigma_east_m: float, sigma_north_m: float, sigma_up_m: float) -> tuple[float, ...]:
    """Row-major 3x3 ENU covariance from 1-sigma standard deviations."""
    return (sigma_east_m**2, 0.0, 0.0, 0.0, sigma_north_m**2, 0.0, 0.0, 0.0, sigma_up_m**2)


def _check_finite(name: str, *values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite, got {values}")


@dataclass(frozen=True)
class GnssFix:
    """One GNSS position fix (ellipsoidal height), with its ENU covariance in m^2."""

    stamp_s: float
    lat_deg: float
    lon_deg: float
    alt_m: float
    position_covariance_m2: tuple[float, ...] = diagonal_covariance(5.0, 5.0, 10.0)
    covariance_type: CovarianceType = CovarianceType.APPROXIMATED
    status: FixStatus = FixStatus.FIX
    fix_quality: int = 1  # GGA quality indicator: 0 invalid, 1 SPS, 2 DGPS, 4 RTK fixed, 5 RTK float
    num_satellites: int = 0
    hdop: float | None = None
    speed_mps: float | None = None
    course_rad: float | None = None  # course over ground, clockwise from north

    def __post_init__(self) -> None:
        _check_finite("GnssFix stamp/lat/lon/alt", self.stamp_s, self.lat_deg, self.lon_deg, self.alt_m)
        if not (-90 <= self.lat_deg <= 90 and -180 <= self.lon_deg <= 180):
            raise ValueError(f"GnssFix lat/lon out of range: ({self.lat_deg}, {self.lon_deg})")
        if len(self.position_covariance_m2) != 9:
            raise ValueError("position_covariance_m2 must have 9 entries (row-major 3x3 ENU)")
        _check_finite("GnssFix covariance", *self.position_covariance_m2)

    @property
    def covariance_enu_m2(self) -> np.ndarray:
        return np.asarray(self.position_covariance_m2, dtype=np.float64).reshape(3, 3)

    @property
    def horizontal_sigma_m(self) -> float:
        cov = self.covariance_enu_m2
        return math.sqrt(max(0.0, 0.5 * (cov[0, 0] + cov[1, 1])))


@dataclass(frozen=True)
class CameraFrame:
    """One camera image with what is known about how it was taken."""

    stamp_s: float
    image_rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    frame_id: str = "camera"
    heading_rad: float | None = None  # camera heading, clockwise from north, if a compass/IMU gives it
    altitude_agl_m: float | None = None  # height above ground, if known (drones)

    def __post_init__(self) -> None:
        img = self.image_rgb
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            shape = getattr(img, "shape", None)
            raise ValueError(f"CameraFrame.image_rgb must be an (H, W, 3) uint8 array, got {shape}")
        _check_finite("CameraFrame.stamp_s", self.stamp_s)


@dataclass(frozen=True)
class VisualFix:
    """A position measured by matching the camera against the map (retrieval + heat-map localizer)."""

    stamp_s: float
    lat_deg: float
    lon_deg: float
    east_m: float  # in the pipeline's local ENU frame
    north_m: float
    covariance_en_m2: tuple[float, float, float, float]  # row-major 2x2 (E, N)
    confidence: float  # in [0, 1]: peak probability mass around the mode
    entropy_nats: float
    tile_id: int
    retrieval_score: float
    heading_rad: float | None = None
    from_prior_patch: bool = False  # found in a patch centred on the fused estimate: not independent of it


@dataclass(frozen=True)
class StageLatency:
    """Wall time of each pipeline stage for one frame, in milliseconds."""

    preprocess_ms: float = 0.0
    retrieval_ms: float = 0.0
    search_ms: float = 0.0
    localizer_ms: float = 0.0
    fusion_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class PipelineCounters:
    """Counts the runtime reports (diagnostics, logs): a snapshot from ``Pipeline.counters``."""

    frames: int = 0
    gnss_fixes: int = 0
    gnss_rejected: int = 0
    visual_fixes: int = 0
    visual_rejected: int = 0
    low_confidence: int = 0
    no_prior_frames: int = 0
    filter_resets: int = 0
    dropped_frames: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FusedState:
    """The fused estimate after one pipeline step."""

    stamp_s: float
    lat_deg: float
    lon_deg: float
    alt_m: float
    east_m: float
    north_m: float
    vel_east_mps: float
    vel_north_mps: float
    position_covariance_m2: tuple[float, ...]  # row-major 3x3 ENU, NavSatFix layout
    initialized: bool
    gnss_used: bool
    visual_used: bool
    visual_fix: VisualFix | None = None
    latency: StageLatency = StageLatency()
    ambiguous: bool = False  # a multi-modal belief (particle fusion): the position is no confident fix

    @property
    def horizontal_sigma_m(self) -> float:
        cov = np.asarray(self.position_covariance_m2).reshape(3, 3)
        return math.sqrt(max(0.0, 0.5 * (cov[0, 0] + cov[1, 1])))

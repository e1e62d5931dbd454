"""``sensor_msgs/NavSatFix`` <-> :class:`GnssFix`, a GNSS driver's velocity (TwistStamped), and fused / visual
fixes -> NavSatFix.

NavSatFix's ``position_covariance`` is row-major 3x3 ENU in m^2, exactly the library's
``position_covariance_m2``, so covariances are copied, never rotated. Status values follow ``NavSatStatus``;
Jazzy adds ``STATUS_UNKNOWN = -2``, which (like ``NO_FIX``) means "no usable fix".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_geoloc.interop.factory import ConversionError, MessageFactory
from edge_geoloc.interop.stamps import header_stamp_s, make_header
from edge_geoloc.types import CovarianceType, FixStatus, FusedState, GnssFix, VisualFix, diagonal_covariance

SERVICE_GPS = 1
SERVICE_NONE = 0  # Jazzy's SERVICE_UNKNOWN; our fused and visual fixes come from no satellite service
# Variance (m^2) written where altitude is unknown: NaN altitude in, visual fixes out (1 km sigma).
UNKNOWN_ALTITUDE_VARIANCE_M2 = 1.0e6
DEFAULT_GNSS_COVARIANCE_M2 = diagonal_covariance(5.0, 5.0, 10.0)
# NavSatStatus -> GGA quality (the inverse of nmea_navsat_driver's mapping; GBAS is reported as RTK fixed).
_STATUS_TO_GGA_QUALITY = {FixStatus.FIX: 1, FixStatus.SBAS_FIX: 2, FixStatus.GBAS_FIX: 4}


def navsatfix_to_gnss(msg: Any, default_covariance_m2: tuple[float, ...] = DEFAULT_GNSS_COVARIANCE_M2
                      ) -> GnssFix | None:
    """A :class:`GnssFix`, or ``None`` when the receiver reports no fix (status < STATUS_FIX).

    ``COVARIANCE_TYPE_UNKNOWN`` covariances (usually zeros) are replaced by ``default_covariance_m2`` so
    fusion never trusts them infinitely; a NaN altitude (allowed by the message) becomes 0 m with
    :data:`UNKNOWN_ALTITUDE_VARIANCE_M2` on the up axis. Malformed messages raise :class:`ConversionError`.
    """
    status = int(msg.status.status)
    if status < FixStatus.FIX:
        return None
    if status not in FixStatus.__members__.values():
        raise ConversionError(f"NavSatFix status {status} is not a NavSatStatus value (-1..2)")
    lat, lon, alt = float(msg.latitude), float(msg.longitude), float(msg.altitude)
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ConversionError(f"NavSatFix reports status {status} (a fix) but lat/lon are ({lat}, {lon})")
    cov_type = _covariance_type(msg.position_covariance_type)
    cov = _covariance9(msg.position_covariance) if cov_type != CovarianceType.UNKNOWN else list(default_covariance_m2)
    if not math.isfinite(alt):
        alt, cov[8] = 0.0, max(cov[8], UNKNOWN_ALTITUDE_VARIANCE_M2)
    try:
        return GnssFix(stamp_s=header_stamp_s(msg), lat_deg=lat, lon_deg=lon, alt_m=alt,
                       position_covariance_m2=tuple(cov), covariance_type=cov_type, status=FixStatus(status),
                       fix_quality=_STATUS_TO_GGA_QUALITY[FixStatus(status)])
    except ValueError as err:
        raise ConversionError(f"NavSatFix rejected: {err}") from err


@dataclass(frozen=True)
class GnssVelocity:
    """The receiver's velocity over ground (Doppler): what a ``gnss/vel`` message carries."""

    stamp_s: float
    speed_mps: float
    course_rad: float | None  # clockwise from north; None below MIN_COURSE_SPEED_MPS (the course is noise there)


MIN_COURSE_SPEED_MPS = 0.5


def twist_msg_to_gnss_velocity(msg: Any) -> GnssVelocity:
    """A GNSS driver's velocity: ``geometry_msgs/TwistStamped`` (nmea_navsat_driver's ``vel``) or
    ``TwistWithCovarianceStamped`` (ublox_gps' ``fix_velocity``), ``linear.x`` east and ``linear.y`` north in m/s
    (ENU, REP-103). Non-finite values raise :class:`ConversionError`."""
    twist = msg.twist.twist if hasattr(msg.twist, "twist") else msg.twist
    east, north = float(twist.linear.x), float(twist.linear.y)
    if not (math.isfinite(east) and math.isfinite(north)):
        raise ConversionError(f"GNSS velocity ({east}, {north}) m/s is not finite")
    speed = math.hypot(east, north)
    course = math.atan2(east, north) % (2.0 * math.pi) if speed >= MIN_COURSE_SPEED_MPS else None
    return GnssVelocity(header_stamp_s(msg), speed, course)


def gnss_to_twist_msg(factory: MessageFactory, fix: GnssFix, frame_id: str = "gnss_link") -> Any | None:
    """The ``geometry_msgs/TwistStamped`` a GNSS driver publishes beside ``fix`` (nmea_navsat_driver's ``vel``:
    ENU m/s), or None when the fix carries no velocity (what the tests feed; ``flight-to-bag`` does not write it
    yet)."""
    if fix.speed_mps is None or fix.course_rad is None:
        return None
    linear = factory.new("geometry_msgs/msg/Vector3", x=fix.speed_mps * math.sin(fix.course_rad),
                         y=fix.speed_mps * math.cos(fix.course_rad), z=0.0)
    twist = factory.new("geometry_msgs/msg/Twist", linear=linear, angular=factory.new("geometry_msgs/msg/Vector3",
                                                                                       x=0.0, y=0.0, z=0.0))
    return factory.new("geometry_msgs/msg/TwistStamped", header=make_header(factory, fix.stamp_s, frame_id),
                       twist=twist)


def _covariance_type(value: Any) -> CovarianceType:
    try:
        return CovarianceType(int(value))
    except ValueError:
        raise ConversionError(f"position_covariance_type {value} is not 0..3 (UNKNOWN..KNOWN)") from None


def _covariance9(values: Any) -> list[float]:
    cov = [float(v) for v in values]
    if len(cov) != 9 or not all(math.isfinite(v) for v in cov):
        raise ConversionError(f"position_covariance must be 9 finite numbers (row-major 3x3 ENU), got {cov}")
    return cov


def gnss_to_navsatfix(factory: MessageFactory, fix: GnssFix, frame_id: str = "gnss_link",
                      service: int = SERVICE_GPS) -> Any:
    """The NavSatFix a GNSS driver would publish for ``fix`` (used to write test and field-log bags)."""
    return _navsatfix(factory, fix.stamp_s, frame_id, int(fix.status), service, fix.lat_deg, fix.lon_deg,
                      fix.alt_m, fix.position_covariance_m2, int(fix.covariance_type))


def fused_to_navsatfix(factory: MessageFactory, state: FusedState, frame_id: str = "base_link",
                       service: int = SERVICE_NONE) -> Any:
    """``geoloc/fix``: the fused position with its full covariance (KNOWN).

    Until the filter is initialised: status NO_FIX, NaN position, zero covariance of type UNKNOWN.
    ``service`` is the NavSatStatus service written (the field log writes :data:`SERVICE_GPS`).
    """
    if not state.initialized:
        nan = math.nan
        return _navsatfix(factory, state.stamp_s, frame_id, int(FixStatus.NO_FIX), int(service), nan, nan, nan,
                          (0.0,) * 9, int(CovarianceType.UNKNOWN))
    return _navsatfix(factory, state.stamp_s, frame_id, int(FixStatus.FIX), int(service), state.lat_deg,
                      state.lon_deg, state.alt_m, state.position_covariance_m2, int(CovarianceType.KNOWN))


def visual_fix_to_navsatfix(factory: MessageFactory, fix: VisualFix, alt_m: float = math.nan,
                            frame_id: str = "camera") -> Any:
    """``geoloc/visual_fix``: the map-matching position; E/N covariance from the heat map, altitude unknown.

    The 2x2 E/N covariance fills the top-left block; the up variance is :data:`UNKNOWN_ALTITUDE_VARIANCE_M2`
    (the visual fix measures no height), and ``alt_m`` is the fused altitude when the caller has one.
    """
    cov = np.zeros((3, 3))
    cov[:2, :2] = np.asarray(fix.covariance_en_m2, dtype=np.float64).reshape(2, 2)
    cov[2, 2] = UNKNOWN_ALTITUDE_VARIANCE_M2
    return _navsatfix(factory, fix.stamp_s, frame_id, int(FixStatus.FIX), SERVICE_NONE, fix.lat_deg, fix.lon_deg,
                      alt_m, tuple(cov.reshape(-1)), int(CovarianceType.KNOWN))


def _navsatfix(factory: MessageFactory, stamp_s: float, frame_id: str, status: int, service: int, lat: float,
               lon: float, alt: float, cov: tuple[float, ...], cov_type: int) -> Any:
    return factory.new(
        "sensor_msgs/msg/NavSatFix",
        header=make_header(factory, stamp_s, frame_id),
        status=factory.new("sensor_msgs/msg/NavSatStatus", status=status, service=service),
        latitude=float(lat), longitude=float(lon), altitude=float(alt),
        position_covariance=np.asarray(cov, dtype=np.float64).reshape(9),
        position_covariance_type=cov_type,
    )

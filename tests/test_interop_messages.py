"""Message <-> dataclass conversions against the real ROS 2 message definitions (rosbags Humble and Jazzy).

Every built message goes through a CDR serialize/deserialize round trip with the distro's typestore, so a
field of the wrong name, type or length fails here exactly as it would on a ROS 2 system.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from edge_geoloc.interop import (
    ConversionError,
    DiagnosticLevel,
    RosbagsFactory,
    build_diagnostics,
    diagnostics_to_msg,
    encoded_to_compressed_msg,
    float64_msg_to_heading_rad,
    fused_to_navsatfix,
    fused_to_pose,
    gnss_to_navsatfix,
    gnss_to_twist_msg,
    heading_to_float64_msg,
    image_msg_to_frame,
    image_msg_to_rgb,
    imu_msg_to_heading_rad,
    make_header,
    msg_to_diagnostics,
    navsatfix_to_gnss,
    pose_msg_to_local,
    rgb_to_compressed_msg,
    rgb_to_image_msg,
    twist_msg_to_gnss_velocity,
    visual_fix_to_navsatfix,
)
from edge_geoloc.interop.navsat import SERVICE_GPS, SERVICE_NONE, UNKNOWN_ALTITUDE_VARIANCE_M2
from edge_geoloc.types import (
    CovarianceType,
    FixStatus,
    FusedState,
    GnssFix,
    PipelineCounters,
    StageLatency,
    VisualFix,
)

DISTROS = [Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY]
STAMP_S = 1_700_000_123.25  # exactly representable: the stamp survives sec/nanosec exactly
COV_ENU = (4.0, 1.5, 0.2, 1.5, 9.0, -0.3, 0.2, -0.3, 25.0)  # correlated E/N: layout errors show


@pytest.fixture(params=DISTROS, ids=["humble", "jazzy"])
def ts(request):
    return get_typestore(request.param)


def cdr_round_trip(ts, msg):
    return ts.deserialize_cdr(ts.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def fused_state(initialized: bool = True) -> FusedState:
    return FusedState(stamp_s=STAMP_S, lat_deg=52.01, lon_deg=4.36, alt_m=45.5, east_m=12.5, north_m=-7.25,
                      vel_east_mps=1.0, vel_north_mps=0.0, position_covariance_m2=COV_ENU, initialized=initialized,
                      gnss_used=True, visual_used=False)


def test_gnss_navsatfix_round_trip_keeps_stamp_frame_and_covariance_layout(ts):
    fix = GnssFix(stamp_s=STAMP_S, lat_deg=52.0001, lon_deg=4.3602, alt_m=43.1, position_covariance_m2=COV_ENU,
                  covariance_type=CovarianceType.KNOWN, status=FixStatus.SBAS_FIX, fix_quality=2)
    msg = cdr_round_trip(ts, gnss_to_navsatfix(RosbagsFactory(ts), fix, frame_id="gps_antenna"))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_123, 250_000_000)
    assert msg.header.frame_id == "gps_antenna"
    assert msg.position_covariance[1] == 1.5 and msg.position_covariance[5] == -0.3  # row-major E,N,U
    back = navsatfix_to_gnss(msg)
    assert back == fix


def test_navsatfix_without_fix_is_none_including_jazzy_status_unknown(ts):
    factory = RosbagsFactory(ts)
    fix = GnssFix(stamp_s=1.0, lat_deg=52.0, lon_deg=4.0, alt_m=0.0, status=FixStatus.NO_FIX)
    assert navsatfix_to_gnss(cdr_round_trip(ts, gnss_to_navsatfix(factory, fix))) is None
    msg = gnss_to_navsatfix(factory, fix)
    msg.status.status = -2  # Jazzy's STATUS_UNKNOWN (and the default of a fresh message there)
    msg.latitude = math.nan
    assert navsatfix_to_gnss(cdr_round_trip(ts, msg)) is None


def test_navsatfix_unknown_covariance_and_nan_altitude_are_made_safe(ts):
    factory = RosbagsFactory(ts)
    msg = gnss_to_navsatfix(factory, GnssFix(stamp_s=2.0, lat_deg=52.0, lon_deg=4.0, alt_m=1.0))
    msg.position_covariance = np.zeros(9)
    msg.position_covariance_type = 0
    msg.altitude = math.nan
    default = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    fix = navsatfix_to_gnss(cdr_round_trip(ts, msg), default_covariance_m2=default)
    assert fix.covariance_type == CovarianceType.UNKNOWN
    assert fix.alt_m == 0.0
    assert fix.position_covariance_m2[:8] == default[:8]
    assert fix.position_covariance_m2[8] == UNKNOWN_ALTITUDE_VARIANCE_M2


@pytest.mark.parametrize("field, value, match", [
    ("latitude", math.nan, "lat/lon"),
    ("position_covariance_type", 7, "0..3"),
])
def test_malformed_navsatfix_is_refused_with_reason(ts, field, value, match):
    msg = gnss_to_navsatfix(RosbagsFactory(ts), GnssFix(stamp_s=2.0, lat_deg=52.0, lon_deg=4.0, alt_m=1.0))
    setattr(msg, field, value)
    with pytest.raises(ConversionError, match=match):
        navsatfix_to_gnss(msg)


def test_fused_state_to_navsatfix_full_covariance_and_status(ts):
    factory = RosbagsFactory(ts)
    msg = cdr_round_trip(ts, fused_to_navsatfix(factory, fused_state(), frame_id="base_link"))
    assert msg.position_covariance_type == 3  # KNOWN
    assert tuple(msg.position_covariance) == COV_ENU
    assert (msg.latitude, msg.longitude, msg.altitude) == (52.01, 4.36, 45.5)
    assert msg.status.status == 0 and msg.header.frame_id == "base_link"
    not_ready = cdr_round_trip(ts, fused_to_navsatfix(factory, fused_state(initialized=False)))
    assert not_ready.status.status == -1 and not_ready.position_covariance_type == 0
    assert math.isnan(not_ready.latitude) and not any(not_ready.position_covariance)


def test_fused_navsatfix_service_defaults_to_none_and_can_be_set(ts):
    factory = RosbagsFactory(ts)
    assert cdr_round_trip(ts, fused_to_navsatfix(factory, fused_state())).status.service == SERVICE_NONE
    for initialized in (True, False):
        msg = fused_to_navsatfix(factory, fused_state(initialized), service=SERVICE_GPS)
        assert cdr_round_trip(ts, msg).status.service == SERVICE_GPS


def test_visual_fix_covariance_fills_en_block_and_marks_altitude_unknown(ts):
    vf = VisualFix(stamp_s=STAMP_S, lat_deg=52.0, lon_deg=4.0, east_m=1.0, north_m=2.0,
                   covariance_en_m2=(2.0, 0.5, 0.5, 3.0), confidence=0.8, entropy_nats=2.0, tile_id=3,
                   retrieval_score=0.9)
    msg = cdr_round_trip(ts, visual_fix_to_navsatfix(RosbagsFactory(ts), vf, alt_m=40.0))
    cov = np.asarray(msg.position_covariance).reshape(3, 3)
    np.testing.assert_array_equal(cov[:2, :2], [[2.0, 0.5], [0.5, 3.0]])
    assert cov[2, 2] == UNKNOWN_ALTITUDE_VARIANCE_M2 and cov[0, 2] == cov[2, 1] == 0.0
    assert msg.altitude == 40.0


@pytest.mark.parametrize("heading_deg, yaw_deg", [(90.0, 0.0), (0.0, 90.0), (180.0, -90.0)])
def test_pose_is_enu_map_frame_with_6x6_covariance_layout(ts, heading_deg, yaw_deg):
    msg = cdr_round_trip(ts, fused_to_pose(RosbagsFactory(ts), fused_state(), frame_id="map",
                                           heading_rad=math.radians(heading_deg), heading_sigma_rad=0.1))
    q = msg.pose.pose.orientation
    assert math.isclose(2 * math.atan2(q.z, q.w), math.radians(yaw_deg), abs_tol=1e-12)
    cov = np.asarray(msg.pose.covariance).reshape(6, 6)
    np.testing.assert_array_equal(cov[:3, :3], np.asarray(COV_ENU).reshape(3, 3))
    assert math.isclose(cov[5, 5], 0.01) and cov[0, 5] == 0.0
    local = pose_msg_to_local(msg)
    assert (local.frame_id, local.east_m, local.north_m, local.stamp_s) == ("map", 12.5, -7.25, STAMP_S)
    assert math.isclose(local.heading_rad, math.radians(heading_deg) % (2 * math.pi), abs_tol=1e-12)


def test_pose_without_heading_has_unknown_yaw_variance(ts):
    msg = cdr_round_trip(ts, fused_to_pose(RosbagsFactory(ts), fused_state()))
    cov = np.asarray(msg.pose.covariance).reshape(6, 6)
    assert cov[5, 5] >= 1e6 and msg.pose.pose.orientation.w == 1.0


def test_pose_z_is_zero_unless_up_m_is_given(ts):
    factory = RosbagsFactory(ts)
    assert cdr_round_trip(ts, fused_to_pose(factory, fused_state())).pose.pose.position.z == 0.0
    msg = cdr_round_trip(ts, fused_to_pose(factory, fused_state(), up_m=45.5))
    assert pose_msg_to_local(msg).up_m == 45.5 and msg.pose.pose.position.x == 12.5


def test_heading_float64_round_trip_keeps_the_value_as_written(ts):
    msg = cdr_round_trip(ts, heading_to_float64_msg(RosbagsFactory(ts), 7.5))
    assert msg.data == 7.5  # written as given; the reader wraps to [0, 2 pi)
    assert math.isclose(float64_msg_to_heading_rad(msg), 7.5 - 2 * math.pi, abs_tol=1e-12)


def test_imu_heading_follows_rep103_enu_yaw(ts):
    Imu = ts.types["sensor_msgs/msg/Imu"]
    pose = fused_to_pose(RosbagsFactory(ts), fused_state(), heading_rad=math.radians(30.0))
    imu = Imu(header=pose.header, orientation=pose.pose.pose.orientation, orientation_covariance=np.zeros(9),
              angular_velocity=ts.types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
              angular_velocity_covariance=np.zeros(9),
              linear_acceleration=ts.types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.8),
              linear_acceleration_covariance=np.zeros(9))
    assert math.isclose(imu_msg_to_heading_rad(cdr_round_trip(ts, imu)), math.radians(30.0), abs_tol=1e-12)


def _raw_image(ts, pixels: np.ndarray, encoding: str, pad: int):
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, pad), 77, np.uint8)], axis=1)
    factory = RosbagsFactory(ts)
    header = rgb_to_image_msg(factory, np.zeros((1, 1, 3), np.uint8), 5.0, "cam").header
    return ts.types["sensor_msgs/msg/Image"](header=header, height=height, width=width, encoding=encoding,
                                             is_bigendian=0, step=padded.shape[1], data=padded.reshape(-1))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_raw_image_encodings_with_padded_rows_decode_to_rgb(ts, encoding):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    if encoding == "mono8":
        rgb[..., 1] = rgb[..., 2] = rgb[..., 0]
    buffers = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., :1],
               "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
               "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 9, np.uint8)])}
    msg = cdr_round_trip(ts, _raw_image(ts, np.ascontiguousarray(buffers[encoding]), encoding, pad=3))
    decoded = image_msg_to_rgb(msg)
    np.testing.assert_array_equal(decoded, rgb)
    assert decoded.flags.writeable and not np.shares_memory(decoded, msg.data)


def test_image_round_trip_exact_and_frame_keeps_stamp_and_frame_id(ts):
    rgb = np.random.default_rng(2).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    for encoding in ("rgb8", "bgr8"):
        msg = cdr_round_trip(ts, rgb_to_image_msg(RosbagsFactory(ts), rgb, STAMP_S, "camera_optical", encoding))
        frame = image_msg_to_frame(msg, heading_rad=1.0)
        np.testing.assert_array_equal(frame.image_rgb, rgb)
        assert (frame.stamp_s, frame.frame_id, frame.heading_rad) == (STAMP_S, "camera_optical", 1.0)


def test_compressed_png_is_lossless_and_jpeg_close(ts):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :16] = (200, 30, 30)  # red block: a swapped channel order would show at once
    rgb[:, 16:] = (20, 160, 220)
    factory = RosbagsFactory(ts)
    png = cdr_round_trip(ts, rgb_to_compressed_msg(factory, rgb, STAMP_S, "cam", fmt="png"))
    np.testing.assert_array_equal(image_msg_to_frame(png).image_rgb, rgb)
    jpeg = cdr_round_trip(ts, rgb_to_compressed_msg(factory, rgb, STAMP_S, "cam", fmt="jpeg", jpeg_quality=95))
    decoded = image_msg_to_frame(jpeg).image_rgb
    assert np.abs(decoded.astype(int) - rgb).mean() < 3.0 and jpeg.format == "jpeg"


def test_encoded_bytes_are_wrapped_byte_for_byte(ts):
    rgb = np.full((8, 8, 3), 90, np.uint8)
    jpeg = bytes(rgb_to_compressed_msg(RosbagsFactory(ts), rgb, STAMP_S, "cam").data)
    msg = cdr_round_trip(ts, encoded_to_compressed_msg(RosbagsFactory(ts), jpeg, STAMP_S, "cam"))
    assert bytes(msg.data) == jpeg and msg.format == "jpeg" and msg.header.frame_id == "cam"
    assert image_msg_to_frame(msg).stamp_s == STAMP_S


def test_bad_images_are_refused_with_reason(ts):
    factory = RosbagsFactory(ts)
    msg = rgb_to_image_msg(factory, np.zeros((2, 2, 3), np.uint8), 1.0, "cam")
    msg.encoding = "bayer_rggb8"
    with pytest.raises(ConversionError, match="supported: rgb8"):
        image_msg_to_rgb(msg)
    msg.encoding, msg.step = "rgb8", 5  # step < width * 3
    with pytest.raises(ConversionError, match="malformed"):
        image_msg_to_rgb(msg)
    broken = rgb_to_compressed_msg(factory, np.zeros((4, 4, 3), np.uint8), 1.0, "cam")
    broken.data = np.frombuffer(b"not a jpeg", np.uint8)
    with pytest.raises(ConversionError, match="cannot decode"):
        image_msg_to_frame(broken)


def test_diagnostics_round_trip_with_levels(ts):
    entries = build_diagnostics(
        backend={"backend": "onnxruntime", "engine_file_path": ""},
        latency=StageLatency(preprocess_ms=1.0, retrieval_ms=20.0, localizer_ms=700.0, total_ms=721.0),
        counters=PipelineCounters(frames=10, visual_rejected=2, extra={"tiles_empty": 1}), initialized=True,
        input_counters={"frames_received": 10, "frames_dropped": 6},
        logger_status={"active": True, "free_bytes": 1.5e9},
    )
    stamp, back = msg_to_diagnostics(cdr_round_trip(ts, diagnostics_to_msg(RosbagsFactory(ts), entries, STAMP_S)))
    assert stamp == STAMP_S and back == entries
    levels = {e.name.split(": ")[1]: e.level for e in back}
    assert levels == {"inference": DiagnosticLevel.WARN, "fusion": DiagnosticLevel.OK,
                      "input": DiagnosticLevel.WARN, "field logger": DiagnosticLevel.WARN}
    assert back[0].values["localizer_ms"] == "700.00" and back[1].values["visual_rejected"] == "2"
    assert back[1].values["tiles_empty"] == "1"


def test_camera_info_round_trip_gives_size_k_and_field_of_view(ts):
    from edge_geoloc.interop import (
        PinholeIntrinsics,
        camera_info_msg_to_intrinsics,
        intrinsics_to_camera_info_msg,
        stamp_to_s,
    )

    intrinsics = PinholeIntrinsics.from_hfov(640, 480, 90.0)
    assert (intrinsics.fx_px, intrinsics.cx_px, intrinsics.cy_px) == pytest.approx((320.0, 320.0, 240.0))
    msg = cdr_round_trip(ts, intrinsics_to_camera_info_msg(RosbagsFactory(ts), intrinsics, STAMP_S, "cam"))
    assert (msg.width, msg.height, msg.header.frame_id, stamp_to_s(msg.header.stamp)) == (640, 480, "cam", STAMP_S)
    assert list(msg.p) == pytest.approx([320.0, 0, 320.0, 0, 0, 320.0, 240.0, 0, 0, 0, 1.0, 0])
    back = camera_info_msg_to_intrinsics(msg)
    assert back == intrinsics
    assert back.hfov_deg == pytest.approx(90.0)
    assert camera_info_msg_to_intrinsics(PinholeIntrinsicsMsg(1000, 500, 500.0)).hfov_deg == pytest.approx(90.0)
    with pytest.raises(ConversionError, match="no usable intrinsics"):
        camera_info_msg_to_intrinsics(PinholeIntrinsicsMsg(640, 480, 0.0))  # uncalibrated: K = 0
    with pytest.raises(ConversionError, match="hfov_deg"):
        PinholeIntrinsics.from_hfov(640, 480, 180.0)


class PinholeIntrinsicsMsg:
    """A hand-made CameraInfo double (duck typing: width, height, k)."""

    def __init__(self, width: int, height: int, fx: float) -> None:
        self.width, self.height, self.k = width, height, [fx, 0.0, width / 2, 0.0, fx, height / 2, 0.0, 0.0, 1.0]


def test_altitude_agl_float64_round_trip_and_bad_values_refused(ts):
    from types import SimpleNamespace

    from edge_geoloc.interop import altitude_agl_to_float64_msg, float64_msg_to_altitude_agl_m

    msg = cdr_round_trip(ts, altitude_agl_to_float64_msg(RosbagsFactory(ts), 87.25))
    assert float64_msg_to_altitude_agl_m(msg) == 87.25
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ConversionError, match="height above ground"):
            float64_msg_to_altitude_agl_m(SimpleNamespace(data=bad))


def test_gnss_velocity_twist_round_trip_and_both_driver_message_types(ts):
    factory = RosbagsFactory(ts)
    fix = GnssFix(stamp_s=5.5, lat_deg=52.0, lon_deg=4.0, alt_m=0.0, speed_mps=12.0, course_rad=math.radians(120))
    velocity = twist_msg_to_gnss_velocity(cdr_round_trip(ts, gnss_to_twist_msg(factory, fix)))
    assert (velocity.stamp_s, velocity.speed_mps) == (5.5, pytest.approx(12.0))
    assert velocity.course_rad == pytest.approx(math.radians(120))
    twist = factory.new("geometry_msgs/msg/Twist", linear=factory.new("geometry_msgs/msg/Vector3", x=0.0, y=-3.0,
                                                                      z=0.0),
                        angular=factory.new("geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=0.0))
    ublox = factory.new("geometry_msgs/msg/TwistWithCovarianceStamped", header=make_header(factory, 1.0, "gnss"),
                        twist=factory.new("geometry_msgs/msg/TwistWithCovariance", twist=twist,
                                          covariance=np.zeros(36)))
    south = twist_msg_to_gnss_velocity(cdr_round_trip(ts, ublox))
    assert south.speed_mps == pytest.approx(3.0) and south.course_rad == pytest.approx(math.pi)
    assert gnss_to_twist_msg(factory, GnssFix(stamp_s=1.0, lat_deg=52.0, lon_deg=4.0, alt_m=0.0)) is None


def test_gnss_velocity_at_rest_has_no_course_and_nan_is_refused(ts):
    factory = RosbagsFactory(ts)
    msg = gnss_to_twist_msg(factory, GnssFix(stamp_s=1.0, lat_deg=52.0, lon_deg=4.0, alt_m=0.0, speed_mps=0.1,
                                             course_rad=1.0))
    assert twist_msg_to_gnss_velocity(msg).course_rad is None
    msg.twist.linear.x = float("nan")
    with pytest.raises(ConversionError, match="not finite"):
        twist_msg_to_gnss_velocity(msg)

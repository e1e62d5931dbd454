"""
The edge_geoloc ROS 2 node: a thin adapter over edge_geoloc's runtime.

Callbacks convert a message to a library dataclass and hand it over; a worker thread runs
``Pipeline.process(frame, gnss)`` on the newest frame (older ones are dropped and counted) and
the results are converted back to messages. No math and no state machine here: see
edge_geoloc.interop.

Subscribes: ``image`` (sensor_msgs/Image) or ``image/compressed`` (CompressedImage), with
sensor-data QoS; ``gnss/fix`` (NavSatFix); optional ``gnss/vel`` (TwistStamped or
TwistWithCovarianceStamped, ENU m/s: the receiver's Doppler velocity); optional ``heading``
(std_msgs/Float64) or ``imu`` (sensor_msgs/Imu); optional ``altitude_agl`` (std_msgs/Float64,
m); optional ``camera_info`` (sensor_msgs/CameraInfo: a pinhole ground camera's field of view).
The runner keeps their latest values. ``vehicle: car`` runs a ground camera without retrieval
(the patch around the prior).
Publishes: ``geoloc/fix``, ``geoloc/pose``, ``geoloc/visual_fix``, ``/diagnostics``, and
``geoloc/map_origin`` (NavSatFix, transient local): the WGS84 origin of the ENU ``map`` frame,
once it is known and whenever it changes (REP-105; robot_localization's ``datum`` is
``[latitude, longitude, 0.0]`` of it). Library ``logging`` records go to ``/rosout``.
Services: ``geoloc/start_logging``, ``geoloc/stop_logging`` (std_srvs/Trigger).
"""

from diagnostic_msgs.msg import DiagnosticArray
from edge_geoloc.fieldlog.step import map_patch_of
from edge_geoloc.fieldlog.switch import open_field_logger
from edge_geoloc.interop import (
    AsyncRunner,
    ConversionError,
    GeolocRunner,
    PythonMessageFactory,
    build_diagnostics,
    camera_info_msg_to_intrinsics,
    diagnostics_to_msg,
    float64_msg_to_altitude_agl_m,
    float64_msg_to_heading_rad,
    gnss_to_navsatfix,
    image_msg_to_frame,
    imu_msg_to_heading_rad,
    navsatfix_to_gnss,
    twist_msg_to_gnss_velocity,
)
from edge_geoloc.interop.build import backend_description, build_pipeline
from edge_geoloc.interop.diagnostics import DiagnosticThresholds
from edge_geoloc.interop.outputs import (
    OUTPUT_TYPES,
    TOPIC_DIAGNOSTICS,
    OutputFrames,
    state_to_messages,
)
from edge_geoloc.interop.params import ParameterError
from edge_geoloc.interop.stamps import header_stamp_s
from edge_geoloc.types import CovarianceType, GnssFix
from geometry_msgs.msg import PoseWithCovarianceStamped, TwistStamped, TwistWithCovarianceStamped
import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import MultiThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix
from std_msgs.msg import Float64
from std_srvs.srv import Trigger

from edge_geoloc_ros.parameters import declare_settings
from edge_geoloc_ros.ros_logging import forward_library_logs, stop_forwarding

TOPIC_MAP_ORIGIN = "geoloc/map_origin"
# A message that could not be converted (None is a valid conversion: a NavSatFix without a fix).
_REJECTED = object()

_MSG_CLASSES = {
    "sensor_msgs/msg/NavSatFix": NavSatFix,
    "geometry_msgs/msg/PoseWithCovarianceStamped": PoseWithCovarianceStamped,
    "diagnostic_msgs/msg/DiagnosticArray": DiagnosticArray,
}
_RELIABLE = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
)
_LATEST_IMAGE = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT
)
_LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def _qos(name: str, sensor_profile: QoSProfile) -> QoSProfile:
    return sensor_profile if name == "SENSOR_DATA" else _RELIABLE


class GeolocNode(Node):
    """
    Wire topics and services to edge_geoloc.

    ``pipeline`` and ``field_logger`` may be injected (tests).
    """

    def __init__(self, pipeline=None, field_logger=None, **kwargs) -> None:
        super().__init__("edge_geoloc", **kwargs)
        self.settings = declare_settings(self)
        self._log_handler = forward_library_logs(self.get_logger())
        self.factory = PythonMessageFactory()
        self.frames = OutputFrames(
            self.settings.map_frame, self.settings.base_frame, self.settings.publish_visual_fix
        )
        self.last_state = None
        self.published_origin = None
        pipeline = build_pipeline(self.settings) if pipeline is None else pipeline
        self.field_logger = field_logger or open_field_logger(
            self.settings, map_patch_of(pipeline)
        )
        runner = GeolocRunner(
            pipeline,
            self.settings.max_inference_rate_hz,
            fixed_altitude_agl_m=self.settings.camera_altitude_agl_m or None,
        )
        self.worker = AsyncRunner(
            runner,
            self._publish_result,
            prepare=self._to_frame,
            clock=self._now_s,
            max_age_s=self.settings.max_image_age_s,
        )
        self.outputs = {
            topic: self.create_publisher(_MSG_CLASSES[msgtype], topic, _RELIABLE)
            for topic, msgtype in OUTPUT_TYPES.items()
        }
        self.map_origin = self.create_publisher(NavSatFix, TOPIC_MAP_ORIGIN, _LATCHED)
        self._subscribe()
        self.create_service(Trigger, "geoloc/start_logging", self._start_logging)
        self.create_service(Trigger, "geoloc/stop_logging", self._stop_logging)
        self.create_timer(1.0 / self.settings.diagnostics_rate_hz, self._publish_diagnostics)
        if self.field_logger is not None and self.settings.log_on_start:
            self.field_logger.start()
        self.worker.start()

    def _subscribe(self) -> None:
        s = self.settings
        image_qos = _qos(s.image_qos, _LATEST_IMAGE)
        if s.image_transport == "compressed":
            self.create_subscription(
                CompressedImage, "image/compressed", self._on_image, image_qos
            )
        else:
            self.create_subscription(Image, "image", self._on_image, image_qos)
        self.create_subscription(
            NavSatFix, "gnss/fix", self._on_gnss, _qos(s.gnss_qos, qos_profile_sensor_data)
        )
        velocity_types = {
            "twist": TwistStamped, "twist_with_covariance": TwistWithCovarianceStamped
        }
        if s.gnss_velocity_source in velocity_types:
            self.create_subscription(
                velocity_types[s.gnss_velocity_source], "gnss/vel", self._on_gnss_velocity,
                _qos(s.gnss_qos, qos_profile_sensor_data)
            )
        if s.heading_source == "float64":
            self.create_subscription(Float64, "heading", self._on_heading, qos_profile_sensor_data)
        elif s.heading_source == "imu":
            self.create_subscription(Imu, "imu", self._on_heading, qos_profile_sensor_data)
        if s.altitude_source == "float64":
            self.create_subscription(
                Float64, "altitude_agl", self._on_altitude_agl, qos_profile_sensor_data
            )
        if s.camera_info_source == "camera_info":
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, _RELIABLE)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    # -- callbacks: convert and hand over, never wait on inference --
    def _on_image(self, msg) -> None:
        self.worker.submit(msg, header_stamp_s(msg))

    def _converted(self, convert, msg, what: str):
        """Return ``convert(msg)``, or ``_REJECTED`` (counted, warned) if it fails."""
        try:
            return convert(msg)
        except ConversionError as err:
            self.worker.counters.add("conversion_errors")
            self.get_logger().warning(f"{what} rejected: {err}", throttle_duration_sec=5.0)
            return _REJECTED

    def _on_gnss(self, msg) -> None:
        fix = self._converted(navsatfix_to_gnss, msg, "NavSatFix")
        if fix is _REJECTED:
            return
        self.worker.runner.on_gnss(fix)
        if self.field_logger is not None:
            self.field_logger.on_gnss(fix)

    def _on_gnss_velocity(self, msg) -> None:
        velocity = self._converted(twist_msg_to_gnss_velocity, msg, "GNSS velocity")
        if velocity is not _REJECTED:
            self.worker.runner.on_gnss_velocity(velocity)

    def _on_heading(self, msg) -> None:
        convert = (
            imu_msg_to_heading_rad
            if self.settings.heading_source == "imu"
            else float64_msg_to_heading_rad
        )
        heading_rad = self._converted(convert, msg, "heading")
        if heading_rad is not _REJECTED:
            self.worker.runner.on_heading(heading_rad, self._now_s())

    def _on_altitude_agl(self, msg) -> None:
        altitude_agl_m = self._converted(float64_msg_to_altitude_agl_m, msg, "altitude_agl")
        if altitude_agl_m is not _REJECTED:
            self.worker.runner.on_altitude_agl(altitude_agl_m, self._now_s())

    def _on_camera_info(self, msg) -> None:
        intrinsics = self._converted(camera_info_msg_to_intrinsics, msg, "camera_info")
        if intrinsics is not _REJECTED:
            self.worker.runner.on_camera_info(intrinsics.hfov_deg)

    # -- worker thread --
    def _to_frame(self, msg):
        return image_msg_to_frame(msg, *self.worker.runner.frame_inputs(self._now_s()))

    def _publish_result(self, frame, state) -> None:
        self.last_state = state
        self._publish_map_origin(frame.stamp_s)
        for topic, out in state_to_messages(self.factory, frame, state, self.frames).items():
            self.outputs[topic].publish(out)
        if self.field_logger is not None:
            self.field_logger.on_state(frame, state)

    def _publish_map_origin(self, stamp_s: float) -> None:
        fusion = getattr(self.worker.runner.pipeline, "fusion", None)
        origin = getattr(fusion, "origin", None)
        if origin is None:
            return
        datum = (origin.lat0_deg, origin.lon0_deg, origin.alt0_m)
        if datum == self.published_origin:
            return
        fix = GnssFix(stamp_s, *datum, position_covariance_m2=(0.0,) * 9,
                      covariance_type=CovarianceType.KNOWN)
        self.map_origin.publish(
            gnss_to_navsatfix(self.factory, fix, self.settings.map_frame)
        )
        self.published_origin = datum

    # -- timer and services --
    def _publish_diagnostics(self) -> None:
        state = self.last_state
        pipeline = self.worker.runner.pipeline
        entries = build_diagnostics(
            backend_description(self.settings, pipeline),
            getattr(state, "latency", None),
            getattr(pipeline, "counters", {}),
            bool(state is not None and state.initialized),
            self.worker.counters.snapshot(),
            None if self.field_logger is None else self.field_logger.status(),
            DiagnosticThresholds(
                latency_warn_ms=self.settings.latency_warn_ms,
                min_free_disk_gb=self.settings.log_min_free_gb,
            ),
        )
        self.outputs[TOPIC_DIAGNOSTICS].publish(
            diagnostics_to_msg(self.factory, entries, self._now_s())
        )

    def _start_logging(self, request, response):
        return self._logging_call(response, start=True)

    def _stop_logging(self, request, response):
        return self._logging_call(response, start=False)

    def _logging_call(self, response, start: bool):
        if self.field_logger is None:
            response.success, response.message = (
                False,
                "field logging is disabled: set the log_dir parameter",
            )
            return response
        try:
            response.message = self.field_logger.start() if start else self.field_logger.stop()
            response.success = True
        except (OSError, RuntimeError) as err:
            response.success, response.message = False, str(err)
        return response

    def destroy_node(self) -> None:
        self.worker.stop()
        if self.field_logger is not None:
            self.field_logger.close()
        stop_forwarding(self._log_handler)
        super().destroy_node()


def one_line(err: Exception) -> str:
    """The reason of a refused parameter on one line (rclpy appends the parameter name)."""
    return " ".join(str(err).split())


def main(args=None) -> None:
    rclpy.init(args=args)
    try:
        node = GeolocNode()
    except (ParameterError, ParameterException) as err:  # the reason, without a traceback
        get_logger("edge_geoloc").fatal(one_line(err))
        rclpy.shutdown()
        raise SystemExit(1) from None
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()

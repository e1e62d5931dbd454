"""``edge-geoloc replay-bag BAG -o OUT``: play a rosbag2 (MCAP or sqlite3) through the pipeline into a new bag.

The same conversions, runner and output builder as the ROS node: camera messages (Image or CompressedImage)
become :class:`CameraFrame`, NavSatFix becomes :class:`GnssFix`, an optional heading topic (std_msgs/Float64
rad clockwise from north, or sensor_msgs/Imu) and an optional height-above-ground topic (std_msgs/Float64, m)
are attached to frames (their latest values, kept by the runner); each processed frame's outputs
(``/geoloc/fix``, ``/geoloc/pose``, ``/geoloc/visual_fix``) and periodic ``/diagnostics`` are written at the
camera message's log time, next to a copy of the input topics. Works with any object that has
``process(frame, gnss)``; the CLI builds the real pipeline from the node's parameter file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from edge_geoloc.interop.camera_info import float64_msg_to_altitude_agl_m
from edge_geoloc.interop.diagnostics import DiagnosticThresholds, build_diagnostics, diagnostics_to_msg
from edge_geoloc.interop.factory import ConversionError, RosbagsFactory
from edge_geoloc.interop.images import image_msg_to_frame
from edge_geoloc.interop.navsat import navsatfix_to_gnss
from edge_geoloc.interop.outputs import OUTPUT_TYPES, TOPIC_DIAGNOSTICS, OutputFrames, state_to_messages
from edge_geoloc.interop.pose import float64_msg_to_heading_rad, imu_msg_to_heading_rad
from edge_geoloc.interop.runner import GeolocRunner, SupportsProcess
from edge_geoloc.interop.stamps import ns_to_s

log = logging.getLogger(__name__)
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
NAVSAT_TYPE = "sensor_msgs/msg/NavSatFix"
FLOAT64_TYPE = "std_msgs/msg/Float64"
HEADING_TYPES = {"std_msgs/msg/Float64": float64_msg_to_heading_rad, "sensor_msgs/msg/Imu": imu_msg_to_heading_rad}


class ReplayError(ValueError):
    """The input bag or the options do not allow a replay; the message says what to change."""


@dataclass(frozen=True)
class ReplayOptions:
    image_topic: str | None = None  # None: the bag's only Image/CompressedImage topic
    gnss_topic: str | None = None  # None: the bag's only NavSatFix topic outside /geoloc
    heading_topic: str | None = None  # None: a Float64 topic whose name ends in "heading", if any
    max_rate_hz: float = 0.0  # frames per second of bag time given to the pipeline (0 = all)
    diagnostics_period_s: float = 1.0  # bag time between /diagnostics messages
    copy_inputs: bool = True
    storage: Literal["mcap", "sqlite3"] = "mcap"
    distro: Literal["humble", "jazzy"] = "humble"  # typestore of the written messages
    altitude_agl_m: float | None = None
    frames: OutputFrames = OutputFrames()
    thresholds: DiagnosticThresholds = DiagnosticThresholds()
    altitude_agl_topic: str | None = None  # None: a Float64 topic whose name ends in "altitude_agl", if any


@dataclass
class ReplayReport:
    image_topic: str
    gnss_topic: str | None
    heading_topic: str | None
    altitude_agl_topic: str | None = None
    written: dict[str, int] = field(default_factory=dict)  # messages per output topic
    counters: dict[str, int] = field(default_factory=dict)


def replay_bag(in_bag: str | Path, out_bag: str | Path, pipeline: SupportsProcess,
               options: ReplayOptions = ReplayOptions(), backend: dict[str, str] | None = None) -> ReplayReport:
    """Play ``in_bag`` through ``pipeline`` and write inputs + outputs to the new bag ``out_bag``."""
    from rosbags.highlevel import AnyReader

    out_bag = Path(out_bag)
    check_paths(in_bag, out_bag)
    with AnyReader([Path(in_bag)], default_typestore=typestore_for(options.distro)) as reader:
        topics = _pick_topics(reader.connections, options)
        report = ReplayReport(*topics)
        with open_bag_writer(out_bag, options.storage) as writer:
            _Replay(reader, writer, pipeline, options, report, backend or {}).run()
    return report


def check_paths(in_bag: str | Path, out_bag: str | Path) -> None:
    """Fail before any work when the input is missing or the output would be overwritten."""
    if Path(out_bag).exists():
        raise ReplayError(f"output bag {out_bag} already exists; choose a new path or delete it")
    if not Path(in_bag).exists():
        raise ReplayError(f"input bag {in_bag} not found (give the rosbag2 folder with metadata.yaml)")


def typestore_for(distro: str) -> Any:
    from rosbags.typesys import Stores, get_typestore

    stores = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
    if distro not in stores:
        raise ReplayError(f"distro must be one of {list(stores)}, got {distro!r}")
    return get_typestore(stores[distro])


def open_bag_writer(path: Path, storage: str) -> Any:
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ReplayError(f"storage must be one of {list(plugins)}, got {storage!r}")
    return Writer(path, version=8, storage_plugin=plugins[storage])


def _pick_topics(connections: Sequence[Any], options: ReplayOptions) -> tuple[str, str | None, str | None, str | None]:
    by_topic = {c.topic: c.msgtype for c in connections}
    image = _pick(by_topic, options.image_topic, IMAGE_TYPES, "--image-topic", required=True)
    gnss = _pick(by_topic, options.gnss_topic, (NAVSAT_TYPE,), "--gnss-topic", required=False,
                 exclude_prefix="/geoloc")
    heading = options.heading_topic
    if heading is None:
        named = [t for t, m in by_topic.items() if m == "std_msgs/msg/Float64" and t.endswith("heading")]
        heading = named[0] if len(named) == 1 else None
    elif by_topic.get(heading) not in HEADING_TYPES:
        raise ReplayError(f"heading topic {heading!r} must be one of {list(HEADING_TYPES)}, "
                          f"the bag has {by_topic.get(heading)}")
    return image, gnss, heading, _pick_altitude(by_topic, options.altitude_agl_topic)


def _pick_altitude(by_topic: dict[str, str], wanted: str | None) -> str | None:
    """The height-above-ground topic (std_msgs/Float64, m): the one asked for, else one ending in altitude_agl."""
    if wanted is None:
        named = [t for t, m in by_topic.items() if m == FLOAT64_TYPE and t.endswith("altitude_agl")]
        return named[0] if len(named) == 1 else None
    if by_topic.get(wanted) != FLOAT64_TYPE:
        raise ReplayError(f"altitude topic {wanted!r} must be {FLOAT64_TYPE}, the bag has {by_topic.get(wanted)}")
    return wanted


def _pick(by_topic: dict[str, str], wanted: str | None, types: tuple[str, ...], flag: str, required: bool,
          exclude_prefix: str = "\0") -> str | None:
    if wanted is not None:
        if by_topic.get(wanted) not in types:
            raise ReplayError(f"{flag} {wanted!r}: the bag has it as {by_topic.get(wanted)}, expected {types}")
        return wanted
    found = sorted(t for t, m in by_topic.items() if m in types and not t.startswith(exclude_prefix))
    if len(found) > 1 or (required and not found):
        raise ReplayError(f"cannot choose among {found or 'no'} {'/'.join(types)} topics; pass {flag}. "
                          f"Topics in the bag: {sorted(by_topic)}")
    return found[0] if found else None


class _Replay:
    """One pass over the input bag (the loop of :func:`replay_bag`)."""

    def __init__(self, reader: Any, writer: Any, pipeline: SupportsProcess, options: ReplayOptions,
                 report: ReplayReport, backend: dict[str, str]) -> None:
        self.reader, self.writer, self.options, self.report = reader, writer, options, report
        self.backend = backend
        self.runner = GeolocRunner(pipeline, options.max_rate_hz, fixed_altitude_agl_m=options.altitude_agl_m)
        self.ts = typestore_for(options.distro)
        self.factory = RosbagsFactory(self.ts)
        self.out_connections = {topic: writer.add_connection(_absolute(topic), msgtype, typestore=self.ts)
                                for topic, msgtype in OUTPUT_TYPES.items()}
        self.copies: dict[int, Any] = {}
        self.last_state, self.last_diag_ns = None, None

    def run(self) -> None:
        for connection, t_ns, raw in self.reader.messages():
            if self.options.copy_inputs:
                self._copy(connection, t_ns, raw)
            if connection.topic in (self.report.image_topic, self.report.gnss_topic, self.report.heading_topic,
                                    self.report.altitude_agl_topic):
                self._dispatch(connection, t_ns, self.reader.deserialize(raw, connection.msgtype))
        if self.last_diag_ns is not None:
            self._write_diagnostics(self.last_diag_ns, force=True)
        self.report.counters = self.runner.counters.snapshot()

    def _dispatch(self, connection: Any, t_ns: int, msg: Any) -> None:
        try:
            if connection.topic == self.report.image_topic:
                self._on_image(t_ns, msg)
            elif connection.topic == self.report.gnss_topic:
                self.runner.on_gnss(navsatfix_to_gnss(msg))
            elif connection.topic == self.report.heading_topic:
                self.runner.on_heading(HEADING_TYPES[connection.msgtype](msg), ns_to_s(t_ns))
            else:
                self.runner.on_altitude_agl(float64_msg_to_altitude_agl_m(msg), ns_to_s(t_ns))
        except ConversionError as err:
            self.runner.counters.add("conversion_errors")
            log.warning("skipping a %s message at %.3f s: %s", connection.topic, ns_to_s(t_ns), err)

    def _on_image(self, t_ns: int, msg: Any) -> None:
        frame = image_msg_to_frame(msg, *self.runner.frame_inputs(ns_to_s(t_ns)))
        if not self.runner.accept_frame(frame.stamp_s):
            return
        state = self.runner.process(frame)
        self.last_state = state
        for topic, out in state_to_messages(self.factory, frame, state, self.options.frames).items():
            self._write(topic, t_ns, out)
        self._write_diagnostics(t_ns)

    def _write_diagnostics(self, t_ns: int, force: bool = False) -> None:
        period_ns = int(self.options.diagnostics_period_s * 1e9)
        if not force and self.last_diag_ns is not None and t_ns - self.last_diag_ns < period_ns:
            return
        state = self.last_state
        pipeline = self.runner.pipeline
        entries = build_diagnostics(self.backend, getattr(state, "latency", None),
                                    getattr(pipeline, "counters", {}), bool(state and state.initialized),
                                    self.runner.counters.snapshot(), None, self.options.thresholds)
        self._write(TOPIC_DIAGNOSTICS, t_ns, diagnostics_to_msg(self.factory, entries, ns_to_s(t_ns)))
        self.last_diag_ns = t_ns

    def _write(self, topic: str, t_ns: int, msg: Any) -> None:
        self.writer.write(self.out_connections[topic], t_ns, self.ts.serialize_cdr(msg, msg.__msgtype__))
        self.report.written[_absolute(topic)] = self.report.written.get(_absolute(topic), 0) + 1

    def _copy(self, connection: Any, t_ns: int, raw: bytes) -> None:
        if _absolute(connection.topic) in map(_absolute, OUTPUT_TYPES):
            return  # outputs of an earlier run are replaced by this run's
        out = self.copies.get(connection.id)
        if out is None:
            out = self.copies[connection.id] = self.writer.add_connection(
                connection.topic, connection.msgtype, typestore=self.reader.typestore)
        self.writer.write(out, t_ns, raw)


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edge-geoloc replay-bag", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", help="input rosbag2 folder (MCAP or sqlite3)")
    parser.add_argument("-o", "--output", required=True, help="new rosbag2 folder to write (must not exist)")
    parser.add_argument("--params-file", help="the node's parameter YAML (ros2_ws/.../config/params.yaml)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="set a node parameter, e.g. --param tile_index_path=runs/index (repeatable)")
    parser.add_argument("--image-topic")
    parser.add_argument("--gnss-topic")
    parser.add_argument("--heading-topic")
    parser.add_argument("--altitude-agl-topic", help="std_msgs/Float64 height above ground in metres "
                        "(default: a topic ending in altitude_agl, if there is exactly one)")
    parser.add_argument("--max-rate-hz", type=float, help="default: the max_inference_rate_hz parameter")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--distro", choices=("humble", "jazzy"), default="humble")
    parser.add_argument("--no-copy-inputs", action="store_true", help="write only the outputs")
    parser.add_argument("--report", help="also write the replay report as JSON here")
    return parser.parse_args(argv)


def settings_from_cli(args: argparse.Namespace) -> Any:
    """Node settings from ``--params-file`` then ``--param NAME=VALUE`` (values parsed as YAML)."""
    from edge_geoloc.interop.build import load_node_params_file
    from edge_geoloc.interop.params import settings_from_parameters

    values = load_node_params_file(args.params_file) if args.params_file else {}
    for item in args.param:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ReplayError(f"--param {item!r} is not NAME=VALUE (e.g. --param tile_index_path=runs/index)")
        values[name.strip()] = yaml.safe_load(raw)
    return settings_from_parameters(values)


def main(argv: list[str]) -> int:
    from edge_geoloc.interop.build import backend_description, build_pipeline
    from edge_geoloc.interop.params import ParameterError

    args = _parse_args(argv)
    try:
        check_paths(args.bag, args.output)
        settings = settings_from_cli(args)
        rate = settings.max_inference_rate_hz if args.max_rate_hz is None else args.max_rate_hz
        options = ReplayOptions(args.image_topic, args.gnss_topic, args.heading_topic, rate,
                                copy_inputs=not args.no_copy_inputs, storage=args.storage, distro=args.distro,
                                altitude_agl_m=settings.camera_altitude_agl_m or None,
                                altitude_agl_topic=args.altitude_agl_topic,
                                frames=OutputFrames(settings.map_frame, settings.base_frame,
                                                    settings.publish_visual_fix))
        pipeline = build_pipeline(settings)
        report = replay_bag(args.bag, args.output, pipeline, options, backend_description(settings, pipeline))
    except (ReplayError, ParameterError) as err:
        print(f"edge-geoloc replay-bag: {err}", file=sys.stderr)
        return 2
    text = json.dumps(report.__dict__, indent=2)
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n", encoding="utf-8")
    return 0

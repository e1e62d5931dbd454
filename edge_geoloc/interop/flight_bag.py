"""``edge-geoloc flight-to-bag FLIGHT -o BAG``: a flight folder (frames + NMEA) as a rosbag2.

Turns what ``edge-geoloc sim flight`` writes (or a recorded flight in the same layout) into the topics a
drone would publish: ``/camera/image/compressed`` (the JPEG/PNG files as they are, no re-encoding),
``/gnss/fix`` (NavSatFix from the NMEA log, through the same conversions as the node), and, where the flight
measured them on board, ``/heading`` and ``/altitude_agl`` (std_msgs/Float64 per frame) and
``/camera/camera_info`` (once, from ``flight.json``'s camera) -- what scale-aligned localizers need. The bag plays into
the ROS 2 node (``ros2 bag play --clock``) or through ``edge-geoloc replay-bag``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge_geoloc.interop.camera_info import (
    altitude_agl_to_float64_msg,
    flight_intrinsics,
    intrinsics_to_camera_info_msg,
)
from edge_geoloc.interop.factory import RosbagsFactory
from edge_geoloc.interop.navsat import gnss_to_navsatfix
from edge_geoloc.interop.pose import heading_to_float64_msg
from edge_geoloc.interop.replay_bag import ReplayError, open_bag_writer, typestore_for
from edge_geoloc.interop.stamps import make_header, s_to_ns

IMAGE_TOPIC = "/camera/image/compressed"
GNSS_TOPIC = "/gnss/fix"
HEADING_TOPIC = "/heading"
ALTITUDE_TOPIC = "/altitude_agl"
CAMERA_INFO_TOPIC = "/camera/camera_info"
MSG_TYPES = {IMAGE_TOPIC: "sensor_msgs/msg/CompressedImage", GNSS_TOPIC: "sensor_msgs/msg/NavSatFix",
             HEADING_TOPIC: "std_msgs/msg/Float64", ALTITUDE_TOPIC: "std_msgs/msg/Float64",
             CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo"}


def flight_to_bag(flight_dir: str | Path, out_bag: str | Path, distro: str = "humble", storage: str = "mcap",
                  camera_frame_id: str = "camera", gnss_frame_id: str = "gnss") -> dict[str, int]:
    """Write the flight's frames and GNSS fixes, in time order, to the new bag ``out_bag``; counts per topic."""
    from edge_geoloc.runtime.replay import FlightError, read_flight

    if Path(out_bag).exists():
        raise ReplayError(f"output bag {out_bag} already exists; choose a new path or delete it")
    try:
        flight = read_flight(flight_dir)
    except (FlightError, FileNotFoundError) as err:
        raise ReplayError(str(err)) from err
    ts = typestore_for(distro)
    factory = RosbagsFactory(ts)
    records = [(s_to_ns(float(t)), IMAGE_TOPIC, _image_msg(factory, path, float(t), camera_frame_id))
               for path, t in zip(flight.frame_paths, flight.frame_stamps_s, strict=True)]
    records += [(s_to_ns(fix.stamp_s), GNSS_TOPIC, gnss_to_navsatfix(factory, fix, gnss_frame_id))
                for fix in flight.gnss]
    records += _onboard_records(factory, flight, camera_frame_id)
    records.sort(key=lambda record: (record[0], record[1] == IMAGE_TOPIC))  # a frame after what was measured with it
    counts = {topic: 0 for topic in dict.fromkeys(topic for _, topic, _ in records)}
    with open_bag_writer(Path(out_bag), storage) as writer:
        conns = {topic: writer.add_connection(topic, MSG_TYPES[topic], typestore=ts) for topic in counts}
        for t_ns, topic, msg in records:
            writer.write(conns[topic], t_ns, ts.serialize_cdr(msg, msg.__msgtype__))
            counts[topic] += 1
    return counts


def _onboard_records(factory: RosbagsFactory, flight: Any, camera_frame_id: str) -> list[tuple[int, str, Any]]:
    """Heading and height the vehicle measured itself (``sensors.csv``; never the truth), and the camera info."""
    records = []
    sensors = flight.sensors or {}
    stamps = sensors.get("stamp_s")
    for column, topic, to_msg in (("heading_rad", HEADING_TOPIC, heading_to_float64_msg),
                                  ("altitude_agl_m", ALTITUDE_TOPIC, altitude_agl_to_float64_msg)):
        values = sensors.get(column)
        if stamps is None or values is None:
            continue
        records += [(s_to_ns(float(t)), topic, to_msg(factory, float(v)))
                    for t, v in zip(stamps, values, strict=True) if v == v]  # NaN: not measured
    intrinsics = flight_intrinsics(flight.meta)
    if intrinsics is not None and len(flight.frame_stamps_s):
        first_s = float(flight.frame_stamps_s[0])
        records.append((s_to_ns(first_s), CAMERA_INFO_TOPIC,
                        intrinsics_to_camera_info_msg(factory, intrinsics, first_s, camera_frame_id)))
    return records


def _image_msg(factory: RosbagsFactory, path: Path, stamp_s: float, frame_id: str) -> Any:
    fmt = "png" if path.suffix.lower() == ".png" else "jpeg"
    return factory.new("sensor_msgs/msg/CompressedImage", header=make_header(factory, stamp_s, frame_id),
                       format=fmt, data=factory.uint8_array(path.read_bytes()))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edge-geoloc flight-to-bag", description=__doc__.split("\n\n")[0])
    parser.add_argument("flight", help="flight folder (frames/, gnss.nmea; see `edge-geoloc sim flight`)")
    parser.add_argument("-o", "--output", required=True, help="new rosbag2 folder (must not exist)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--distro", choices=("humble", "jazzy"), default="humble")
    args = parser.parse_args(argv)
    try:
        counts = flight_to_bag(args.flight, args.output, args.distro, args.storage)
    except ReplayError as err:
        print(f"edge-geoloc flight-to-bag: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"output": args.output, "messages": counts}, indent=2))
    return 0

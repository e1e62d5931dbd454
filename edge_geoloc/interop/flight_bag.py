"""``edge-geoloc flight-to-bag FLIGHT -o BAG``: a flight folder (frames + NMEA) as a rosbag2.

Turns what ``edge-geoloc sim flight`` writes (or a recorded flight in the same layout) into the topics a
drone would publish: ``/camera/image/compressed`` (the JPEG/PNG files as they are, no re-encoding) and
``/gnss/fix`` (NavSatFix from the NMEA log, through the same conversions as the node). The bag plays into
the ROS 2 node (``ros2 bag play --clock``) or through ``edge-geoloc replay-bag``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge_geoloc.interop.factory import RosbagsFactory
from edge_geoloc.interop.navsat import gnss_to_navsatfix
from edge_geoloc.interop.replay_bag import ReplayError, open_bag_writer, typestore_for
from edge_geoloc.interop.stamps import make_header, s_to_ns

IMAGE_TOPIC = "/camera/image/compressed"
GNSS_TOPIC = "/gnss/fix"


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
    records.sort(key=lambda record: (record[0], record[1]))
    counts = {IMAGE_TOPIC: 0, GNSS_TOPIC: 0}
    with open_bag_writer(Path(out_bag), storage) as writer:
        conns = {IMAGE_TOPIC: writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/CompressedImage", typestore=ts),
                 GNSS_TOPIC: writer.add_connection(GNSS_TOPIC, "sensor_msgs/msg/NavSatFix", typestore=ts)}
        for t_ns, topic, msg in records:
            writer.write(conns[topic], t_ns, ts.serialize_cdr(msg, msg.__msgtype__))
            counts[topic] += 1
    return counts


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

"""rosbag2 ``metadata.yaml`` (version 8, the format Humble and Jazzy read) for one MCAP bag part.

The field log keeps this file valid from the moment a part opens: it is rewritten atomically (temporary
file + rename) after every chunk that reaches the disk, counting only the messages that are there. So a part
cut by SIGKILL or a power loss still has a metadata file ``ros2 bag info`` and rosbags' ``Reader`` accept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from edge_geoloc.fieldlog import messages

VERSION = 8


@dataclass
class TopicCount:
    """Messages of one topic and their first / last bag time (ns)."""

    topic: str
    msgtype: str
    count: int = 0
    first_ns: int | None = None
    last_ns: int | None = None

    def add(self, stamp_ns: int) -> None:
        self.count += 1
        self.first_ns = stamp_ns if self.first_ns is None else min(self.first_ns, stamp_ns)
        self.last_ns = stamp_ns if self.last_ns is None else max(self.last_ns, stamp_ns)

    def merge(self, other: TopicCount) -> None:
        self.count += other.count
        for stamp_ns in (other.first_ns, other.last_ns):
            if stamp_ns is not None:
                self.first_ns = stamp_ns if self.first_ns is None else min(self.first_ns, stamp_ns)
                self.last_ns = stamp_ns if self.last_ns is None else max(self.last_ns, stamp_ns)


def bag_metadata(mcap_name: str, topics: list[TopicCount]) -> dict:
    """The ``rosbag2_bagfile_information`` document for one MCAP file holding ``topics``."""
    firsts = [t.first_ns for t in topics if t.count and t.first_ns is not None]
    lasts = [t.last_ns for t in topics if t.count and t.last_ns is not None]
    start = min(firsts, default=0)
    duration = max(lasts, default=0) - start if firsts else 0
    total = sum(t.count for t in topics)
    store = messages.typestore()
    return {"rosbag2_bagfile_information": {
        "version": VERSION,
        "storage_identifier": "mcap",
        "relative_file_paths": [mcap_name],
        "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": total,
        "topics_with_message_count": [
            {"topic_metadata": {"name": t.topic, "type": t.msgtype, "serialization_format": "cdr",
                                "offered_qos_profiles": "", "type_description_hash": store.hash_rihs01(t.msgtype)},
             "message_count": t.count}
            for t in topics],
        "compression_format": "",
        "compression_mode": "",
        "files": [{"path": mcap_name, "starting_time": {"nanoseconds_since_epoch": start},
                   "duration": {"nanoseconds": duration}, "message_count": total}],
        "custom_data": None,
        "ros_distro": "humble",
    }}


def write_metadata(bag_dir: Path, mcap_name: str, topics: list[TopicCount], fsync: bool = False) -> Path:
    """Write ``bag_dir/metadata.yaml`` atomically (a reader never sees a half-written file)."""
    path = Path(bag_dir) / "metadata.yaml"
    tmp = path.with_name(".metadata.yaml.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        yaml.safe_dump(bag_metadata(mcap_name, topics), f, sort_keys=False)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    return path

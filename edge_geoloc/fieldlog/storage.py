"""One rosbag2 MCAP bag (a *part* of a field log) that stays readable, and described, after a crash.

Written with the ``mcap`` package's public ``Writer`` (profile ``ros2``, ``ros2msg`` schemas from the Humble
typestore, ``cdr`` channels: the layout rosbag2_storage_mcap writes), not with a bag library's private
internals. Crash safety:

- a chunk is closed at ``chunk_bytes`` or on request (:meth:`BagPart.flush_chunk`, ``Writer.flush``), and
  every closed chunk is handed to the operating system (and fsync'ed when asked), so a process killed with
  SIGKILL leaves a file whose complete chunks :func:`edge_geoloc.fieldlog.reader.read_log` reads back;
- ``metadata.yaml`` exists from the moment the part opens and is rewritten (atomically) after every closed
  chunk with the messages that are on disk, so ``ros2 bag info`` answers for a crashed part too.

A crashed part still lacks the MCAP summary and footer; ``edge-geoloc fieldlog recover`` rewrites it into a
complete bag (:func:`edge_geoloc.fieldlog.reader.recover_in_place`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mcap.writer import CompressionType, Writer

from edge_geoloc.fieldlog import messages
from edge_geoloc.fieldlog.bag_metadata import TopicCount, write_metadata

PROFILE = "ros2"
LIBRARY = "edge_geoloc.fieldlog"


class BagPart:
    """An open rosbag2 bag with every topic of docs/interfaces.md registered (ROS 2 Humble types)."""

    def __init__(self, path: Path, chunk_bytes: int, fsync: bool) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=False)
        self.mcap_path = self.path / f"{self.path.name}.mcap"
        self._file = self.mcap_path.open("xb")
        self._fsync = fsync
        self._writer = Writer(self._file, chunk_size=chunk_bytes, compression=CompressionType.NONE)
        self._writer.start(profile=PROFILE, library=LIBRARY)
        self._channels = {topic: self._register(topic, msgtype) for topic, msgtype in messages.TOPIC_TYPES.items()}
        self.messages = 0
        self.chunks_flushed = 0
        self._pending: dict[str, TopicCount] = {}  # messages in the open chunk, per topic
        self._pending_bytes = 0
        self._on_disk = {topic: TopicCount(topic, msgtype) for topic, msgtype in messages.TOPIC_TYPES.items()}
        self._refresh_metadata()

    def _register(self, topic: str, msgtype: str) -> int:
        text, _ = messages.typestore().generate_msgdef(msgtype, ros_version=2)
        schema_id = self._writer.register_schema(name=msgtype, encoding="ros2msg", data=text.encode())
        return self._writer.register_channel(topic=topic, message_encoding="cdr", schema_id=schema_id,
                                             metadata={"offered_qos_profiles": ""})

    @property
    def size_bytes(self) -> int:
        """Bytes in the file plus the chunk still in memory."""
        return self._file.tell() + self._pending_bytes

    def pending_messages(self) -> int:
        return sum(c.count for c in self._pending.values())

    def write(self, topic: str, stamp_s: float, data: bytes) -> None:
        stamp_ns = int(round(stamp_s * 1e9))
        before = self._file.tell()
        self._writer.add_message(self._channels[topic], log_time=stamp_ns, data=data, publish_time=stamp_ns)
        self.messages += 1
        self._pending.setdefault(topic, TopicCount(topic, messages.TOPIC_TYPES[topic])).add(stamp_ns)
        self._pending_bytes += len(data)
        if self._file.tell() != before:  # the writer closed a full chunk (this message is in it)
            self._chunk_written()

    def flush_chunk(self) -> bool:
        """Close the open chunk and hand it to the OS; False when it holds no message."""
        if not self.pending_messages():
            return False
        self._writer.flush()
        self._chunk_written()
        return True

    def close(self) -> None:
        """Write the summary, index and footer, then the final metadata.yaml: a regular rosbag2 bag."""
        self._move_pending_to_disk()
        self._writer.finish()
        self._sync()
        self._file.close()
        self._refresh_metadata()

    def abort(self) -> None:
        """Give up on a bag after an I/O error (what is on disk stays readable chunk by chunk)."""
        with contextlib.suppress(OSError):
            self._file.close()

    # ---- bookkeeping -----------------------------------------------------------------------------------
    def _chunk_written(self) -> None:
        self._sync()
        self.chunks_flushed += 1
        self._move_pending_to_disk()
        self._refresh_metadata()

    def _move_pending_to_disk(self) -> None:
        for topic, pending in self._pending.items():
            self._on_disk[topic].merge(pending)
        self._pending, self._pending_bytes = {}, 0

    def _sync(self) -> None:
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def _refresh_metadata(self) -> None:
        write_metadata(self.path, self.mcap_path.name, list(self._on_disk.values()), fsync=self._fsync)

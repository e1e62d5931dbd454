"""One rosbag2 MCAP bag (a *part* of a field log) whose chunks reach the disk early.

rosbags' MCAP writer keeps the open chunk in memory and writes it when it reaches 1 MiB; the file only gets
its index and ``metadata.yaml`` at ``close()``. :class:`BagPart` adds what crash safety needs: chunks are
also closed at ``chunk_bytes`` or on request (:meth:`flush_chunk`), and every closed chunk is flushed from
Python's buffer to the operating system (and fsync'ed when asked). A process killed with SIGKILL therefore
leaves a file whose complete chunks :func:`edge_geoloc.fieldlog.reader.read_log` reads back. (Relies on
rosbags' ``McapWriter.close_chunk``/``chunk``/``bio``, present in rosbags 0.10 and 0.11.)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapWriter

from edge_geoloc.fieldlog import messages


class _FlushingMcapWriter(McapWriter):
    chunk_bytes = 2**20
    fsync = False
    chunks_flushed = 0

    def write(self, connection, timestamp: int, data: bytes | memoryview) -> None:
        super().write(connection, timestamp, data)
        if self.chunk.bio.tell() >= self.chunk_bytes:
            self.close_chunk()

    def close_chunk(self) -> None:
        super().close_chunk()
        self.bio.flush()
        if self.fsync:
            os.fsync(self.bio.fileno())
        self.chunks_flushed += 1

    def pending_messages(self) -> int:
        return sum(len(v) for v in self.chunk.msgs.values())


class _Writer(Writer):
    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _FlushingMcapWriter}


class BagPart:
    """An open rosbag2 bag with every topic of docs/interfaces.md registered (ROS 2 Humble types)."""

    def __init__(self, path: Path, chunk_bytes: int, fsync: bool) -> None:
        self.path = Path(path)
        self._writer = _Writer(self.path, version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._storage: _FlushingMcapWriter = self._writer.storage  # type: ignore[assignment]
        self._storage.chunk_bytes, self._storage.fsync = chunk_bytes, fsync
        store = messages.typestore()
        self._connections = {topic: self._writer.add_connection(topic, msgtype, typestore=store)
                             for topic, msgtype in messages.TOPIC_TYPES.items()}
        self.messages = 0

    @property
    def mcap_path(self) -> Path:
        return self._storage.path

    @property
    def size_bytes(self) -> int:
        """Bytes in the file plus the chunk still in memory."""
        return self._storage.bio.tell() + self._storage.chunk.bio.tell()

    @property
    def chunks_flushed(self) -> int:
        return self._storage.chunks_flushed

    def write(self, topic: str, stamp_s: float, data: bytes) -> None:
        self._writer.write(self._connections[topic], int(round(stamp_s * 1e9)), data)
        self.messages += 1

    def flush_chunk(self) -> bool:
        """Close the open chunk and hand it to the OS; False when it holds no message."""
        if self._storage.pending_messages() == 0:
            return False
        self._storage.close_chunk()
        return True

    def close(self) -> None:
        """Write the index, statistics and metadata.yaml: the bag is now a regular rosbag2."""
        self._writer.close()

    def abort(self) -> None:
        """Give up on a bag after an I/O error (what is on disk stays readable chunk by chunk)."""
        with contextlib.suppress(OSError):
            self._writer.abort()

"""Configuration of the field logger (rosbag2 MCAP)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class FieldLogConfig:
    """Queue, chunking, rotation and free-space limits of :class:`edge_geoloc.fieldlog.FieldLogger`.

    Crash safety: a chunk is written and flushed to the operating system when it reaches ``chunk_bytes`` or
    is ``flush_interval_s`` old, so a process killed with SIGKILL loses at most that much; ``fsync`` also
    forces it to the storage device (survives a power cut, costs a disk sync per chunk).
    Memory: at most ``queue_size`` records wait for the disk (raw camera images included).
    """

    queue_size: int = 256
    camera_rate_hz: float = 2.0  # frames logged per second of sensor time; 0 logs every frame
    jpeg_quality: int = 90
    chunk_bytes: int = 1 * MIB  # the MCAP writer closes a chunk at this size by itself
    flush_interval_s: float = 1.0
    fsync: bool = False
    max_file_bytes: int = 1024 * MIB  # rotate to a new bag (part) beyond this size ...
    max_file_duration_s: float = 600.0  # ... or this much wall time
    min_free_bytes: int = 512 * MIB  # stop writing (drop, count) while the disk has less free space
    free_space_check_s: float = 1.0
    bag_prefix: str = "fieldlog"
    gnss_frame_id: str = "gnss"
    camera_frame_id: str = "camera"
    map_frame_id: str = "map"

    def __post_init__(self) -> None:
        if self.queue_size < 1 or self.chunk_bytes < 1 or self.max_file_bytes < 1:
            raise ValueError("FieldLogConfig.queue_size, chunk_bytes and max_file_bytes must be >= 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"FieldLogConfig.jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        for name in ("camera_rate_hz", "min_free_bytes", "free_space_check_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"FieldLogConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("flush_interval_s", "max_file_duration_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FieldLogConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.bag_prefix or "/" in self.bag_prefix:
            raise ValueError(f"FieldLogConfig.bag_prefix must be a plain name, got {self.bag_prefix!r}")

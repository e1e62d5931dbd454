"""The field logger: what the runtime saw, written to rosbag2 MCAP by a thread the inference never waits on.

Producers (the pipeline, the ROS node) call ``log_*``; each call does a bounded ``put_nowait`` and returns.
A full queue drops the record and counts it. The writer thread encodes camera frames to JPEG, serialises
ROS 2 messages, writes them, flushes chunks (crash safety, see :mod:`edge_geoloc.fieldlog.storage`), rotates
to a new bag part by size or age, and stops writing (dropping and counting) while free disk space is below
``min_free_bytes``, resuming in a new part when space is back.

Layout: ``OUT/<prefix>_0000/`` (a rosbag2 bag: ``<prefix>_0000.mcap`` + ``metadata.yaml``), then ``_0001``...
Numbering continues after existing parts, so a restart after a crash never overwrites.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import queue
import shutil
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.fieldlog import messages as m
from edge_geoloc.fieldlog.config import FieldLogConfig
from edge_geoloc.fieldlog.storage import BagPart
from edge_geoloc.geo import PatchGeoref
from edge_geoloc.interop.camera_info import (
    PinholeIntrinsics,
    altitude_agl_to_float64_msg,
    intrinsics_to_camera_info_msg,
)
from edge_geoloc.interop.navsat import gnss_to_navsatfix
from edge_geoloc.interop.pose import heading_to_float64_msg
from edge_geoloc.types import CameraFrame, FusedState, GnssFix

log = logging.getLogger(__name__)


@dataclass
class FieldLogCounters:
    """Producer-side counts (enqueued, dropped_queue_full, rate_limited) and writer-side counts."""

    enqueued: int = 0
    dropped_queue_full: int = 0
    rate_limited: int = 0
    written: int = 0
    dropped_low_disk: int = 0
    dropped_io_error: int = 0
    write_errors: int = 0
    encode_errors: int = 0
    chunks_flushed: int = 0
    files: int = 0


@dataclass(frozen=True)
class _Flush:
    done: threading.Event


_STOP = object()


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _close_at_exit(ref: weakref.ref) -> None:
    logger = ref()
    if logger is not None:
        logger.close(timeout_s=10.0)


class FieldLogger:
    """Log camera frames and intrinsics, GNSS fixes, fused states, patch references, headings and heights above
    ground to ``out_dir``.

    The camera intrinsics (``/camera/camera_info``) are written when they first arrive and when they change,
    and again at the start of every new bag part, so each part can be read on its own.
    """

    def __init__(self, out_dir: str | Path, config: FieldLogConfig | None = None,
                 free_bytes: Callable[[Path], int] = _free_bytes, start: bool = True) -> None:
        self.config = config or FieldLogConfig()
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.counters = FieldLogCounters()
        self.parts: list[Path] = []
        self._free_bytes = free_bytes
        self._queue: queue.Queue = queue.Queue(maxsize=self.config.queue_size)
        self._producer_lock = threading.Lock()
        self._last_frame_stamp_s: float | None = None
        self._last_intrinsics: PinholeIntrinsics | None = None
        self._camera_info_record: tuple[float, bytes] | None = None  # writer thread: re-written in each new part
        self._bag: BagPart | None = None
        self._bag_opened_s = 0.0
        self._last_flush_s = time.monotonic()
        self._next_disk_check_s = 0.0
        self._low_disk = False
        self._sha_cache: dict[str, str | None] = {}
        self._chunks_in_closed_parts = 0
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="fieldlog-writer", daemon=True)
        atexit.register(_close_at_exit, weakref.ref(self))  # a forgotten close() still finishes the bag
        if start:
            self.start()

    # ---- producer side: never blocks -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def log_frame(self, frame: CameraFrame) -> bool:
        """Queue a camera frame (JPEG-encoded in the writer thread) unless the rate limit skips it.

        The image is referenced, not copied (a copy costs the caller about a millisecond): like the rest of a
        :class:`CameraFrame`, it must not be modified afterwards.
        """
        period = 1.0 / self.config.camera_rate_hz if self.config.camera_rate_hz > 0 else 0.0
        last = self._last_frame_stamp_s
        if last is not None and 0.0 <= frame.stamp_s - last < period * (1.0 - 1e-6):
            with self._producer_lock:
                self.counters.rate_limited += 1
            return False
        if self._put(("frame", frame.stamp_s, frame.image_rgb)):
            self._last_frame_stamp_s = frame.stamp_s
            return True
        return False

    def log_jpeg(self, stamp_s: float, jpeg: bytes) -> bool:
        """Queue an already encoded JPEG camera frame (no rate limit: the caller chose it)."""
        return self._put(("jpeg", stamp_s, bytes(jpeg)))

    def log_gnss(self, fix: GnssFix) -> bool:
        return self._put(("gnss", fix.stamp_s, fix))

    def log_fused(self, state: FusedState) -> bool:
        return self._put(("fused", state.stamp_s, state))

    def log_heading(self, stamp_s: float, heading_rad: float) -> bool:
        """Heading in radians, clockwise from north."""
        return self._put(("heading", stamp_s, float(heading_rad)))

    def log_altitude_agl(self, stamp_s: float, alt_m: float) -> bool:
        """Height above ground in metres (``/altitude_agl``, std_msgs/Float64; bag stamp = ``stamp_s``)."""
        return self._put(("altitude_agl", stamp_s, float(alt_m)))

    def log_camera_info(self, stamp_s: float, intrinsics: PinholeIntrinsics) -> bool:
        """Camera intrinsics (``/camera/camera_info``): queued only when new or changed; False when unchanged."""
        if intrinsics == self._last_intrinsics or not self._put(("camera_info", stamp_s, intrinsics)):
            return False
        self._last_intrinsics = intrinsics  # set once queued: a dropped one is tried again on the next call
        return True

    def log_patch_ref(self, stamp_s: float, raster_path: str | Path, lat_deg: float, lon_deg: float,
                      size_m: float, px: int, georef: PatchGeoref | None = None) -> bool:
        """The map patch around the coarse fix: where to cut it again later (raster + sha256, centre, size)."""
        ref = {"stamp_s": float(stamp_s), "raster": str(Path(raster_path).resolve()),
               "center_lat_deg": float(lat_deg), "center_lon_deg": float(lon_deg), "size_m": float(size_m),
               "px": int(px),
               "georef": None if georef is None else {**asdict(georef), "affine": list(georef.affine)}}
        return self._put(("patch_ref", stamp_s, ref))

    def _put(self, item: tuple) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._producer_lock:
                self.counters.dropped_queue_full += 1
            return False
        with self._producer_lock:
            self.counters.enqueued += 1
        return True

    # ---- control ------------------------------------------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until everything queued so far is written and its chunk handed to the OS."""
        done = threading.Event()
        try:
            self._queue.put(_Flush(done), timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, finish the current bag (index + metadata.yaml) and stop the thread."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)

    def wait_for(self, predicate: Callable[[FieldLogger], bool], timeout_s: float) -> bool:
        """Block until ``predicate(self)`` holds; re-checked each time the writer thread finishes a step."""
        with self._progress:
            return self._progress.wait_for(lambda: predicate(self), timeout=timeout_s)

    def __enter__(self) -> FieldLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writer thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self.config.flush_interval_s)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if isinstance(item, _Flush):
                    self._flush_chunk()
                    item.done.set()
                elif item is not None:
                    self._write_item(item)
                self._flush_if_due()
                with self._progress:
                    self._progress.notify_all()
        finally:
            self._close_bag()
            with self._progress:
                self._progress.notify_all()

    def _write_item(self, item: tuple) -> None:
        kind, stamp_s, payload = item
        try:
            records = self._encode(kind, stamp_s, payload)
        except Exception:  # one bad record must not stop the logger
            log.exception("field log could not encode a %s record; dropped", kind)
            self.counters.encode_errors += 1
            return
        if not self._writable(len(records)):
            return
        try:
            for topic, data in records:
                self._bag.write(topic, stamp_s, data)
        except OSError as err:
            self._io_failed(err, len(records))
            return
        self.counters.written += len(records)
        if kind == "camera_info":
            self._camera_info_record = (stamp_s, records[0][1])
        self._rotate_if_due()

    def _encode(self, kind: str, stamp_s: float, payload) -> list[tuple[str, bytes]]:
        cfg, factory = self.config, m.factory()
        if kind == "frame":
            payload, kind = encode_jpeg(payload, cfg.jpeg_quality), "jpeg"
        if kind == "jpeg":
            msgs = [(m.CAMERA, m.compressed_image(stamp_s, payload, cfg.camera_frame_id))]
        elif kind == "gnss":
            msgs = [(m.GNSS_FIX, gnss_to_navsatfix(factory, payload, cfg.gnss_frame_id))]
        elif kind == "fused":
            fix, pose = m.fused_state_to_msgs(payload, cfg.gnss_frame_id, cfg.map_frame_id)
            msgs = [(m.FUSED_FIX, fix), (m.FUSED_POSE, pose)]
        elif kind == "heading":
            msgs = [(m.HEADING, heading_to_float64_msg(factory, payload))]
        elif kind == "altitude_agl":
            msgs = [(m.ALTITUDE_AGL, altitude_agl_to_float64_msg(factory, payload))]
        elif kind == "camera_info":
            msgs = [(m.CAMERA_INFO, intrinsics_to_camera_info_msg(factory, payload, stamp_s, cfg.camera_frame_id))]
        else:
            payload["raster_sha256"] = self._raster_sha256(payload["raster"])
            msgs = [(m.PATCH_REF, m.patch_ref_msg(payload))]
        return [(topic, m.serialize(msg, m.TOPIC_TYPES[topic])) for topic, msg in msgs]

    def _raster_sha256(self, path: str) -> str | None:
        if path not in self._sha_cache:
            try:
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                self._sha_cache[path] = digest.hexdigest()
            except OSError:
                self._sha_cache[path] = None
        return self._sha_cache[path]

    def _writable(self, n_records: int) -> bool:
        """Check free space (at most every free_space_check_s) and make sure a bag is open."""
        now_s = time.monotonic()
        if now_s >= self._next_disk_check_s:
            self._next_disk_check_s = now_s + self.config.free_space_check_s
            self._check_disk()
        if self._low_disk:
            self.counters.dropped_low_disk += n_records
            return False
        if self._bag is None and not self._open_bag():
            self.counters.dropped_io_error += n_records
            return False
        return True

    def _check_disk(self) -> None:
        try:
            free = self._free_bytes(self.out_dir)
        except OSError as err:  # the log folder vanished (card removed): treat as full until it is back
            log.error("cannot query free space of %s: %s", self.out_dir, err)
            free = 0
        low = free < self.config.min_free_bytes
        if low and not self._low_disk:
            log.warning("field log paused: %.0f MiB free in %s, below min_free_bytes=%.0f MiB", free / 2**20,
                        self.out_dir, self.config.min_free_bytes / 2**20)
            self._close_bag()
        elif self._low_disk and not low:
            log.info("field log resumed: %.0f MiB free", free / 2**20)
        self._low_disk = low

    def _open_bag(self) -> bool:
        path = self.out_dir / f"{self.config.bag_prefix}_{self._next_part_index():04d}"
        try:
            self._bag = BagPart(path, self.config.chunk_bytes, self.config.fsync)
        except OSError as err:
            log.error("cannot open field log part %s: %s", path, err)
            self.counters.write_errors += 1
            return False
        self._bag_opened_s = time.monotonic()
        self.parts.append(path)
        self.counters.files += 1
        return self._repeat_camera_info()

    def _repeat_camera_info(self) -> bool:
        """Start a new part with the last camera intrinsics written, so that each part is complete on its own."""
        if self._camera_info_record is None:
            return True
        stamp_s, data = self._camera_info_record
        try:
            self._bag.write(m.CAMERA_INFO, stamp_s, data)
        except OSError as err:
            self._io_failed(err, 1)
            return False
        self.counters.written += 1
        return True

    def _next_part_index(self) -> int:
        prefix = f"{self.config.bag_prefix}_"
        taken = [int(p.name[len(prefix):]) for p in self.out_dir.glob(f"{prefix}*") if p.name[len(prefix):].isdigit()]
        return max(taken, default=-1) + 1

    def _rotate_if_due(self) -> None:
        bag, cfg = self._bag, self.config
        if bag is not None and (bag.size_bytes >= cfg.max_file_bytes
                                or time.monotonic() - self._bag_opened_s >= cfg.max_file_duration_s):
            self._close_bag()

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush_s >= self.config.flush_interval_s:
            self._flush_chunk()

    def _flush_chunk(self) -> None:
        self._last_flush_s = time.monotonic()
        if self._bag is None:
            return
        try:
            self._bag.flush_chunk()
            self.counters.chunks_flushed = self._chunks_in_closed_parts + self._bag.chunks_flushed
        except OSError as err:
            self._io_failed(err, 0)

    def _close_bag(self) -> None:
        bag, self._bag = self._bag, None
        if bag is None:
            return
        try:
            bag.close()
        except OSError as err:
            self._io_failed(err, 0, bag)
        self._chunks_in_closed_parts += bag.chunks_flushed
        self.counters.chunks_flushed = self._chunks_in_closed_parts

    def _io_failed(self, err: OSError, n_records: int, bag: BagPart | None = None) -> None:
        """Count the failure, try to finish the bag (saves its pending chunk), else abandon it."""
        log.error("field log write failed (%s); starting a new part", err)
        self.counters.write_errors += 1
        self.counters.dropped_io_error += n_records
        failed_while_closing = bag is not None
        bag = bag or self._bag
        self._bag = None
        if bag is None:
            return
        if not failed_while_closing:
            try:
                bag.close()
                return
            except OSError:
                pass
        bag.abort()


def encode_jpeg(image_rgb: np.ndarray, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image_rgb.shape}")
    return jpeg.tobytes()

"""Feeding the pipeline from message callbacks: pairing, throttling, and a latest-frame worker.

The ROS node and ``replay-bag`` share :class:`GeolocRunner` (which GNSS fix goes with which frame, which
frames are skipped, what is counted). :class:`AsyncRunner` adds the on-board part: callbacks only drop the
newest frame into a one-item :class:`LatestSlot` and return; a worker thread runs the (slow) pipeline on
whatever is newest when it becomes free. A frame replaced before the worker took it is counted as dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from edge_geoloc.interop.factory import ConversionError
from edge_geoloc.interop.navsat import GnssVelocity
from edge_geoloc.types import CameraFrame, FusedState, GnssFix

log = logging.getLogger(__name__)
T = TypeVar("T")

COUNTER_NAMES = (
    "frames_received", "frames_throttled", "frames_dropped", "frames_stale", "frames_processed", "process_errors",
    "gnss_received", "gnss_no_fix", "gnss_superseded", "gnss_velocity_received", "gnss_velocity_paired",
    "conversion_errors",
)
VELOCITY_PAIRING_S = 0.25  # a velocity goes with the fix of the same receiver epoch: stamps this close


class SupportsProcess(Protocol):
    """Anything with the pipeline's ``process(frame, gnss) -> FusedState`` (the runtime's ``Pipeline``)."""

    def process(self, frame: CameraFrame, gnss: GnssFix | None) -> FusedState: ...


class Counters:
    """Thread-safe named counters (reported on ``/diagnostics`` and by ``replay-bag``)."""

    def __init__(self, names: tuple[str, ...] = COUNTER_NAMES) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(names, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class LatestSlot(Generic[T]):
    """A one-item mailbox: ``put`` replaces an item nobody took yet (and says so); ``take`` waits for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when it replaced an item that was never taken."""
        with self._cond:
            replaced = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout_s: float | None = None) -> T | None:
        """The newest item (emptying the slot), or None when closed or after ``timeout_s``."""
        with self._cond:
            self._cond.wait_for(lambda: self._full or self._closed, timeout=timeout_s)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class GeolocRunner:
    """Pairs each frame with the newest GNSS fix not yet used, throttles frames by stamp, counts everything.

    A GNSS fix is given to the pipeline once, with the next processed frame; a fix replaced by a newer one
    before any frame came is counted as superseded. ``max_rate_hz`` skips frames whose stamp is closer than
    ``1 / max_rate_hz`` to the last accepted frame (0 = no limit); a stamp going backwards (a bag restarted)
    resets the throttle.

    A GNSS velocity (``gnss/vel``, :meth:`on_gnss_velocity`) from the fix's own receiver epoch (stamps within
    ``VELOCITY_PAIRING_S``) is attached to that fix, whichever of the two arrives first (``speed_mps`` /
    ``course_rad``, as RMC gives them in the NMEA path), so the filter gets the Doppler velocity.

    It also keeps the latest heading (rad clockwise from north) and height above ground (m) received on their
    own topics, which :meth:`frame_inputs` hands to each frame; ``fixed_altitude_agl_m`` is used until a
    measured height arrives (None = unknown). A measurement given with its stamp is handed on only while it is
    at most ``max_sensor_age_s`` older than the frame (0 = never expires); a stale one becomes None (counted
    ``heading_stale`` / ``altitude_stale``), so a dead compass cannot misalign every later frame.
    """

    def __init__(self, pipeline: SupportsProcess, max_rate_hz: float = 0.0, counters: Counters | None = None,
                 fixed_altitude_agl_m: float | None = None, max_sensor_age_s: float = 2.0) -> None:
        if max_rate_hz < 0:
            raise ValueError(f"max_rate_hz must be >= 0 (0 = unlimited), got {max_rate_hz}")
        if fixed_altitude_agl_m is not None and not fixed_altitude_agl_m >= 0:
            raise ValueError(f"fixed_altitude_agl_m must be >= 0 or None (unknown), got {fixed_altitude_agl_m}")
        if not max_sensor_age_s >= 0:
            raise ValueError(f"max_sensor_age_s must be >= 0 (0 = never expires), got {max_sensor_age_s}")
        self.pipeline = pipeline
        self.heading_rad: float | None = None
        self.hfov_deg: float | None = None  # from camera_info, when the node subscribes to it
        self.altitude_agl_m: float | None = fixed_altitude_agl_m
        self.max_sensor_age_s = max_sensor_age_s
        self._measured_s: dict[str, float | None] = {"heading": None, "altitude": None}
        self.min_period_s = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self.counters = counters or Counters()
        self._lock = threading.Lock()
        self._pending_gnss: GnssFix | None = None
        self._last_velocity: GnssVelocity | None = None
        self._last_accepted_s: float | None = None

    def on_gnss(self, fix: GnssFix | None) -> None:
        """A converted NavSatFix; ``None`` means the receiver reported no fix."""
        self.counters.add("gnss_received")
        if fix is None:
            self.counters.add("gnss_no_fix")
            return
        with self._lock:
            if self._pending_gnss is not None:
                self.counters.add("gnss_superseded")
            self._pending_gnss = self._with_velocity(fix, self._last_velocity)

    def on_gnss_velocity(self, velocity: GnssVelocity) -> None:
        """A converted ``gnss/vel`` message: attached to the waiting fix of its epoch, or kept for the next one."""
        self.counters.add("gnss_velocity_received")
        with self._lock:
            self._last_velocity = velocity
            if self._pending_gnss is not None:
                self._pending_gnss = self._with_velocity(self._pending_gnss, velocity)

    def _with_velocity(self, fix: GnssFix, velocity: GnssVelocity | None) -> GnssFix:
        if (velocity is None or fix.speed_mps is not None
                or abs(velocity.stamp_s - fix.stamp_s) > VELOCITY_PAIRING_S):
            return fix
        self.counters.add("gnss_velocity_paired")
        return dataclasses.replace(fix, speed_mps=velocity.speed_mps, course_rad=velocity.course_rad)

    def on_heading(self, heading_rad: float, stamp_s: float | None = None) -> None:
        """The latest measured heading (a converted ``heading`` Float64 or ``imu`` message), measured at
        ``stamp_s`` (receive or bag time; None = timeless)."""
        self.heading_rad = float(heading_rad)
        self._measured_s["heading"] = stamp_s

    def on_altitude_agl(self, altitude_agl_m: float, stamp_s: float | None = None) -> None:
        """The latest measured height above ground (a converted ``altitude_agl`` Float64), see :meth:`on_heading`."""
        self.altitude_agl_m = float(altitude_agl_m)
        self._measured_s["altitude"] = stamp_s

    def on_camera_info(self, hfov_deg: float) -> None:
        """The camera's calibrated horizontal field of view (a converted ``CameraInfo``), handed to the pipeline
        when it takes one (``set_camera_hfov``); repeated identical messages change nothing."""
        set_hfov = getattr(self.pipeline, "set_camera_hfov", None)
        if set_hfov is not None and hfov_deg != self.hfov_deg:
            set_hfov(hfov_deg)
        self.hfov_deg = hfov_deg

    def frame_inputs(self, stamp_s: float | None = None) -> tuple[float | None, float | None]:
        """(heading_rad, altitude_agl_m) for a :class:`CameraFrame` taken at ``stamp_s``; None where unknown or
        stale."""
        return (self._fresh("heading", self.heading_rad, stamp_s),
                self._fresh("altitude", self.altitude_agl_m, stamp_s))

    def _fresh(self, name: str, value: float | None, frame_s: float | None) -> float | None:
        measured_s = self._measured_s[name]
        if value is None or measured_s is None or frame_s is None or self.max_sensor_age_s == 0:
            return value
        if frame_s - measured_s > self.max_sensor_age_s:
            self.counters.add(f"{name}_stale")
            return None
        return value

    def accept_frame(self, stamp_s: float) -> bool:
        """Count a received frame; False when the rate limit skips it."""
        self.counters.add("frames_received")
        with self._lock:
            last = self._last_accepted_s
            if last is not None and last <= stamp_s < last + self.min_period_s:
                self.counters.add("frames_throttled")
                return False
            self._last_accepted_s = stamp_s
            return True

    def process(self, frame: CameraFrame) -> FusedState:
        """Run the pipeline on ``frame`` with the pending GNSS fix (which is then consumed)."""
        with self._lock:
            gnss, self._pending_gnss = self._pending_gnss, None
        state = self.pipeline.process(frame, gnss)
        self.counters.add("frames_processed")
        return state


class AsyncRunner:
    """Runs :meth:`GeolocRunner.process` on a worker thread over a latest-frame slot.

    ``submit(item, stamp_s)`` never blocks: it applies the rate limit and drops the item into the slot. The
    item is whatever is cheapest to hand over (the node passes the raw message); ``prepare`` turns it into a
    :class:`CameraFrame` on the worker thread, so frames that get dropped are never decoded. ``clock``
    (seconds, same time base as stamps) and ``max_age_s`` drop items already stale when the worker gets to
    them (0 = never). Results go to ``on_result`` on the worker thread; a conversion error, pipeline or
    publisher exception is logged and counted, and the worker goes on with the next frame.
    """

    def __init__(self, runner: GeolocRunner, on_result: Callable[[CameraFrame, FusedState], Any],
                 prepare: Callable[[Any], CameraFrame] | None = None, clock: Callable[[], float] | None = None,
                 max_age_s: float = 0.0) -> None:
        self.runner, self.on_result = runner, on_result
        self.prepare = prepare or (lambda item: item)
        self.clock, self.max_age_s = clock, max_age_s
        self.slot: LatestSlot[tuple[float, Any]] = LatestSlot()
        self._thread = threading.Thread(target=self._loop, name="edge_geoloc-worker", daemon=True)

    @property
    def counters(self) -> Counters:
        return self.runner.counters

    def start(self) -> AsyncRunner:
        self._thread.start()
        return self

    def submit(self, item: Any, stamp_s: float | None = None) -> None:
        """Offer a frame (callback thread): throttled ones are skipped, an untaken older one is dropped."""
        stamp_s = item.stamp_s if stamp_s is None else stamp_s
        if self.runner.accept_frame(stamp_s) and self.slot.put((stamp_s, item)):
            self.counters.add("frames_dropped")

    def stop(self, timeout_s: float = 5.0) -> None:
        self.slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while (entry := self.slot.take()) is not None:
            stamp_s, item = entry
            if self.clock and self.max_age_s > 0 and self.clock() - stamp_s > self.max_age_s:
                self.counters.add("frames_stale")
                continue
            self._handle(stamp_s, item)

    def _handle(self, stamp_s: float, item: Any) -> None:
        try:
            frame = self.prepare(item)
        except ConversionError as err:
            log.warning("dropping a camera message at %.3f s: %s", stamp_s, err)
            self.counters.add("conversion_errors")
            return
        try:
            self.on_result(frame, self.runner.process(frame))
        except Exception:  # a bad frame must not kill the node: log, count, go on
            log.exception("pipeline or publisher failed on frame at %.3f s", stamp_s)
            self.counters.add("process_errors")

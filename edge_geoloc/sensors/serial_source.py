"""GNSS fixes from a receiver on a serial port (pyserial), in a background thread that survives unplugging.

The thread opens ``config.port`` at ``config.baud_rate``, reads whatever bytes arrive (each read waits at most
``read_timeout_s``), and decodes them with :class:`NmeaReader`. When the port errors (USB receiver unplugged,
pseudo-terminal closed) it counts a disconnect, closes the port and retries opening it, waiting
``reconnect_interval_s`` and doubling up to ``reconnect_max_interval_s``; a port that stays quiet for
``silence_timeout_s`` gets its pending epoch flushed and a timeout counted. Fixes go to an optional callback
and a bounded queue (oldest dropped and counted when nobody reads it).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

import serial

from edge_geoloc.sensors.config import GnssConfig
from edge_geoloc.sensors.reader import GnssCounters, NmeaReader
from edge_geoloc.types import GnssFix

log = logging.getLogger(__name__)


class SerialGnssSource:
    """Read NMEA from a serial port in a thread. Use as a context manager, or call start()/stop()."""

    def __init__(self, config: GnssConfig | None = None, on_fix: Callable[[GnssFix], None] | None = None) -> None:
        self.config = config or GnssConfig()
        self.on_fix = on_fix
        self.reader = NmeaReader(self.config)
        self.latest: GnssFix | None = None
        self.is_connected = False
        self._fixes: queue.Queue[GnssFix] = queue.Queue(maxsize=self.config.fix_queue_size)
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._port: serial.Serial | None = None

    @property
    def counters(self) -> GnssCounters:
        return self.reader.counters

    def start(self) -> SerialGnssSource:
        if self._thread is not None:
            raise RuntimeError("SerialGnssSource already started")
        self._thread = threading.Thread(target=self._run, name="gnss-serial", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and close the port (waits at most ``timeout_s``)."""
        self._stop.set()
        port = self._port
        if port is not None:
            with contextlib.suppress(AttributeError, OSError, serial.SerialException):
                port.cancel_read()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> SerialGnssSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def get(self, timeout_s: float | None = None) -> GnssFix | None:
        """The oldest fix not read yet, waiting at most ``timeout_s`` (None: forever); None on timeout."""
        try:
            return self._fixes.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def wait_for(self, predicate: Callable[[SerialGnssSource], bool], timeout_s: float) -> bool:
        """Block until ``predicate(self)`` holds (re-checked after every read, connect and disconnect)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout=timeout_s)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _run(self) -> None:
        wait_s = self.config.reconnect_interval_s
        while not self._stop.is_set():
            port = self._open()
            if port is None:
                self._stop.wait(wait_s)
                wait_s = min(2.0 * wait_s, self.config.reconnect_max_interval_s)
                continue
            wait_s = self.config.reconnect_interval_s
            try:
                self._read_until_error(port)
            finally:
                self._close(port)

    def _open(self) -> serial.Serial | None:
        cfg = self.config
        try:
            port = serial.Serial(port=cfg.port, baudrate=cfg.baud_rate, timeout=cfg.read_timeout_s)
        except (serial.SerialException, OSError, ValueError) as err:
            if self.counters.open_failures == 0:
                log.warning("cannot open GNSS port %s (%s); retrying", cfg.port, err)
            self.counters.open_failures += 1
            self._notify()
            return None
        if self.counters.disconnects > 0:
            self.counters.reconnects += 1
            log.info("GNSS port %s reopened", cfg.port)
        self._port, self.is_connected = port, True
        self._notify()
        return port

    def _close(self, port: serial.Serial) -> None:
        self._port, self.is_connected = None, False
        with contextlib.suppress(serial.SerialException, OSError):
            port.close()
        self._deliver(self.reader.flush())
        self._notify()

    def _read_until_error(self, port: serial.Serial) -> None:
        last_data_s = time.monotonic()
        while not self._stop.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError, TypeError) as err:
                if not self._stop.is_set():
                    self.counters.disconnects += 1
                    log.warning("GNSS port %s lost (%s); reconnecting", self.config.port, err)
                return
            now_s = time.monotonic()
            if data:
                last_data_s = now_s
                self._deliver(self.reader.feed(data))
            elif now_s - last_data_s >= self.config.silence_timeout_s:
                self.counters.timeouts += 1
                last_data_s = now_s
                log.warning("no NMEA data on %s for %.1f s", self.config.port, self.config.silence_timeout_s)
                self._deliver(self.reader.flush())

    def _deliver(self, fixes: list[GnssFix]) -> None:
        for fix in fixes:
            self.latest = fix
            self._enqueue(fix)
            if self.on_fix is not None:
                try:
                    self.on_fix(fix)
                except Exception:  # a consumer's bug must not stop GNSS input
                    log.exception("GNSS on_fix callback failed")
        self._notify()  # counters changed even without a fix (rejections)

    def _enqueue(self, fix: GnssFix) -> None:
        while True:
            try:
                self._fixes.put_nowait(fix)
                return
            except queue.Full:
                try:
                    self._fixes.get_nowait()
                    self.counters.dropped_fixes += 1
                except queue.Empty:
                    pass

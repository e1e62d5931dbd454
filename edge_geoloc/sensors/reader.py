"""NMEA byte stream -> :class:`GnssFix` list, with every rejection counted; and a log-file reader.

:class:`NmeaReader` takes bytes in whatever pieces a serial port or file returns them, splits them into lines,
parses each (:mod:`edge_geoloc.sensors.nmea`), merges epochs (:mod:`edge_geoloc.sensors.epoch`) and never
raises on bad input. Every line ends up in exactly one counter: ``sentences`` (a GGA/RMC/GST/GSA that was
used), ``ignored`` (a valid sentence of another type) or ``rejected[reason]``; epochs that give no fix are
counted in ``rejected`` too (``no_position``, ``out_of_order``, ``time_jump``, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge_geoloc.sensors.config import GnssConfig
from edge_geoloc.sensors.epoch import EpochAssembler
from edge_geoloc.sensors.nmea import Rejected, parse_line
from edge_geoloc.types import GnssFix

log = logging.getLogger(__name__)

LINE_REASONS = frozenset({"empty", "too_long", "not_ascii", "garbled", "checksum", "truncated", "non_finite",
                          "out_of_range", "no_time"})


@dataclass
class GnssCounters:
    """What the GNSS input saw; mutable, read by diagnostics."""

    bytes_in: int = 0
    lines: int = 0
    sentences: int = 0
    ignored: int = 0
    fixes: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    late_sentences: int = 0
    time_resyncs: int = 0
    timeouts: int = 0
    disconnects: int = 0
    reconnects: int = 0
    open_failures: int = 0
    dropped_fixes: int = 0

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def line_rejections(self) -> int:
        return sum(n for reason, n in self.rejected.items() if reason in LINE_REASONS)

    def as_dict(self) -> dict[str, int]:
        flat = {k: v for k, v in vars(self).items() if isinstance(v, int)}
        flat.update({f"rejected_{k}": v for k, v in sorted(self.rejected.items())})
        return flat


class NmeaReader:
    """Incremental NMEA 0183 decoder: ``feed(bytes) -> [GnssFix]``; ``flush()`` at end of input."""

    def __init__(self, config: GnssConfig | None = None) -> None:
        self.config = config or GnssConfig()
        self.counters = GnssCounters()
        self._assembler = EpochAssembler(self.config)
        self._buffer = bytearray()
        self._overflowing = False

    def feed(self, data: bytes) -> list[GnssFix]:
        """Decode a piece of the byte stream; return the fixes it completed."""
        self.counters.bytes_in += len(data)
        self._buffer += data
        fixes: list[GnssFix] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._overflowing:  # the tail of a line already rejected as too long
                self._overflowing = False
                start = line.rfind(b"$")
                if start < 0:
                    continue
                line = line[start:]  # a sentence began inside the overlong run
            fixes += self.feed_line(line)
        self._guard_overflow()
        return fixes

    def feed_line(self, line: bytes | str) -> list[GnssFix]:
        """Decode one complete line (no newline needed)."""
        if isinstance(line, str):
            line = line.encode("utf-8", errors="replace")
        self.counters.lines += 1
        start = line.rfind(b"$")
        if start > 0:  # bytes were lost: the line holds a fragment, then a new sentence
            self._reject(Rejected("truncated", "fragment before '$'"))
            self.counters.lines += 1
            line = line[start:]
        parsed = parse_line(line, self.config.max_sentence_len)
        if isinstance(parsed, Rejected):
            self._reject(parsed)
            return []
        self.counters.sentences += 1
        return self._collect(self._assembler.add(parsed))

    def flush(self) -> list[GnssFix]:
        """End of input or a quiet line: decode a last unterminated line and close the pending epoch."""
        fixes: list[GnssFix] = []
        if self._buffer and not self._overflowing:
            fixes += self.feed_line(bytes(self._buffer))
        self._buffer.clear()
        self._overflowing = False
        return fixes + self._collect(self._assembler.flush())

    def _guard_overflow(self) -> None:
        """Bound the buffer when no line end comes; keep a sentence that started near its end."""
        limit = self.config.max_sentence_len + 2
        if len(self._buffer) <= limit:
            return
        if not self._overflowing:
            self._reject(Rejected("too_long", f"{len(self._buffer)} bytes without a line end"))
            self.counters.lines += 1
        start = self._buffer.rfind(b"$")
        if start > 0 and len(self._buffer) - start <= limit:
            del self._buffer[:start]
            self._overflowing = False
        else:
            self._buffer.clear()
            self._overflowing = True

    def _collect(self, results: list) -> list[GnssFix]:
        fixes = []
        for item in results:
            if isinstance(item, Rejected):
                self._reject(item)
            else:
                fixes.append(item)
        self.counters.fixes += len(fixes)
        self.counters.late_sentences = self._assembler.late_sentences
        self.counters.time_resyncs = self._assembler.time_resyncs
        return fixes

    def _reject(self, rejected: Rejected) -> None:
        if rejected.reason.startswith("ignored:"):
            self.counters.ignored += 1
            return
        self.counters.rejected[rejected.reason] = self.counters.rejected.get(rejected.reason, 0) + 1
        log.debug("NMEA rejected (%s): %s", rejected.reason, rejected.detail)


def read_nmea_file(path: str | Path, config: GnssConfig | None = None,
                   reader: NmeaReader | None = None) -> Iterator[GnssFix]:
    """Yield the fixes of an NMEA log file (one sentence per line), rejecting bad lines as a live port would.

    Pass ``reader`` to read its counters afterwards.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NMEA log not found: {path} (expected a text file of $GPGGA/$GPRMC/... lines)")
    reader = reader or NmeaReader(config)
    with path.open("rb") as f:
        while chunk := f.read(65536):
            yield from reader.feed(chunk)
    yield from reader.flush()

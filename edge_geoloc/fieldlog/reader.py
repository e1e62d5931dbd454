"""Read field logs back, including files cut short by a crash; rewrite a cut file as a complete bag.

:func:`read_log` streams MCAP records front to back with mcap's non-seeking ``StreamReader``, so it needs
neither the summary section nor ``metadata.yaml``, which a killed process never wrote. A truncated file
yields every message of every complete chunk and then stops; the :class:`ReadReport` says so.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mcap.exceptions import McapError
from mcap.records import Channel, Footer, Message, Schema
from mcap.stream_reader import StreamReader

from edge_geoloc.fieldlog import messages as m
from edge_geoloc.fieldlog.storage import BagPart

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogRecord:
    """One message: topic, ROS type name, bag time stamp (s) and the deserialised message."""

    topic: str
    msgtype: str
    stamp_s: float
    msg: object
    raw: bytes = field(repr=False, default=b"")


@dataclass
class ReadReport:
    """What a read found, per file: messages read and whether the file ended cleanly (has its footer)."""

    files: list[Path] = field(default_factory=list)
    messages: int = 0
    complete: dict[str, bool] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def truncated_files(self) -> list[str]:
        return [name for name, ok in self.complete.items() if not ok]


def mcap_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The ``.mcap`` files of MCAP files, bag folders, or folders of bag parts, in name order."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    found: list[Path] = []
    for item in map(Path, items):
        if item.is_file() and item.suffix == ".mcap":
            found.append(item)
        elif item.is_dir():
            found += sorted(item.glob("*.mcap")) or sorted(item.glob("*/*.mcap"))
        else:
            raise FileNotFoundError(f"{item}: not an .mcap file, a bag folder or a folder of bags")
    if not found:
        raise FileNotFoundError(f"no .mcap file under {', '.join(map(str, items))}")
    return found


def read_log(paths: str | Path | Iterable[str | Path], topics: Iterable[str] | None = None,
             report: ReadReport | None = None, decode: bool = True) -> Iterator[LogRecord]:
    """Yield the messages of one or more logs in file order (optionally only ``topics``)."""
    wanted = set(topics) if topics is not None else None
    report = report if report is not None else ReadReport()
    for path in mcap_files(paths):
        report.files.append(path)
        yield from _read_file(path, wanted, report, decode)


def _read_file(path: Path, wanted: set[str] | None, report: ReadReport, decode: bool) -> Iterator[LogRecord]:
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    report.complete[str(path)] = False
    with path.open("rb") as f:
        try:
            for record in StreamReader(f, skip_magic=False).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    item = _to_record(record, channels, schemas, wanted, decode)
                    if item is not None:
                        report.messages += 1
                        yield item
                elif isinstance(record, Footer):
                    report.complete[str(path)] = True
        except (McapError, EOFError, struct.error, ValueError) as err:
            report.errors[str(path)] = f"{type(err).__name__}: {err}"
            log.warning("%s ends early (%s): read %d messages up to the last complete chunk", path,
                        type(err).__name__, report.messages)


def _to_record(record: Message, channels: dict, schemas: dict, wanted: set[str] | None, decode: bool):
    channel = channels.get(record.channel_id)
    if channel is None or (wanted is not None and channel.topic not in wanted):
        return None
    msgtype = schemas[channel.schema_id].name if channel.schema_id in schemas else m.TOPIC_TYPES[channel.topic]
    data = bytes(record.data)
    msg = m.deserialize(data, msgtype) if decode else None
    return LogRecord(channel.topic, msgtype, record.log_time * 1e-9, msg, data)


@dataclass(frozen=True)
class RecoveryReport:
    source: list[Path]
    output: Path
    messages: int
    was_truncated: bool


def recover_log(source: str | Path, out_bag: str | Path, chunk_bytes: int = 2**20) -> RecoveryReport:
    """Copy every readable message of ``source`` (cut or not) into a new, complete bag ``out_bag``.

    The result has its index and ``metadata.yaml``, so ``ros2 bag info`` and rosbags' ``AnyReader`` open it.
    """
    report = ReadReport()
    bag = BagPart(Path(out_bag), chunk_bytes, fsync=False)
    try:
        for record in read_log(source, report=report, decode=False):
            if record.topic in m.TOPIC_TYPES:
                bag.write(record.topic, record.stamp_s, record.raw)
    finally:
        bag.close()
    return RecoveryReport(report.files, Path(out_bag), bag.messages, bool(report.truncated_files))

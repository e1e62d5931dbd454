"""Read field logs back, including files cut short by a crash; rewrite a cut file as a complete bag.

:func:`read_log` streams MCAP records front to back with mcap's non-seeking ``StreamReader``, so it needs
neither the summary section nor ``metadata.yaml``, which a killed process never wrote. A truncated file
yields every message of every complete chunk and then stops; the :class:`ReadReport` says so.
"""

from __future__ import annotations

import logging
import shutil
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


MCAP_MAGIC = b"\x89MCAP0\r\n"


def is_complete(mcap_path: str | Path) -> bool:
    """Whether the file ends with MCAP's closing magic (summary and footer written: a clean close)."""
    path = Path(mcap_path)
    size = path.stat().st_size
    if size < 2 * len(MCAP_MAGIC):
        return False
    with path.open("rb") as f:
        f.seek(size - len(MCAP_MAGIC))
        return f.read() == MCAP_MAGIC


def recover_in_place(log_path: str | Path, keep_cut: bool = True) -> list[RecoveryReport]:
    """Rewrite every cut part of a log (no MCAP footer) as a complete bag, in its own folder.

    Each cut ``PART/PART.mcap`` is replaced by a complete file with every message of its closed chunks, and
    ``PART/metadata.yaml`` by one that counts them; the cut original is kept as ``PART.mcap.cut`` unless
    ``keep_cut`` is false. Complete parts are left alone.
    """
    reports = []
    for mcap_path in mcap_files(log_path):
        if is_complete(mcap_path):
            continue
        part = mcap_path.parent
        staging = part.parent / f".{part.name}.recovering"
        shutil.rmtree(staging, ignore_errors=True)
        report = recover_log(mcap_path, staging / part.name)
        if keep_cut:
            mcap_path.replace(mcap_path.with_name(mcap_path.name + ".cut"))
        (staging / part.name / f"{part.name}.mcap").replace(part / f"{part.name}.mcap")
        (staging / part.name / "metadata.yaml").replace(part / "metadata.yaml")
        shutil.rmtree(staging)
        reports.append(RecoveryReport(report.source, part, report.messages, True))
        log.info("recovered %s: %d messages", part, report.messages)
    return reports


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

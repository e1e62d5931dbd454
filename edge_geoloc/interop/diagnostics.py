"""What the node reports on ``/diagnostics``, built in plain Python, and its ``DiagnosticArray`` form.

:func:`build_diagnostics` turns the runtime's numbers (backend, per-stage latency, pipeline and input
counters, field-logger disk space) into :class:`DiagnosticEntry` records with a level; the node and
``replay-bag`` only convert them with :func:`diagnostics_to_msg`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_geoloc.interop.factory import MessageFactory
from edge_geoloc.interop.stamps import header_stamp_s, make_header
from edge_geoloc.types import PipelineCounters, StageLatency

HARDWARE_ID = "edge_geoloc"


class DiagnosticLevel(enum.IntEnum):
    """Same values as ``diagnostic_msgs/DiagnosticStatus`` levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass(frozen=True)
class DiagnosticEntry:
    name: str
    level: DiagnosticLevel
    message: str
    values: dict[str, str] = field(default_factory=dict)
    hardware_id: str = HARDWARE_ID


@dataclass(frozen=True)
class DiagnosticThresholds:
    latency_warn_ms: float = 500.0  # total per-frame time above which inference is WARN
    drop_warn_fraction: float = 0.5  # dropped / received frames above which input is WARN
    min_free_disk_gb: float = 2.0  # logger free space below which logging is WARN (ERROR at a tenth)


def inference_entry(backend: Mapping[str, Any], latency: StageLatency | None,
                    thresholds: DiagnosticThresholds) -> DiagnosticEntry:
    """Backend and engine in use, and the last frame's per-stage latency in ms."""
    values = {k: str(v) for k, v in backend.items()}
    if latency is None:
        return DiagnosticEntry("edge_geoloc: inference", DiagnosticLevel.STALE, "no frame processed yet", values)
    values.update({f.name: f"{getattr(latency, f.name):.2f}" for f in dataclasses.fields(latency)})
    slow = latency.total_ms > thresholds.latency_warn_ms
    level = DiagnosticLevel.WARN if slow else DiagnosticLevel.OK
    message = f"{latency.total_ms:.1f} ms per frame" + (f" (> {thresholds.latency_warn_ms:g} ms)" if slow else "")
    return DiagnosticEntry("edge_geoloc: inference", level, message, values)


def fusion_entry(counters: PipelineCounters | Mapping[str, int], initialized: bool) -> DiagnosticEntry:
    """Pipeline counters, rejections included (gated GNSS / visual fixes, low confidence, resets)."""
    items = dataclasses.asdict(counters) if dataclasses.is_dataclass(counters) else dict(counters)
    extra = items.pop("extra", {}) or {}
    values = {k: str(v) for k, v in {**items, **extra}.items()}
    level = DiagnosticLevel.OK if initialized else DiagnosticLevel.WARN
    message = "fused estimate available" if initialized else "waiting for a first GNSS or visual fix"
    return DiagnosticEntry("edge_geoloc: fusion", level, message, values)


def input_entry(input_counters: Mapping[str, int], thresholds: DiagnosticThresholds) -> DiagnosticEntry:
    """Frames received, dropped because inference was busy, stale, throttled; conversion rejections."""
    received = int(input_counters.get("frames_received", 0))
    dropped = int(input_counters.get("frames_dropped", 0))
    fraction = dropped / received if received else 0.0
    level = DiagnosticLevel.WARN if fraction > thresholds.drop_warn_fraction else DiagnosticLevel.OK
    message = f"{dropped}/{received} frames dropped ({100 * fraction:.0f}%)"
    return DiagnosticEntry("edge_geoloc: input", level, message, {k: str(v) for k, v in input_counters.items()})


def logger_entry(logger_status: Mapping[str, Any] | None, thresholds: DiagnosticThresholds) -> DiagnosticEntry:
    """Field logger state and free disk space (``free_bytes``) where it writes."""
    if logger_status is None:
        return DiagnosticEntry("edge_geoloc: field logger", DiagnosticLevel.OK, "no field logger configured")
    values = {k: str(v) for k, v in logger_status.items()}
    free_gb = float(logger_status.get("free_bytes", float("inf"))) / 1e9
    level = DiagnosticLevel.OK
    if free_gb < thresholds.min_free_disk_gb:
        level = DiagnosticLevel.ERROR if free_gb < thresholds.min_free_disk_gb / 10 else DiagnosticLevel.WARN
    state = "logging" if logger_status.get("active") else "idle"
    return DiagnosticEntry("edge_geoloc: field logger", level, f"{state}, {free_gb:.1f} GB free", values)


def build_diagnostics(backend: Mapping[str, Any], latency: StageLatency | None,
                      counters: PipelineCounters | Mapping[str, int], initialized: bool,
                      input_counters: Mapping[str, int], logger_status: Mapping[str, Any] | None = None,
                      thresholds: DiagnosticThresholds = DiagnosticThresholds()) -> list[DiagnosticEntry]:
    """All entries of one ``/diagnostics`` publication."""
    return [inference_entry(backend, latency, thresholds), fusion_entry(counters, initialized),
            input_entry(input_counters, thresholds), logger_entry(logger_status, thresholds)]


def diagnostics_to_msg(factory: MessageFactory, entries: list[DiagnosticEntry], stamp_s: float) -> Any:
    """A ``diagnostic_msgs/DiagnosticArray`` (one DiagnosticStatus per entry, values as KeyValue)."""
    statuses = [
        factory.new("diagnostic_msgs/msg/DiagnosticStatus", level=factory.byte(int(e.level)), name=e.name,
                    message=e.message, hardware_id=e.hardware_id,
                    values=[factory.new("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in e.values.items()])
        for e in entries
    ]
    return factory.new("diagnostic_msgs/msg/DiagnosticArray", header=make_header(factory, stamp_s, ""),
                       status=statuses)


def msg_to_diagnostics(msg: Any) -> tuple[float, list[DiagnosticEntry]]:
    """Read a DiagnosticArray back: its stamp and entries."""
    entries = [DiagnosticEntry(str(s.name), DiagnosticLevel(_level(s.level)), str(s.message),
                               {str(kv.key): str(kv.value) for kv in s.values}, str(s.hardware_id))
               for s in msg.status]
    return header_stamp_s(msg), entries


def _level(value: Any) -> int:
    """``level`` is a ``byte``: rosbags gives an int, rclpy a one-byte ``bytes``."""
    return value[0] if isinstance(value, (bytes, bytearray)) else int(value)

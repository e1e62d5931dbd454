"""Read a flight folder for the replay: frames, their stamps, NMEA fixes, on-board measurements, truth.

Layout: see :mod:`edge_geoloc.runtime.replay`. Bad input costs the frame, not the flight: a frame listed
(``frames.csv`` or the frame numbering) but missing, an unparseable CSV row and a heading / height sensor gap
are skipped and counted in :class:`InputCounters`; garbage NMEA lines are rejected and counted by the NMEA
reader. Only a folder that cannot be a flight raises :class:`FlightError` (a one-line message).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_geoloc.runtime.config import RuntimeConfig
from edge_geoloc.sensors import NmeaReader, read_nmea_file
from edge_geoloc.types import GnssFix

log = logging.getLogger(__name__)


class FlightError(ValueError):
    """A flight folder is missing something the replay needs (the message is one line)."""


@dataclass
class InputCounters:
    """Bad input met while reading and replaying a flight: each one skipped, the run goes on."""

    frames_missing: int = 0  # listed in frames.csv / the frame numbering, but no file
    frames_unstamped: int = 0  # a file with no usable stamp (beyond frames.csv, or a garbage stamp)
    frames_corrupt: int = 0  # a file that does not decode as an image
    csv_rows_bad: int = 0  # rows of frames.csv / sensors.csv / truth.csv with unparseable numbers
    sensor_gaps: int = 0  # frames whose heading or (not a car) height measurement was missing or too far away


@dataclass(frozen=True)
class FlightData:
    """What the replay reads from a flight folder."""

    root: Path
    frame_paths: list[Path]
    frame_stamps_s: np.ndarray  # (F,)
    gnss: list[GnssFix]
    truth: dict[str, np.ndarray] | None  # columns of truth.csv as float arrays
    meta: dict
    gnss_reader: dict[str, int]  # the NMEA reader's counters (rejected_<reason>, fixes, lines...)
    sensors: dict[str, np.ndarray] | None = None  # on-board measurements: stamp_s, heading_rad, altitude_agl_m
    input: InputCounters = field(default_factory=InputCounters)


def read_flight(flight_dir: str | Path) -> FlightData:
    """Read frames, NMEA fixes (bad sentences rejected and counted), stamps and truth of a flight folder."""
    root = Path(flight_dir)
    counters = InputCounters()
    files = sorted((root / "frames").glob("*.jpg")) + sorted((root / "frames").glob("*.png"))
    if not files:
        raise FlightError(f"{root}/frames has no .jpg/.png frames; is {root} a flight folder (see "
                          "`edge-geoloc sim flight`)?")
    meta = _read_meta(root)
    truth = _read_csv_columns(root / "truth.csv", counters) if (root / "truth.csv").is_file() else None
    frames, stamps = _stamped_frames(root, files, truth, meta, counters)
    reader = NmeaReader()
    gnss = list(read_nmea_file(root / "gnss.nmea", reader=reader)) if (root / "gnss.nmea").is_file() else []
    offset = float(meta.get("gnss_time_offset_s", 0.0))
    if offset:
        gnss = [_shift(fix, offset) for fix in gnss]
    sensors = _read_sensors(root, meta, counters)
    _log_input_problems(root, counters)
    return FlightData(root, frames, stamps, gnss, truth, meta, reader.counters.as_dict(), sensors, counters)


def _read_meta(root: Path) -> dict:
    path = root / "flight.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FlightError(f"{path} is not valid JSON ({err}); fix or remove it") from None
    if not isinstance(meta, dict):
        raise FlightError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    return meta


def _log_input_problems(root: Path, counters: InputCounters) -> None:
    problems = {k: v for k, v in asdict(counters).items() if v}
    if problems:
        log.warning("%s: bad input skipped while reading: %s", root, problems)


def _frame_index(path: Path, position: int) -> int:
    """A frame's index: its numeric file name (``000042.jpg`` -> 42), else its position in name order."""
    return int(path.stem) if path.stem.isdigit() else position


def _stamped_frames(root: Path, files: list[Path], truth: dict[str, np.ndarray] | None, meta: dict,
                    counters: InputCounters) -> tuple[list[Path], np.ndarray]:
    """The frame files with a stamp, in stamp order; listed-but-absent and unstamped frames counted."""
    by_index = {_frame_index(p, i): p for i, p in enumerate(files)}
    stamp_of = _stamp_table(root, by_index, truth, meta, counters)
    counters.frames_missing += sum(1 for i in stamp_of if i not in by_index)
    kept = [(stamp_of[i], p) for i, p in sorted(by_index.items()) if math.isfinite(stamp_of.get(i, math.nan))]
    counters.frames_unstamped += len(by_index) - len(kept)
    if not kept:
        raise FlightError(f"{root}: none of the {len(files)} frames has a usable stamp (frames.csv, truth.csv or "
                          "flight.json camera_rate_hz)")
    stamps = np.array([s for s, _ in kept], dtype=np.float64)
    if np.any(np.diff(stamps) < 0):
        raise FlightError(f"{root}: frame stamps are not increasing with the frame index; fix frames.csv")
    return [p for _, p in kept], stamps


def _stamp_table(root: Path, by_index: dict[int, Path], truth: dict[str, np.ndarray] | None, meta: dict,
                 counters: InputCounters) -> dict[int, float]:
    """{frame index: stamp_s} of every frame the flight lists (whether its file exists or not)."""
    if (root / "frames.csv").is_file():
        columns = _read_csv_columns(root / "frames.csv", counters)
        if "stamp_s" not in columns:
            raise FlightError(f"{root}/frames.csv has no stamp_s column (expected index,stamp_s)")
        indices = columns["index"] if "index" in columns else np.arange(len(columns["stamp_s"]))
        return {int(i): float(s) for i, s in zip(indices, columns["stamp_s"], strict=True) if math.isfinite(i)}
    if truth is not None and "stamp_s" in truth and len(truth["stamp_s"]) >= max(by_index) + 1:
        return dict(enumerate(map(float, truth["stamp_s"])))  # one truth row per frame
    if "camera_rate_hz" in meta:
        return {i: i / float(meta["camera_rate_hz"]) for i in range(max(by_index) + 1)}
    raise FlightError(f"{root}: cannot tell when frames were taken; add frames.csv (index,stamp_s)")


def _read_sensors(root: Path, meta: dict, counters: InputCounters) -> dict[str, np.ndarray] | None:
    """Heading / height measurements: the file ``flight.json`` declares (``sensors.file``), else the optional
    columns of ``frames.csv``; None when the flight has neither. A declared file that is missing leaves every
    frame without them (a sensor gap at each frame, counted), with a warning."""
    declared = meta.get("sensors", {}).get("file")
    if declared:
        if not (root / declared).is_file():
            log.warning("%s/flight.json declares sensors file %r, which is missing: no heading/height", root,
                        declared)
            return {"stamp_s": np.array([math.nan]), "heading_rad": np.array([math.nan]),
                    "altitude_agl_m": np.array([math.nan])}
        return _read_csv_columns(root / declared, counters)
    if (root / "frames.csv").is_file():
        columns = _read_csv_columns(root / "frames.csv", InputCounters())  # its bad rows are counted once
        if "heading_rad" in columns or "altitude_agl_m" in columns:
            return columns
    return None


def with_flight_camera(cfg: RuntimeConfig, flight: FlightData) -> RuntimeConfig:
    """``cfg`` with ``camera.hfov_deg`` from ``flight.json`` when the config leaves it unknown (0)."""
    hfov = float(flight.meta.get("camera", {}).get("hfov_deg") or 0.0)
    if not hfov or cfg.camera.hfov_deg:
        if hfov and abs(hfov - cfg.camera.hfov_deg) > 1e-6:
            log.warning("camera.hfov_deg=%.2f from the config, flight.json says %.2f", cfg.camera.hfov_deg, hfov)
        return cfg
    return replace(cfg, camera=replace(cfg.camera, hfov_deg=hfov))


def _shift(fix: GnssFix, offset_s: float) -> GnssFix:
    return replace(fix, stamp_s=fix.stamp_s + offset_s)


def _read_csv_columns(path: Path, counters: InputCounters) -> dict[str, np.ndarray]:
    """Numeric columns of a CSV file; an unparseable or non-finite value becomes NaN and its row is counted."""
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.DictReader(f))
    except csv.Error as err:
        raise FlightError(f"{path} is not a CSV file ({err})") from None
    if not rows:
        raise FlightError(f"{path} has no rows")
    columns = {k: np.full(len(rows), math.nan) for k in rows[0] if k}
    for i, row in enumerate(rows):
        bad = False
        for key in columns:
            value = _number(row.get(key))
            bad |= value is None
            columns[key][i] = math.nan if value is None else value
        counters.csv_rows_bad += bad
    return columns


def _number(text: str | None) -> float | None:
    """A finite float, NaN for an empty cell (a measurement known to be missing), None for garbage."""
    if text is None:
        return None
    if text.strip() == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def measured_attitude(flight: FlightData, stamp_s: float,
                      max_gap_s: float | None = None) -> tuple[float | None, float | None]:
    """(heading_rad, altitude_agl_m) measured on board at ``stamp_s`` (interpolated; heading across the
    0/2 pi wrap); None where the flight has no such measurement, or (with ``max_gap_s``) none that close (then
    the pipeline counts a missing sensor)."""
    sensors = flight.sensors
    if sensors is None:
        return None, None
    stamps = sensors.get("stamp_s", flight.frame_stamps_s)
    heading = _interp(stamp_s, stamps, sensors.get("heading_rad"), wrap=True, max_gap_s=max_gap_s)
    return heading, _interp(stamp_s, stamps, sensors.get("altitude_agl_m"), max_gap_s=max_gap_s)


def _interp(stamp_s: float, stamps: np.ndarray, values: np.ndarray | None, wrap: bool = False,
            max_gap_s: float | None = None) -> float | None:
    """Linear interpolation at ``stamp_s`` over the finite measurements; None next to a missing (NaN) one, and
    None when the nearest measurement is more than ``max_gap_s`` away (a sensor gap: no interpolation across)."""
    if values is None:
        return None
    stamped = np.isfinite(stamps)  # a row whose stamp did not parse says nothing about when
    stamps, values = np.asarray(stamps, dtype=np.float64)[stamped], np.array(values, dtype=np.float64)[stamped]
    ok = np.isfinite(values)
    if not ok.any():
        return None
    if max_gap_s is not None and np.min(np.abs(stamps[ok] - stamp_s)) > max_gap_s:
        return None
    if wrap:
        values[ok] = np.unwrap(values[ok])
    out = float(np.interp(stamp_s, stamps, values))
    if not math.isfinite(out):
        return None
    return out % (2 * math.pi) if wrap else out

"""One NMEA 0183 line -> a small typed record (GGA, RMC, GST, GSA), or a named rejection.

Validation happens before pynmea2 sees the line: printable ASCII only, ``$`` + a 5-character address, no
stray ``$`` or ``*``, and a two-digit hex checksum (XOR of every byte between ``$`` and ``*``) that matches.
Every number that is used is checked to be finite and in range. Nothing here raises on bad input: the caller
gets a :class:`Rejected` with a reason that it counts.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import pynmea2

_LINE_RE = re.compile(r"^\$([A-Z][A-Z0-9]{4}),([\x20-\x23\x25-\x29\x2b-\x7e]*)\*([0-9A-Fa-f]{2})$")
SUPPORTED_TYPES = ("GGA", "RMC", "GST", "GSA")
KNOTS_TO_MPS = 1852.0 / 3600.0


@dataclass(frozen=True)
class Rejected:
    """A line that yields nothing, and why (one of :data:`REJECTION_REASONS` or ``ignored:<TYPE>``)."""

    reason: str
    detail: str = ""


REJECTION_REASONS = (
    "empty", "too_long", "not_ascii", "garbled", "checksum", "truncated", "non_finite",
    "out_of_range", "no_position", "no_time",
)


@dataclass(frozen=True)
class Gga:
    time_utc: dt.time
    lat_deg: float | None  # None when the receiver has no position
    lon_deg: float | None
    quality: int
    num_satellites: int
    hdop: float | None
    alt_msl_m: float | None
    geoid_separation_m: float | None


@dataclass(frozen=True)
class Rmc:
    time_utc: dt.time
    valid: bool  # status A
    date: dt.date | None
    speed_mps: float | None
    course_deg: float | None


@dataclass(frozen=True)
class Gst:
    time_utc: dt.time
    sigma_major_m: float | None
    sigma_minor_m: float | None
    major_orientation_deg: float | None  # clockwise from true north
    sigma_lat_m: float | None
    sigma_lon_m: float | None
    sigma_alt_m: float | None


@dataclass(frozen=True)
class Gsa:
    fix_type: int  # 1 no fix, 2 2D, 3 3D
    pdop: float | None
    hdop: float | None
    vdop: float | None


Sentence = Gga | Rmc | Gst | Gsa


def nmea_checksum(body: str) -> int:
    """XOR of the characters between ``$`` and ``*``."""
    value = 0
    for char in body.encode("ascii"):
        value ^= char
    return value


def with_checksum(body: str) -> str:
    """``$<body>*HH`` for a body such as ``GPGGA,123519,...`` (used by simulators and tests)."""
    return f"${body}*{nmea_checksum(body):02X}"


def parse_line(raw: bytes | str, max_len: int = 120) -> Sentence | Rejected:
    """Parse one line (with or without its CR LF) into a sentence record or a rejection."""
    line = _decode(raw)
    if isinstance(line, Rejected):
        return line
    if len(line) > max_len:
        return Rejected("too_long", f"{len(line)} > {max_len} characters")
    checked = _check_frame(line)
    if isinstance(checked, Rejected):
        return checked
    sentence_type = checked[2:5]
    if sentence_type not in SUPPORTED_TYPES:
        return Rejected(f"ignored:{sentence_type}")
    try:
        msg = pynmea2.parse(line, check=True)
        _check_field_count(msg, sentence_type)
        return _CONVERTERS[sentence_type](msg)
    except _FieldError as err:
        return Rejected(err.reason, str(err))
    except (pynmea2.ParseError, ValueError, TypeError, AttributeError, IndexError) as err:
        return Rejected("garbled", f"{type(err).__name__}: {err}")


def _decode(raw: bytes | str) -> str | Rejected:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            return Rejected("not_ascii")
    line = raw.strip("\r\n")
    if not line.strip():
        return Rejected("empty")
    if not line.isascii():
        return Rejected("not_ascii")
    return line


def _check_frame(line: str) -> str | Rejected:
    """Return the body between ``$`` and ``*`` when the frame and checksum are right."""
    match = _LINE_RE.match(line)
    if match is None:
        if line.startswith("$") and "*" not in line and "$" not in line[1:]:
            return Rejected("truncated", f"no checksum: {line[:20]}")
        return Rejected("garbled", line[:20])
    body = f"{match.group(1)},{match.group(2)}"
    expected, given = nmea_checksum(body), int(match.group(3), 16)
    if expected != given:
        return Rejected("checksum", f"computed {expected:02X}, line says {given:02X}")
    return body


class _FieldError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _opt_float(text: str | None, name: str) -> float | None:
    """``None`` for an empty field; a finite float otherwise (NaN/inf/unparsable are rejections)."""
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise _FieldError("garbled", f"{name}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise _FieldError("non_finite", f"{name}={text!r}")
    return value


def _raw(msg, name: str) -> str:
    """The field's text as sent (pynmea2's typed attributes hide unparsable values)."""
    index = type(msg).name_to_idx[name]
    return msg.data[index] if index < len(msg.data) else ""


def _check_field_count(msg, sentence_type: str) -> None:
    if len(msg.data) < _MIN_FIELDS[sentence_type]:
        raise _FieldError("truncated", f"{sentence_type} with {len(msg.data)} of {_MIN_FIELDS[sentence_type]} fields")


def _time(msg) -> dt.time:
    if not isinstance(getattr(msg, "timestamp", None), dt.time):
        raise _FieldError("no_time", f"{msg.sentence_type} without a UTC time")
    return msg.timestamp


def _latlon(msg) -> tuple[float | None, float | None]:
    """Decimal degrees from ``ddmm.mmmm`` fields, None when empty; reject NaN and out-of-range values."""
    if not msg.lat or not msg.lon:
        return None, None
    _opt_float(msg.lat, "lat")
    _opt_float(msg.lon, "lon")
    if msg.lat_dir not in ("N", "S") or msg.lon_dir not in ("E", "W"):
        raise _FieldError("garbled", f"hemisphere {msg.lat_dir!r}/{msg.lon_dir!r}")
    lat, lon = float(msg.latitude), float(msg.longitude)
    minutes_ok = float(msg.lat[2:]) < 60.0 and float(msg.lon[3:]) < 60.0
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise _FieldError("non_finite", f"lat/lon {msg.lat}/{msg.lon}")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and minutes_ok):
        raise _FieldError("out_of_range", f"lat/lon {msg.lat}/{msg.lon}")
    return lat, lon


def _gga(msg) -> Gga:
    lat, lon = _latlon(msg)
    quality_text = _raw(msg, "gps_qual")
    quality = int(quality_text) if quality_text else 0
    sats = _opt_float(msg.num_sats, "num_sats")
    return Gga(
        time_utc=_time(msg), lat_deg=lat, lon_deg=lon, quality=quality,
        num_satellites=int(sats) if sats is not None and sats >= 0 else 0,
        hdop=_positive(_opt_float(msg.horizontal_dil, "hdop"), "hdop"),
        alt_msl_m=_opt_float(_raw(msg, "altitude"), "altitude"),
        geoid_separation_m=_opt_float(msg.geo_sep, "geo_sep"),
    )


def _rmc(msg) -> Rmc:
    _latlon(msg)
    date = msg.datestamp if isinstance(msg.datestamp, dt.date) else None
    speed = _opt_float(_raw(msg, "spd_over_grnd"), "speed")
    course = _opt_float(_raw(msg, "true_course"), "course")
    return Rmc(time_utc=_time(msg), valid=msg.status == "A", date=date,
               speed_mps=None if speed is None else speed * KNOTS_TO_MPS, course_deg=course)


def _gst(msg) -> Gst:
    _opt_float(_raw(msg, "rms"), "rms")  # unused, but a NaN here means the sentence is not to be trusted
    values = [_opt_float(_raw(msg, name), name)
              for name in ("std_dev_major", "std_dev_minor", "orientation", "std_dev_latitude",
                           "std_dev_longitude", "std_dev_altitude")]
    major, minor, orient, s_lat, s_lon, s_alt = values
    return Gst(time_utc=_time(msg), sigma_major_m=_positive(major, "sigma_major"),
               sigma_minor_m=_positive(minor, "sigma_minor"), major_orientation_deg=orient,
               sigma_lat_m=_positive(s_lat, "sigma_lat"), sigma_lon_m=_positive(s_lon, "sigma_lon"),
               sigma_alt_m=_positive(s_alt, "sigma_alt"))


def _gsa(msg) -> Gsa:
    fix_type = _opt_float(msg.mode_fix_type, "fix_type")
    return Gsa(fix_type=int(fix_type) if fix_type is not None else 1,
               pdop=_positive(_opt_float(msg.pdop, "pdop"), "pdop"),
               hdop=_positive(_opt_float(msg.hdop, "hdop"), "hdop"),
               vdop=_positive(_opt_float(msg.vdop, "vdop"), "vdop"))


def _positive(value: float | None, name: str) -> float | None:
    """Sigmas and DOPs: negative is an error, zero means 'not given' (several receivers send 0.0)."""
    if value is None or value == 0.0:
        return None
    if value < 0:
        raise _FieldError("out_of_range", f"{name}={value} is negative")
    return value


_MIN_FIELDS = {"GGA": 14, "RMC": 11, "GST": 8, "GSA": 17}
_CONVERTERS = {"GGA": _gga, "RMC": _rmc, "GST": _gst, "GSA": _gsa}

"""Simulated GNSS: realistic position errors and the NMEA 0183 sentences (GGA, RMC, GST) a receiver sends.

Error model per epoch ``k`` (east/north/up metres, independent axes)::

    error_k = white_k + bias_k + multipath_k
    white_k ~ N(0, white_sigma^2)
    bias_k  = phi * bias_{k-1} + sqrt(1 - phi^2) * N(0, bias_sigma^2),  phi = exp(-dt / bias_tau_s)
    multipath_k = a constant horizontal jump while inside a multipath episode, else 0

Episodes (multipath, outages) start as Poisson events; explicit ones can be listed too (``multipath_episodes``,
``outages``: a multipath jump just before a long outage leaves a filter with a drifted prior). During an outage the
receiver reports no fix (GGA quality 0, RMC status V, no GST). The reported accuracy (GST sigmas, HDOP)
follows the modelled sigma, scaled by ``reported_sigma_scale`` (< 1: an over-confident receiver), and rises
much less than the true error during multipath, as real receivers do.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace

import numpy as np

from edge_geoloc.config import ConfigError
from edge_geoloc.sensors.nmea import with_checksum


@dataclass(frozen=True)
class GnssNoiseConfig:
    """Parameters of the GNSS error model (see the module docstring)."""

    rate_hz: float = 5.0
    white_sigma_m: float = 0.8
    white_sigma_up_m: float = 1.5
    bias_sigma_m: float = 1.5
    bias_tau_s: float = 60.0
    multipath_rate_hz: float = 0.0
    multipath_jump_m: float = 12.0
    multipath_duration_s: float = 6.0
    multipath_episodes: tuple[tuple[float, float], ...] = ()  # explicit (start_s, end_s) after the first epoch
    outage_rate_hz: float = 0.0
    outage_duration_s: float = 15.0
    outages: tuple[tuple[float, float], ...] = ()  # explicit (start_s, end_s) after the first epoch
    num_satellites: int = 14
    hdop: float = 0.8
    reported_sigma_scale: float = 1.0
    talker: str = "GP"

    def __post_init__(self) -> None:
        if not 0.1 <= self.rate_hz <= 50.0:
            raise ValueError(f"rate_hz must be in [0.1, 50], got {self.rate_hz}")
        for name in ("white_sigma_m", "white_sigma_up_m", "bias_sigma_m", "multipath_rate_hz", "outage_rate_hz",
                     "multipath_jump_m"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.bias_tau_s <= 0 or self.multipath_duration_s <= 0 or self.outage_duration_s <= 0:
            raise ValueError("bias_tau_s, multipath_duration_s and outage_duration_s must be > 0")
        if len(self.talker) != 2:
            raise ValueError(f"talker must be two letters (GP, GN, GL...), got {self.talker!r}")


# Doppler velocity of the receiver (RMC speed over ground and course): unaffected by the position errors above.
RMC_SPEED_SIGMA_MPS = 0.1
RMC_COURSE_SIGMA_RAD = 0.01

GNSS_PRESETS: dict[str, GnssNoiseConfig] = {
    "normal": GnssNoiseConfig(),
    "urban_multipath": GnssNoiseConfig(white_sigma_m=2.0, white_sigma_up_m=4.0, bias_sigma_m=4.0, bias_tau_s=30.0,
                                       multipath_rate_hz=1 / 40, multipath_jump_m=20.0, multipath_duration_s=8.0,
                                       num_satellites=8, hdop=1.8, reported_sigma_scale=0.6),
    "outage": GnssNoiseConfig(outage_rate_hz=1 / 60, outage_duration_s=20.0, outages=((20.0, 40.0),)),
}


def gnss_preset(name: str, **overrides) -> GnssNoiseConfig:
    """A named preset (``normal``, ``urban_multipath``, ``outage``), optionally with fields replaced."""
    if name not in GNSS_PRESETS:
        raise ConfigError(f"unknown GNSS preset {name!r}; choose one of {sorted(GNSS_PRESETS)}")
    return replace(GNSS_PRESETS[name], **overrides)


@dataclass
class GnssTrack:
    """Simulated receiver output at each epoch (arrays of length N)."""

    stamp_s: np.ndarray  # UNIX seconds
    error_enu_m: np.ndarray  # (N, 3) true error added to the truth
    valid: np.ndarray  # (N,) bool, False during outages
    sigma_enu_m: np.ndarray  # (N, 3) reported 1-sigma
    hdop: np.ndarray
    num_satellites: np.ndarray
    events: list[dict]


def _episodes(rng: np.random.Generator, rate_hz: float, duration_s: float, t0: float, t1: float) -> list[tuple]:
    out, t = [], t0
    while rate_hz > 0:
        t += rng.exponential(1 / rate_hz)
        if t >= t1:
            break
        length = duration_s * rng.uniform(0.5, 1.5)
        out.append((t, min(t + length, t1)))
        t += length
    return out


def simulate_gnss_errors(stamps_s: np.ndarray, cfg: GnssNoiseConfig, rng: np.random.Generator) -> GnssTrack:
    """Errors, validity and reported accuracy at the given epochs (UNIX seconds, increasing)."""
    n = len(stamps_s)
    rel = stamps_s - stamps_s[0]
    step = np.diff(rel, prepend=rel[0])
    sig = np.array([cfg.white_sigma_m, cfg.white_sigma_m, cfg.white_sigma_up_m])
    bias_sig = np.array([cfg.bias_sigma_m, cfg.bias_sigma_m, 2 * cfg.bias_sigma_m])
    bias = np.zeros((n, 3))
    bias[0] = rng.normal(0, 1, 3) * bias_sig
    for k in range(1, n):
        phi = math.exp(-step[k] / cfg.bias_tau_s)
        bias[k] = phi * bias[k - 1] + math.sqrt(1 - phi**2) * rng.normal(0, 1, 3) * bias_sig
    error = bias + rng.normal(0, 1, (n, 3)) * sig
    events, multipath = [], np.zeros(n, bool)
    episodes = _episodes(rng, cfg.multipath_rate_hz, cfg.multipath_duration_s, rel[0], rel[-1])
    for start, end in [*episodes, *cfg.multipath_episodes]:
        jump = rng.normal(0, cfg.multipath_jump_m, 2)
        inside = (rel >= start) & (rel < end)
        error[inside, :2] += jump
        multipath |= inside
        events.append({"kind": "multipath", "start_s": float(stamps_s[0] + start), "end_s": float(stamps_s[0] + end),
                       "jump_east_m": float(jump[0]), "jump_north_m": float(jump[1])})
    valid = np.ones(n, bool)
    spans = list(cfg.outages) + _episodes(rng, cfg.outage_rate_hz, cfg.outage_duration_s, rel[0], rel[-1])
    for start, end in spans:
        valid &= ~((rel >= start) & (rel < end))
        events.append({"kind": "outage", "start_s": float(stamps_s[0] + start), "end_s": float(stamps_s[0] + end)})
    model_sigma = np.sqrt(sig**2 + bias_sig**2)
    boost = np.where(multipath, 1.6, 1.0)[:, None]
    sigma = model_sigma * cfg.reported_sigma_scale * boost * rng.uniform(0.9, 1.1, (n, 1))
    hdop = np.round(cfg.hdop * boost[:, 0] * rng.uniform(0.95, 1.05, n), 1)
    sats = np.clip(cfg.num_satellites - np.where(multipath, 3, 0) + rng.integers(-1, 2, n), 4, 32)
    events.sort(key=lambda e: e["start_s"])
    return GnssTrack(stamps_s, error, valid, sigma, hdop, sats, events)


# ---------------------------------------------------------------------------------------------- NMEA 0183


def _utc(stamp_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(stamp_s, tz=dt.timezone.utc)


def _hhmmss(stamp_s: float) -> str:
    t = _utc(round(stamp_s, 2))
    return f"{t:%H%M%S}.{t.microsecond // 10000:02d}"


def _lat_field(lat_deg: float) -> str:
    a = abs(lat_deg)
    deg = int(a)
    return f"{deg:02d}{(a - deg) * 60:010.7f},{'N' if lat_deg >= 0 else 'S'}"


def _lon_field(lon_deg: float) -> str:
    a = abs(lon_deg)
    deg = int(a)
    return f"{deg:03d}{(a - deg) * 60:010.7f},{'E' if lon_deg >= 0 else 'W'}"


def format_gga(stamp_s: float, lat_deg: float | None, lon_deg: float | None, alt_m: float | None, quality: int,
               num_satellites: int, hdop: float | None, talker: str = "GP") -> str:
    """GGA: time, position, fix quality, satellites, HDOP, altitude (ellipsoidal: geoid separation 0)."""
    if quality == 0 or lat_deg is None:
        body = f"{talker}GGA,{_hhmmss(stamp_s)},,,,,0,{num_satellites:02d},,,M,,M,,"
    else:
        body = (f"{talker}GGA,{_hhmmss(stamp_s)},{_lat_field(lat_deg)},{_lon_field(lon_deg)},{quality},"
                f"{num_satellites:02d},{hdop:.1f},{alt_m:.3f},M,0.000,M,,")
    return with_checksum(body)


def format_rmc(stamp_s: float, lat_deg: float | None, lon_deg: float | None, speed_mps: float,
               course_deg: float, talker: str = "GP") -> str:
    """RMC: time, status (A valid / V void), position, speed over ground (knots), course, date, mode."""
    date = f"{_utc(round(stamp_s, 2)):%d%m%y}"
    if lat_deg is None:
        body = f"{talker}RMC,{_hhmmss(stamp_s)},V,,,,,,,{date},,,N"
    else:
        knots = speed_mps * 3600.0 / 1852.0
        body = (f"{talker}RMC,{_hhmmss(stamp_s)},A,{_lat_field(lat_deg)},{_lon_field(lon_deg)},{knots:.2f},"
                f"{course_deg % 360:.1f},{date},,,A")
    return with_checksum(body)


def format_gst(stamp_s: float, sigma_east_m: float, sigma_north_m: float, sigma_up_m: float,
               talker: str = "GP") -> str:
    """GST: RMS, error ellipse (semi-major, semi-minor, orientation) and 1-sigma lat/lon/alt errors (m)."""
    major, minor = max(sigma_east_m, sigma_north_m), min(sigma_east_m, sigma_north_m)
    orient = 0.0 if sigma_north_m >= sigma_east_m else 90.0
    rms = math.sqrt((sigma_east_m**2 + sigma_north_m**2 + sigma_up_m**2) / 3)
    body = (f"{talker}GST,{_hhmmss(stamp_s)},{rms:.2f},{major:.2f},{minor:.2f},{orient:.1f},{sigma_north_m:.2f},"
            f"{sigma_east_m:.2f},{sigma_up_m:.2f}")
    return with_checksum(body)

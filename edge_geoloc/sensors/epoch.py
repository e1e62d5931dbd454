"""Merge the NMEA sentences of one receiver epoch (GGA + RMC + GST + GSA) into a :class:`GnssFix`.

Covariance (row-major 3x3 ENU, NavSatFix meaning):

* GST with the error ellipse (semi-major ``a``, semi-minor ``b``, orientation ``theta`` clockwise from north):
  ``var_E = a^2 sin^2(theta) + b^2 cos^2(theta)``, ``var_N = a^2 cos^2(theta) + b^2 sin^2(theta)``,
  ``cov_EN = (a^2 - b^2) sin(theta) cos(theta)``; type ``KNOWN``.
* GST with only latitude/longitude sigmas: ``diag(sigma_lon^2, sigma_lat^2, .)``; type ``DIAGONAL_KNOWN``.
* Otherwise ``sigma_E = sigma_N = HDOP * UERE(fix quality)`` and ``sigma_U = VDOP * UERE`` (GSA) or
  ``vertical_factor * sigma_E``; type ``APPROXIMATED``. Without HDOP: ``unknown_sigma_m`` and ``UNKNOWN``.
* GST altitude sigma, when given, is the vertical sigma in every case.

Time stamps are UTC seconds since the epoch (date from RMC, rolled over at midnight; epochs before the first
RMC date are rejected as ``no_date``; a receiver that never sends RMC falls back to the host's date). A stamp
that does not advance, or jumps forward by more than ``max_time_jump_s``, is rejected, unless
``resync_epochs`` consecutive epochs agree on the new time base (a receiver restart, a replayed log), which is
then accepted.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

from edge_geoloc.sensors.config import GnssConfig
from edge_geoloc.sensors.nmea import Gga, Gsa, Gst, Rejected, Rmc, Sentence
from edge_geoloc.types import CovarianceType, FixStatus, GnssFix

log = logging.getLogger(__name__)

_STATUS_BY_QUALITY = {2: FixStatus.SBAS_FIX, 4: FixStatus.GBAS_FIX, 5: FixStatus.GBAS_FIX}


@dataclass
class _Epoch:
    time_utc: dt.time
    gga: Gga | None = None
    rmc: Rmc | None = None
    gst: Gst | None = None
    has_gsa: bool = False

    def types(self) -> set[str]:
        present = {"GGA": self.gga, "RMC": self.rmc, "GST": self.gst, "GSA": True if self.has_gsa else None}
        return {name for name, value in present.items() if value is not None}


def ellipse_covariance_en(sigma_major_m: float, sigma_minor_m: float, orientation_deg: float) -> tuple[float, ...]:
    """(var_E, cov_EN, var_N) of an error ellipse whose major axis points ``orientation_deg`` from north."""
    theta = math.radians(orientation_deg)
    a2, b2 = sigma_major_m**2, sigma_minor_m**2
    s, c = math.sin(theta), math.cos(theta)
    return a2 * s * s + b2 * c * c, (a2 - b2) * s * c, a2 * c * c + b2 * s * s


class EpochAssembler:
    """Feed parsed sentences in arrival order; get fixes (or named rejections) back as epochs complete."""

    def __init__(self, config: GnssConfig) -> None:
        self.config = config
        self._epoch: _Epoch | None = None
        self._last_closed_time: dt.time | None = None
        self._gsa: Gsa | None = None
        self._date: dt.date | None = None
        self._last_stamp_s: float | None = None
        self._resync: list[float] = []
        self._dateless_epochs = 0
        self._expected = set(config.epoch_sentences)
        self.time_resyncs = 0
        self.late_sentences = 0

    def add(self, sentence: Sentence) -> list[GnssFix | Rejected]:
        if isinstance(sentence, Gsa):
            self._gsa = sentence
            if self._epoch is not None:
                self._epoch.has_gsa = True
            return self._close_if_complete()
        out: list[GnssFix | Rejected] = []
        if self._epoch is not None and self._epoch.time_utc != sentence.time_utc:
            self._learn_from(self._epoch)
            out.append(self._close())
        if self._epoch is None:
            if sentence.time_utc == self._last_closed_time:
                self.late_sentences += 1  # belongs to an epoch already turned into a fix
                if self.config.learn_epoch_sentences:
                    self._expected.add(type(sentence).__name__.upper())
                return out
            self._epoch = _Epoch(sentence.time_utc)
        setattr(self._epoch, type(sentence).__name__.lower(), sentence)
        return out + self._close_if_complete()

    def flush(self) -> list[GnssFix | Rejected]:
        """Close the pending epoch (end of file, or the line went quiet)."""
        return [self._close()] if self._epoch is not None else []

    def _learn_from(self, epoch: _Epoch) -> None:
        """An epoch closed by the next one shows what this receiver sends: expect that from now on, so the
        next epochs are emitted without waiting (a type that then arrives late is expected again)."""
        if self.config.learn_epoch_sentences and epoch.gga is not None:
            self._expected = epoch.types() - {"GSA"}

    def _close_if_complete(self) -> list[GnssFix | Rejected]:
        if self._epoch is not None and self._expected <= self._epoch.types():
            return [self._close()]
        return []

    def _close(self) -> GnssFix | Rejected:
        epoch, self._epoch = self._epoch, None
        assert epoch is not None
        self._last_closed_time = epoch.time_utc
        if epoch.rmc is not None and epoch.rmc.date is not None:
            self._date = epoch.rmc.date  # this epoch's own date, never the next epoch's
        problem = _position_problem(epoch, self.config)
        stamp_s = self._stamp_s(epoch.time_utc)
        if problem is not None:
            if stamp_s is not None:  # a no-fix epoch (an outage) still carries the receiver's clock forward
                self._check_time(stamp_s)
            return problem
        if stamp_s is None:
            return Rejected("no_date", f"epoch {epoch.time_utc}: no RMC date yet")
        time_problem = self._check_time(stamp_s)
        if time_problem is not None:
            return time_problem
        try:
            return self._make_fix(epoch, stamp_s)
        except (ValueError, OverflowError) as err:  # e.g. sigmas so large their squares overflow
            return Rejected("non_finite", str(err))

    def _stamp_s(self, time_utc: dt.time) -> float | None:
        """UTC seconds of this epoch; None while the date is unknown (the first RMC may just have been lost).

        A receiver that sends no RMC at all gets the host's UTC date after ``resync_epochs`` dateless epochs.
        """
        if self._date is None:
            self._dateless_epochs += 1
            if self._dateless_epochs <= self.config.resync_epochs:
                return None
            self._date = dt.datetime.now(dt.timezone.utc).date()
            log.warning("no RMC date from the receiver: time-stamping GNSS fixes with the host's UTC date %s",
                        self._date)
        moment = dt.datetime.combine(self._date, time_utc.replace(tzinfo=dt.timezone.utc))
        stamp_s = moment.timestamp()
        if self._last_stamp_s is not None and stamp_s < self._last_stamp_s - 43200.0:
            self._date += dt.timedelta(days=1)  # UTC midnight passed without a new RMC date
            stamp_s += 86400.0
        return stamp_s

    def _check_time(self, stamp_s: float) -> Rejected | None:
        last, cfg = self._last_stamp_s, self.config
        if last is None or 0.0 < stamp_s - last <= cfg.max_time_jump_s:
            self._last_stamp_s, self._resync = stamp_s, []
            return None
        if self._resync and 0.0 < stamp_s - self._resync[-1] <= cfg.max_time_jump_s:
            self._resync.append(stamp_s)
        else:
            self._resync = [stamp_s]
        if len(self._resync) >= cfg.resync_epochs:
            log.warning("GNSS time base changed by %.3f s; accepting the new one", stamp_s - last)
            self._last_stamp_s, self._resync = stamp_s, []
            self.time_resyncs += 1
            return None
        reason = "out_of_order" if stamp_s <= last else "time_jump"
        return Rejected(reason, f"stamp {stamp_s:.3f} after {last:.3f}")

    def _make_fix(self, epoch: _Epoch, stamp_s: float) -> GnssFix:
        gga, rmc = epoch.gga, epoch.rmc
        assert gga is not None and gga.lat_deg is not None and gga.lon_deg is not None and gga.alt_msl_m is not None
        covariance, cov_type = fix_covariance(gga, epoch.gst, self._gsa, self.config)
        return GnssFix(
            stamp_s=stamp_s, lat_deg=gga.lat_deg, lon_deg=gga.lon_deg,
            alt_m=gga.alt_msl_m + (gga.geoid_separation_m or 0.0),
            position_covariance_m2=covariance, covariance_type=cov_type,
            status=_STATUS_BY_QUALITY.get(gga.quality, FixStatus.FIX), fix_quality=gga.quality,
            num_satellites=gga.num_satellites, hdop=_hdop(gga, self._gsa),
            speed_mps=rmc.speed_mps if rmc else None,
            course_rad=math.radians(rmc.course_deg) if rmc and rmc.course_deg is not None else None,
        )


def _position_problem(epoch: _Epoch, cfg: GnssConfig) -> Rejected | None:
    gga = epoch.gga
    if gga is None:
        return Rejected("incomplete", f"epoch {epoch.time_utc} has no GGA")
    if gga.quality == 0 or gga.lat_deg is None or gga.lon_deg is None or (epoch.rmc and not epoch.rmc.valid):
        return Rejected("no_position", f"epoch {epoch.time_utc}: quality {gga.quality}")
    if gga.alt_msl_m is None:
        return Rejected("no_position", f"epoch {epoch.time_utc}: no altitude")
    if gga.quality not in cfg.accepted_fix_qualities:
        return Rejected("fix_quality", f"quality {gga.quality} not in {cfg.accepted_fix_qualities}")
    return None


def _hdop(gga: Gga, gsa: Gsa | None) -> float | None:
    return gga.hdop if gga.hdop is not None else (gsa.hdop if gsa is not None else None)


Covariance = tuple[tuple[float, ...], CovarianceType]


def fix_covariance(gga: Gga, gst: Gst | None, gsa: Gsa | None, cfg: GnssConfig) -> Covariance:
    """Row-major 3x3 ENU covariance (m^2) and its type, by the rules in the module docstring."""
    if gst is not None and gst.sigma_major_m and gst.sigma_minor_m and gst.major_orientation_deg is not None:
        var_e, cov_en, var_n = ellipse_covariance_en(gst.sigma_major_m, gst.sigma_minor_m, gst.major_orientation_deg)
        cov_type = CovarianceType.KNOWN
    elif gst is not None and gst.sigma_lat_m and gst.sigma_lon_m:
        var_e, cov_en, var_n = gst.sigma_lon_m**2, 0.0, gst.sigma_lat_m**2
        cov_type = CovarianceType.DIAGONAL_KNOWN
    else:
        return _dop_covariance(gga, gsa, cfg)
    sigma_up = gst.sigma_alt_m or cfg.vertical_factor * math.sqrt(max(var_e, var_n))
    return (var_e, cov_en, 0.0, cov_en, var_n, 0.0, 0.0, 0.0, sigma_up**2), cov_type


def _dop_covariance(gga: Gga, gsa: Gsa | None, cfg: GnssConfig) -> Covariance:
    hdop = _hdop(gga, gsa)
    if hdop is None:
        s2 = cfg.unknown_sigma_m**2
        return (s2, 0.0, 0.0, 0.0, s2, 0.0, 0.0, 0.0, s2), CovarianceType.UNKNOWN
    uere = cfg.uere_m(gga.quality)
    sigma_h = hdop * uere
    sigma_up = gsa.vdop * uere if gsa is not None and gsa.vdop is not None else cfg.vertical_factor * sigma_h
    h2 = sigma_h**2
    return (h2, 0.0, 0.0, 0.0, h2, 0.0, 0.0, 0.0, sigma_up**2), CovarianceType.APPROXIMATED

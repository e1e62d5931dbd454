"""NMEA parsing, epoch merging, covariance rules and rejection counting (no serial port needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_geoloc.sensors import GnssConfig, NmeaReader, Rejected, parse_line, read_nmea_file, with_checksum
from edge_geoloc.sensors.epoch import ellipse_covariance_en
from edge_geoloc.sensors.nmea import Gga, Gst, Rmc
from edge_geoloc.sensors.nmea_writer import covariance_to_ellipse, format_epoch
from edge_geoloc.types import CovarianceType, FixStatus, GnssFix

GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"


def epoch_lines(second: int, quality: int = 1, hdop: str = "0.9", gst: str | None = "0.5,2.0,1.0,45.0,1.8,1.8,3.0",
                minute: int = 35, status: str = "A") -> list[str]:
    t = f"12{minute:02d}{second:02d}.00"
    lines = [with_checksum(f"GPRMC,{t},{status},4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"),
             with_checksum(f"GPGGA,{t},4807.038,N,01131.000,E,{quality},08,{hdop},545.4,M,46.9,M,,")]
    if gst is not None:
        lines.append(with_checksum(f"GPGST,{t},{gst}"))
    return lines


def feed_all(reader: NmeaReader, lines: list[str]) -> list[GnssFix]:
    return reader.feed(("\r\n".join(lines) + "\r\n").encode()) + reader.flush()


def test_parse_textbook_sentences():
    gga = parse_line(GGA)
    assert isinstance(gga, Gga)
    assert gga.lat_deg == pytest.approx(48 + 7.038 / 60) and gga.lon_deg == pytest.approx(11 + 31.0 / 60)
    assert (gga.quality, gga.num_satellites, gga.hdop) == (1, 8, 0.9)
    assert (gga.alt_msl_m, gga.geoid_separation_m) == (545.4, 46.9)
    rmc = parse_line(RMC)
    assert isinstance(rmc, Rmc) and rmc.valid and rmc.date.isoformat() == "1994-03-23"
    assert rmc.speed_mps == pytest.approx(22.4 * 1852 / 3600)
    gst = parse_line("$GPGST,172814.0,0.006,0.023,0.020,273.6,0.023,0.020,0.031*6A")
    assert isinstance(gst, Gst)
    assert (gst.sigma_major_m, gst.major_orientation_deg, gst.sigma_alt_m) == (0.023, 273.6, 0.031)


@pytest.mark.parametrize("line, reason", [
    (GGA[:-2] + "48", "checksum"),
    (GGA.replace("545.4", "545.5"), "checksum"),
    (GGA[:30], "truncated"),
    (with_checksum("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9"), "truncated"),
    (with_checksum("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,nan,M,46.9,M,,"), "non_finite"),
    (with_checksum("GPGGA,123519,4807.038,N,01131.000,E,1,08,inf,545.4,M,46.9,M,,"), "non_finite"),
    (with_checksum("GPGGA,123519,9107.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "out_of_range"),
    (with_checksum("GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "garbled"),
    (with_checksum("GPGGA,,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "no_time"),
    (b"$GPGGA,12\xff519*00", "not_ascii"),
    ("hello world", "garbled"),
    ("$GPGGA,1*2*33", "garbled"),
    ("", "empty"),
    ("$" + "A" * 200, "too_long"),
])
def test_bad_lines_are_rejected_with_their_reason(line, reason):
    result = parse_line(line)
    assert isinstance(result, Rejected) and result.reason == reason, result


def test_other_sentence_types_are_ignored_not_rejected():
    reader = NmeaReader()
    feed_all(reader, [with_checksum("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K")])
    assert (reader.counters.ignored, reader.counters.total_rejected) == (1, 0)


def test_ellipse_covariance_golden_values():
    assert ellipse_covariance_en(2.0, 1.0, 0.0) == pytest.approx((1.0, 0.0, 4.0))  # major axis north
    assert ellipse_covariance_en(2.0, 1.0, 90.0) == pytest.approx((4.0, 0.0, 1.0))  # major axis east
    assert ellipse_covariance_en(2.0, 1.0, 45.0) == pytest.approx((2.5, 1.5, 2.5))  # north-east: E, N correlated
    assert ellipse_covariance_en(2.0, 1.0, 135.0) == pytest.approx((2.5, -1.5, 2.5))


def test_epoch_becomes_one_fix_as_soon_as_it_is_complete():
    reader = NmeaReader()
    fixes = reader.feed(("\r\n".join(epoch_lines(19)) + "\r\n").encode())  # no flush: completeness emits it
    assert len(fixes) == 1
    fix = fixes[0]
    assert fix.stamp_s == pytest.approx(764426119.0)  # 1994-03-23T12:35:19Z
    assert fix.alt_m == pytest.approx(545.4 + 46.9)  # ellipsoidal = MSL + geoid separation
    assert fix.covariance_type == CovarianceType.KNOWN
    np.testing.assert_allclose(fix.covariance_enu_m2, [[2.5, 1.5, 0], [1.5, 2.5, 0], [0, 0, 9.0]])
    assert fix.speed_mps == pytest.approx(11.5236, abs=1e-4) and fix.course_rad == pytest.approx(math.radians(84.4))


def test_gst_without_ellipse_gives_diagonal_known():
    fix = feed_all(NmeaReader(), epoch_lines(19, gst="0.5,,,,1.5,2.5,4.0"))[0]
    assert fix.covariance_type == CovarianceType.DIAGONAL_KNOWN
    np.testing.assert_allclose(np.diag(fix.covariance_enu_m2), [2.5**2, 1.5**2, 16.0])


@pytest.mark.parametrize("quality, uere, status", [(1, 4.0, FixStatus.FIX), (2, 1.5, FixStatus.SBAS_FIX),
                                                   (4, 0.05, FixStatus.GBAS_FIX)])
def test_hdop_times_uere_per_fix_quality_when_no_gst(quality, uere, status):
    cfg = GnssConfig(epoch_sentences=("GGA", "RMC"))
    fix = feed_all(NmeaReader(cfg), epoch_lines(19, quality=quality, hdop="1.5", gst=None))[0]
    sigma = 1.5 * uere
    assert fix.covariance_type == CovarianceType.APPROXIMATED and fix.status == status
    np.testing.assert_allclose(np.diag(fix.covariance_enu_m2), [sigma**2, sigma**2, (2.0 * sigma) ** 2])


def test_vdop_from_gsa_sets_the_vertical_sigma_and_no_dop_means_unknown():
    cfg = GnssConfig(epoch_sentences=("GGA", "RMC", "GSA"))
    gsa = with_checksum("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1")
    fix = feed_all(NmeaReader(cfg), [*epoch_lines(19, hdop="1.3", gst=None), gsa])[0]
    assert fix.covariance_enu_m2[2, 2] == pytest.approx((2.1 * 4.0) ** 2)
    fix = feed_all(NmeaReader(GnssConfig(epoch_sentences=("GGA",))), epoch_lines(19, hdop="", gst=None))[0]
    assert fix.covariance_type == CovarianceType.UNKNOWN and fix.covariance_enu_m2[0, 0] == pytest.approx(2500.0)


def test_fixes_without_position_are_rejected_and_counted():
    reader = NmeaReader()
    lines = epoch_lines(10, quality=0) + epoch_lines(11, status="V") + epoch_lines(12)
    fixes = feed_all(reader, lines)
    assert len(fixes) == 1 and reader.counters.rejected == {"no_position": 2}


def test_out_of_order_and_jumping_timestamps_are_rejected_then_a_new_time_base_is_accepted():
    reader = NmeaReader(GnssConfig(max_time_jump_s=5.0, resync_epochs=3))
    lines = epoch_lines(10) + epoch_lines(11) + epoch_lines(9) + epoch_lines(11)  # back in time, duplicate
    lines += epoch_lines(40)  # a 29 s jump: rejected once ...
    lines += epoch_lines(12)  # ... and the stream continues from where it was
    lines += epoch_lines(0, minute=50) + epoch_lines(1, minute=50) + epoch_lines(2, minute=50)  # a real new base
    fixes = feed_all(reader, lines)
    seconds = [round(f.stamp_s - 764426100.0) for f in fixes]
    assert seconds[:3] == [10, 11, 12] and seconds[3] == 15 * 60 + 2
    assert reader.counters.rejected == {"out_of_order": 2, "time_jump": 3}
    assert reader.counters.time_resyncs == 1


def test_midnight_rollover_without_a_new_rmc_date():
    cfg = GnssConfig(epoch_sentences=("GGA",))
    lines = [with_checksum("GPRMC,235959.00,A,4807.038,N,01131.000,E,0.0,0.0,230394,,")]
    lines += [with_checksum(f"GPGGA,{t},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
              for t in ("235959.00", "000000.00", "000001.00")]
    fixes = feed_all(NmeaReader(cfg), lines)
    assert [f.stamp_s - fixes[0].stamp_s for f in fixes] == [0.0, 1.0, 2.0]


def test_byte_by_byte_feeding_gives_the_same_fixes_and_lost_bytes_resync_on_dollar():
    data = ("\r\n".join(epoch_lines(10) + epoch_lines(11)) + "\r\n").encode()
    whole = feed_all(NmeaReader(), [data.decode().strip()])
    reader = NmeaReader()
    pieces = [f for i in range(len(data)) for f in reader.feed(data[i:i + 1])] + reader.flush()
    assert pieces == whole and len(whole) == 2
    broken = epoch_lines(12)[0][:25] + epoch_lines(12)[1]  # RMC cut short, GGA glued on (bytes lost)
    reader = NmeaReader(GnssConfig(epoch_sentences=("GGA",)))
    fixes = feed_all(reader, [*epoch_lines(11), broken])
    assert len(fixes) == 2 and reader.counters.rejected == {"truncated": 1}


def test_counters_account_for_every_line():
    reader = NmeaReader()
    lines = epoch_lines(10) + ["garbage", GGA[:-1] + "0", "", with_checksum("GPGSV,1,1,00")] + epoch_lines(11)
    feed_all(reader, lines)
    c = reader.counters
    assert c.lines == len(lines) and c.lines == c.sentences + c.ignored + c.line_rejections
    assert c.fixes == 2 and c.rejected == {"garbled": 1, "checksum": 1, "empty": 1}


def test_overlong_line_without_newline_is_dropped_and_reading_continues():
    reader = NmeaReader()
    fixes = reader.feed(b"x" * 500) + reader.feed(b"y" * 500) + feed_all(reader, epoch_lines(10))
    assert len(fixes) == 1 and reader.counters.rejected == {"too_long": 1}
    glued = b"z" * 300 + ("\r\n".join(epoch_lines(11)) + "\r\n").encode()  # noise, then a sentence, no newline
    assert len(reader.feed(glued[:310]) + reader.feed(glued[310:])) == 1


def test_epochs_before_the_first_rmc_date_wait_then_a_receiver_without_rmc_uses_the_host_date():
    reader = NmeaReader(GnssConfig(epoch_sentences=("GGA",), resync_epochs=2))
    gga_only = [line for s in range(10, 14) for line in epoch_lines(s, gst=None)[1:]]
    fixes = feed_all(reader, gga_only)
    assert reader.counters.rejected == {"no_date": 2} and len(fixes) == 2


def test_writer_round_trip_is_exact_to_printed_precision():
    cov = (4.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 9.0)
    fix = GnssFix(stamp_s=1.7e9 + 0.25, lat_deg=-33.8568123, lon_deg=151.2152987, alt_m=42.123,
                  position_covariance_m2=cov, covariance_type=CovarianceType.KNOWN, fix_quality=2,
                  num_satellites=11, hdop=0.8, speed_mps=5.0, course_rad=1.0)
    back = feed_all(NmeaReader(), format_epoch(fix, geoid_separation_m=20.0))[0]
    assert back.stamp_s == fix.stamp_s and (back.fix_quality, back.num_satellites, back.hdop) == (2, 11, 0.8)
    assert back.lat_deg == pytest.approx(fix.lat_deg, abs=1e-8) and back.lon_deg == pytest.approx(fix.lon_deg, abs=1e-8)
    assert back.alt_m == pytest.approx(fix.alt_m, abs=1e-3)
    np.testing.assert_allclose(back.position_covariance_m2, cov, atol=5e-3)
    assert covariance_to_ellipse(np.diag([1.0, 4.0]))[::2] == pytest.approx((2.0, 0.0))


def test_read_nmea_file_counts_bad_lines_and_explains_a_missing_file(tmp_path):
    path = tmp_path / "gnss.nmea"
    path.write_text("\n".join(epoch_lines(10) + ["$GPGGA,garbage*00"] + epoch_lines(11)) + "\n")
    reader = NmeaReader()
    fixes = list(read_nmea_file(path, reader=reader))
    assert len(fixes) == 2 and reader.counters.total_rejected == 1
    with pytest.raises(FileNotFoundError, match="NMEA log not found"):
        list(read_nmea_file(tmp_path / "missing.nmea"))


def test_expected_sentences_follow_what_the_receiver_sends():
    reader = NmeaReader()  # default expects GGA + RMC + GST
    assert reader.feed(("\r\n".join(epoch_lines(10, gst=None)) + "\r\n").encode()) == []  # waits for a GST
    fixes = reader.feed(("\r\n".join(epoch_lines(11, gst=None)) + "\r\n").encode())
    assert [round(f.stamp_s) % 60 for f in fixes] == [10, 11]  # learnt: GGA + RMC make an epoch, no delay
    fixes = reader.feed(("\r\n".join(epoch_lines(12) + epoch_lines(13)) + "\r\n").encode())
    assert [f.covariance_type for f in fixes] == [CovarianceType.APPROXIMATED, CovarianceType.KNOWN]
    assert reader.counters.late_sentences == 1  # GST of 12 came after its fix; expected again from 13 on


def test_an_rmc_with_the_next_date_does_not_restamp_the_epoch_before_it():
    reader = NmeaReader(GnssConfig(epoch_sentences=("GGA", "RMC"), learn_epoch_sentences=False))

    def gga(t):
        return with_checksum(f"GPGGA,{t},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")

    lines = [with_checksum("GPRMC,235958.00,A,4807.038,N,01131.000,E,0.0,0.0,230394,,"), gga("235958.00"),
             gga("235959.00"),  # its RMC was lost: the epoch is still open when ...
             with_checksum("GPRMC,000000.00,A,4807.038,N,01131.000,E,0.0,0.0,240394,,"),  # ... the next date comes
             gga("000000.00")]
    fixes = feed_all(reader, lines)
    assert [f.stamp_s - fixes[0].stamp_s for f in fixes] == [0.0, 1.0, 2.0]
    assert reader.counters.total_rejected == 0



def _receiver_epoch_lines(stamp_s: float, has_fix: bool) -> list[str]:
    from edge_geoloc.sim.gnss import format_gga, format_gst, format_rmc

    if not has_fix:  # what a receiver sends during an outage: no position, RMC void
        return [format_gga(stamp_s, None, None, None, 0, 3, None), format_rmc(stamp_s, None, None, 0.0, 0.0)]
    return [format_gga(stamp_s, 52.0, 4.36, 10.0, 1, 9, 0.9), format_rmc(stamp_s, 52.0, 4.36, 0.0, 0.0),
            format_gst(stamp_s, 1.5, 1.5, 3.0)]


def test_first_fix_after_an_outage_is_kept_when_the_receiver_kept_sending_no_fix_epochs():
    """A 60 s outage reported as GGA quality 0 / RMC 'V' is not a time jump: the first fix after it is used."""
    start = 1780315200.0  # 2026-06-01 12:00:00 UTC
    lines = [line for t in range(90) for line in _receiver_epoch_lines(start + t, not 10 <= t < 70)]
    reader = NmeaReader(GnssConfig())
    fixes = [f for f in reader.feed(("\r\n".join(lines) + "\r\n").encode()) if isinstance(f, GnssFix)]
    fixes += [f for f in reader.flush() if isinstance(f, GnssFix)]
    kept = sorted(round(f.stamp_s - start) for f in fixes)
    assert 70 in kept and 71 in kept
    assert not any(10 <= t < 70 for t in kept)

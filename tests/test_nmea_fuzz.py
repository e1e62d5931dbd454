"""Property-based tests: random bytes and mutated sentences never break the reader and are counted."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_geoloc.sensors import GnssConfig, NmeaReader, with_checksum
from edge_geoloc.sensors.nmea import Rejected, parse_line

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])  # deterministic in CI


def epoch(second: int) -> list[str]:
    t = f"1235{second:02d}.00"
    return [with_checksum(f"GPRMC,{t},A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"),
            with_checksum(f"GPGGA,{t},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
            with_checksum(f"GPGST,{t},0.5,2.0,1.0,45.0,1.8,1.8,3.0")]


VALID = [line for s in range(10, 20) for line in epoch(s)]


def check_invariants(reader: NmeaReader, fixes) -> None:
    c = reader.counters
    assert c.lines == c.sentences + c.ignored + c.line_rejections
    assert c.fixes == len(fixes)
    for fix in fixes:
        assert all(math.isfinite(v) for v in (fix.stamp_s, fix.lat_deg, fix.lon_deg, fix.alt_m))
        assert all(math.isfinite(v) for v in fix.position_covariance_m2)
    stamps = [f.stamp_s for f in fixes]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


@SETTINGS
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_random_bytes_never_raise_and_are_all_accounted_for(chunks):
    reader = NmeaReader()
    fixes = [f for chunk in chunks for f in reader.feed(chunk)] + reader.flush()
    check_invariants(reader, fixes)


@SETTINGS
@given(st.lists(st.one_of(st.sampled_from(VALID), st.binary(max_size=90).map(lambda b: b.decode("latin-1"))),
                max_size=40),
       st.integers(min_value=1, max_value=64))
def test_valid_and_garbage_lines_interleaved_in_random_chunks(lines, chunk_size):
    data = ("\r\n".join(lines) + "\r\n").encode("latin-1")
    reader = NmeaReader()
    fixes = [f for i in range(0, len(data), chunk_size) for f in reader.feed(data[i:i + chunk_size])]
    check_invariants(reader, fixes + reader.flush())


@SETTINGS
@given(st.sampled_from(VALID), st.data())
def test_any_single_byte_change_inside_a_sentence_is_rejected(line, data):
    position = data.draw(st.integers(min_value=1, max_value=len(line) - 4))  # between '$' and '*'
    new = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != ord(line[position])))
    mutated = line.encode()[:position] + bytes([new]) + line.encode()[position + 1:]
    result = parse_line(mutated)
    assert isinstance(result, Rejected) and not result.reason.startswith("ignored"), (mutated, result)


@SETTINGS
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.sampled_from(["drop_tail", "flip", "nan", "glued"]))
def test_one_damaged_sentence_costs_at_most_its_epoch(index, damage):
    lines = list(VALID)
    line = lines[index]
    lines[index] = {"drop_tail": line[: len(line) // 2],
                    "flip": line[:8] + ("X" if line[8] != "X" else "Y") + line[9:],
                    "nan": with_checksum(line[1:-3].replace("545.4", "nan").replace("0.5,", "nan,")
                                         .replace("022.4", "inf")),
                    "glued": line[:20] + line}[damage]  # bytes lost before the next sentence
    reader = NmeaReader(GnssConfig())
    fixes = reader.feed(("\r\n".join(lines) + "\r\n").encode()) + reader.flush()
    check_invariants(reader, fixes)
    assert len(fixes) >= 9 and reader.counters.total_rejected >= 1

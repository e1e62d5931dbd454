"""The serial path for real: pyserial on a pseudo-terminal pair, including unplugging and reconnecting.

The "receiver" writes NMEA into the pty master; :class:`SerialGnssSource` opens the slave through a symlink,
as a udev rule's /dev/gnss would be. Unplugging closes the master (the slave then reads EIO, as a removed USB
adapter does) and re-points the symlink to a fresh pty. Tests wait on the source's condition, never sleep.
"""

from __future__ import annotations

import os
import pty
import tty

import pytest

from edge_geoloc.sensors import GnssConfig, SerialGnssSource, with_checksum

WAIT_S = 10.0


def epoch_bytes(second: int, minute: int = 35) -> bytes:
    t = f"12{minute:02d}{second:02d}.00"
    lines = [with_checksum(f"GPRMC,{t},A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"),
             with_checksum(f"GPGGA,{t},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
             with_checksum(f"GPGST,{t},0.5,2.0,1.0,45.0,1.8,1.8,3.0")]
    return ("\r\n".join(lines) + "\r\n").encode()


class FakeReceiver:
    """A pty pair; the test writes into the master like a receiver's UART would."""

    def __init__(self, link: str) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.slave_name = os.ttyname(slave)
        os.close(slave)  # pyserial opens its own handle through the link
        tmp = f"{link}.tmp"
        os.symlink(self.slave_name, tmp)
        os.replace(tmp, link)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        os.close(self.master)


@pytest.fixture
def link(tmp_path):
    return str(tmp_path / "gnss")


def fast_config(link: str, **overrides) -> GnssConfig:
    values = dict(port=link, baud_rate=9600, read_timeout_s=0.05, reconnect_interval_s=0.01,
                  reconnect_max_interval_s=0.05, silence_timeout_s=30.0)
    values.update(overrides)
    return GnssConfig(**values)


def test_fixes_arrive_over_a_real_serial_line(link):
    receiver = FakeReceiver(link)
    seen = []
    with SerialGnssSource(fast_config(link), on_fix=seen.append) as source:
        assert source.wait_for(lambda s: s.is_connected, WAIT_S)
        for second in range(10, 15):
            receiver.write(epoch_bytes(second)[:50])  # split mid-sentence, as a UART read may
            receiver.write(epoch_bytes(second)[50:])
        receiver.write(b"$GPGGA,123515.00,4807.038,N,garbage*12\r\n\xff\x00noise\r\n")
        assert source.wait_for(lambda s: s.counters.fixes == 5 and s.counters.total_rejected == 2, WAIT_S)
        got = [source.get(timeout_s=WAIT_S) for _ in range(5)]
    receiver.unplug()
    assert [round(f.stamp_s) % 60 for f in got] == [10, 11, 12, 13, 14] and seen == got
    assert source.latest == got[-1] and source.counters.disconnects == 0


def test_unplug_and_reconnect_on_the_same_device_path(link):
    first = FakeReceiver(link)
    with SerialGnssSource(fast_config(link)) as source:
        assert source.wait_for(lambda s: s.is_connected, WAIT_S)
        first.write(epoch_bytes(10))
        assert source.wait_for(lambda s: s.counters.fixes == 1, WAIT_S)
        first.unplug()
        assert source.wait_for(lambda s: s.counters.disconnects == 1 and not s.is_connected, WAIT_S)
        second = FakeReceiver(link)  # plugged back in: same path, new device node
        assert source.wait_for(lambda s: s.counters.reconnects == 1 and s.is_connected, WAIT_S)
        second.write(epoch_bytes(11) + epoch_bytes(12))
        assert source.wait_for(lambda s: s.counters.fixes == 3, WAIT_S)
    second.unplug()
    stamps = [source.get(timeout_s=WAIT_S).stamp_s for _ in range(3)]
    assert [round(s) % 60 for s in stamps] == [10, 11, 12]


def test_silence_flushes_an_incomplete_epoch_and_counts_a_timeout(link):
    receiver = FakeReceiver(link)
    with SerialGnssSource(fast_config(link, silence_timeout_s=0.1)) as source:
        assert source.wait_for(lambda s: s.is_connected, WAIT_S)
        receiver.write(epoch_bytes(10)[: epoch_bytes(10).rfind(b"$GPGST")])  # GST never comes
        assert source.wait_for(lambda s: s.counters.fixes == 1, WAIT_S)
    receiver.unplug()
    assert source.counters.timeouts >= 1


def test_a_port_that_never_appears_is_retried_without_raising(link):
    with SerialGnssSource(fast_config(link)) as source:
        assert source.wait_for(lambda s: s.counters.open_failures >= 3, WAIT_S) and not source.is_connected
        receiver = FakeReceiver(link)
        assert source.wait_for(lambda s: s.is_connected, WAIT_S)
    receiver.unplug()
    assert source.counters.reconnects == 0  # first open is not a reconnect


def test_a_full_queue_drops_the_oldest_fix_and_counts_it(link):
    receiver = FakeReceiver(link)
    with SerialGnssSource(fast_config(link, fix_queue_size=2)) as source:
        assert source.wait_for(lambda s: s.is_connected, WAIT_S)
        receiver.write(b"".join(epoch_bytes(s) for s in range(10, 14)))
        assert source.wait_for(lambda s: s.counters.fixes == 4, WAIT_S)
    receiver.unplug()
    assert source.counters.dropped_fixes == 2
    assert [round(source.get(0).stamp_s) % 60 for _ in range(2)] == [12, 13]

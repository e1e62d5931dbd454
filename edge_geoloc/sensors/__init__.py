"""GNSS input: NMEA 0183 from a serial port (pyserial) or a log file -> :class:`edge_geoloc.types.GnssFix`.

``NmeaReader`` decodes bytes (any chunking) and counts every rejection; ``read_nmea_file`` reads a log;
``SerialGnssSource`` reads a live receiver in a thread and reconnects after unplugging.
"""

from edge_geoloc.sensors.config import GnssConfig
from edge_geoloc.sensors.epoch import ellipse_covariance_en, fix_covariance
from edge_geoloc.sensors.nmea import Rejected, nmea_checksum, parse_line, with_checksum
from edge_geoloc.sensors.reader import GnssCounters, NmeaReader, read_nmea_file
from edge_geoloc.sensors.serial_source import SerialGnssSource

__all__ = [
    "GnssConfig", "GnssCounters", "NmeaReader", "Rejected", "SerialGnssSource", "ellipse_covariance_en",
    "fix_covariance", "nmea_checksum", "parse_line", "read_nmea_file", "with_checksum",
]

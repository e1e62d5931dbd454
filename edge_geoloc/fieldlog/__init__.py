"""Field logging: rosbag2 MCAP logs of camera, GNSS and fused state, written off the inference thread.

``FieldLogger`` writes (bounded queue, writer thread, chunk flushing, rotation, free-space guard);
``read_log`` reads logs back, including files cut short by a crash; ``recover_log`` rewrites such a file as a
complete bag; ``edge-geoloc dataset from-logs`` (:mod:`edge_geoloc.fieldlog.dataset_cli`) turns logs into
the pair dataset that ``edge-geoloc adapt`` reads.
"""

from edge_geoloc.fieldlog.config import FieldLogConfig
from edge_geoloc.fieldlog.logger import FieldLogCounters, FieldLogger, encode_jpeg
from edge_geoloc.fieldlog.reader import LogRecord, ReadReport, RecoveryReport, mcap_files, read_log, recover_log

__all__ = [
    "FieldLogConfig", "FieldLogCounters", "FieldLogger", "LogRecord", "ReadReport", "RecoveryReport",
    "encode_jpeg", "mcap_files", "read_log", "recover_log",
]

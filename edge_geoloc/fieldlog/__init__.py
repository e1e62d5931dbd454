"""Field logging: rosbag2 MCAP logs of camera, GNSS and fused state, written off the inference thread.

``FieldLogger`` writes (bounded queue, writer thread, chunk flushing, rotation, free-space guard);
``read_log`` reads logs back, including files cut short by a crash; ``recover_log`` rewrites such a file as a
complete bag and ``recover_in_place`` (``edge-geoloc fieldlog recover``) does so for every cut part of a log;
``edge-geoloc dataset from-logs`` (:mod:`edge_geoloc.fieldlog.dataset_cli`) turns logs into
the pair dataset that ``edge-geoloc adapt`` reads.
"""

from edge_geoloc.fieldlog.config import FieldLogConfig
from edge_geoloc.fieldlog.logger import FieldLogCounters, FieldLogger, encode_jpeg
from edge_geoloc.fieldlog.reader import (
    LogRecord,
    ReadReport,
    RecoveryReport,
    is_complete,
    mcap_files,
    read_log,
    recover_in_place,
    recover_log,
)

__all__ = [
    "FieldLogConfig", "FieldLogCounters", "FieldLogger", "LogRecord", "ReadReport", "RecoveryReport",
    "encode_jpeg", "is_complete", "mcap_files", "read_log", "recover_in_place", "recover_log",
]

"""
Forward the edge_geoloc library's Python ``logging`` records to the node's rclpy logger.

The library logs with ``logging.getLogger(__name__)``; those records reach stderr at most, never
``/rosout``. An rclpy logger publishes to ``/rosout`` (``rqt_console``, ``ros2 topic echo
/rosout``, bags), so this handler hands every record of the ``edge_geoloc`` logger tree to it.
"""

import logging

_LEVEL_METHODS = (
    (logging.CRITICAL, "fatal"),
    (logging.ERROR, "error"),
    (logging.WARNING, "warning"),
    (logging.INFO, "info"),
    (logging.DEBUG, "debug"),
)


def rclpy_method_name(levelno: int) -> str:
    """Name of the rclpy logger method for a Python logging level (the nearest level below)."""
    return next((name for level, name in _LEVEL_METHODS if levelno >= level), "debug")


class RosoutHandler(logging.Handler):
    """A logging handler that writes each record through an rclpy logger (and so to /rosout)."""

    def __init__(self, ros_logger, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.ros_logger = ros_logger
        self.setFormatter(logging.Formatter("[%(name)s] %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            getattr(self.ros_logger, rclpy_method_name(record.levelno))(self.format(record))
        except Exception:  # a logging call must never take the node down
            self.handleError(record)


def forward_library_logs(ros_logger, level: int = logging.INFO) -> RosoutHandler:
    """Attach a RosoutHandler to the ``edge_geoloc`` logger; returns it (to remove later)."""
    handler = RosoutHandler(ros_logger, level)
    library = logging.getLogger("edge_geoloc")
    library.addHandler(handler)
    if library.getEffectiveLevel() > level:
        library.setLevel(level)
    return handler


def stop_forwarding(handler: RosoutHandler) -> None:
    """Detach ``handler`` from the ``edge_geoloc`` logger (the node is going away)."""
    logging.getLogger("edge_geoloc").removeHandler(handler)

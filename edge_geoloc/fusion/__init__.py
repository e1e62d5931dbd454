"""GNSS + visual fusion: a constant-velocity EKF in local ENU with gating, recovery and outage handling."""

from edge_geoloc.fusion.config import FusionConfig
from edge_geoloc.fusion.ekf import KalmanState
from edge_geoloc.fusion.filter import FusionCounters, FusionFilter, UpdateResult
from edge_geoloc.fusion.gating import chi2_quantile, passes_gate
from edge_geoloc.fusion.gnss import gnss_covariance_enu

__all__ = [
    "FusionConfig", "FusionCounters", "FusionFilter", "KalmanState", "UpdateResult", "chi2_quantile",
    "gnss_covariance_enu", "passes_gate",
]

"""GNSS + visual fusion in local ENU: a constant-velocity EKF (gating, recovery, outages) or a particle filter
(multi-hypothesis, heat-map likelihoods, augmented-MCL recovery); ``fusion.mode`` chooses."""

from edge_geoloc.fusion.config import FusionConfig, ParticleConfig
from edge_geoloc.fusion.ekf import KalmanState
from edge_geoloc.fusion.filter import FusionCounters, FusionFilter, UpdateResult
from edge_geoloc.fusion.gating import chi2_quantile, passes_gate
from edge_geoloc.fusion.gnss import gnss_covariance_enu
from edge_geoloc.fusion.likelihoods import HeatmapMeasurement
from edge_geoloc.fusion.map_grid import MapScores
from edge_geoloc.fusion.particle import ParticleFilter
from edge_geoloc.geo import EnuFrame


def make_fusion(cfg: FusionConfig, origin: EnuFrame | None = None) -> FusionFilter | ParticleFilter:
    """The filter ``cfg.mode`` names: ``ekf`` (:class:`FusionFilter`) or ``particle`` (:class:`ParticleFilter`)."""
    return ParticleFilter(cfg, origin) if cfg.mode == "particle" else FusionFilter(cfg, origin)


__all__ = [
    "FusionConfig", "FusionCounters", "FusionFilter", "HeatmapMeasurement", "KalmanState", "MapScores",
    "ParticleConfig", "ParticleFilter", "UpdateResult", "chi2_quantile", "gnss_covariance_enu", "make_fusion",
    "passes_gate",
]

"""The fusion filter's configuration (``fusion:`` section of ``configs/runtime*.yaml``).

Noise values are 1-sigma standard deviations in metres (or m/s, m/s^2); covariances derived from them are
computed where they are used, never stored. Gates are probabilities of the chi-square distribution of the
squared Mahalanobis distance, so they mean the same for 2-D (visual) and 3-D (GNSS) updates.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FusionConfig:
    """Constant-velocity EKF in a local ENU frame (REP-103 axes, REP-105 ``map`` frame)."""

    world_frame: str = "map"  # REP-105 frame of the fused pose (the ENU frame at ``origin``)
    accel_sigma_mps2: float = 1.5  # white-noise acceleration driving the velocity (process noise)
    vertical_accel_sigma_mps2: float = 0.5
    velocity_tau_s: float = 0.0  # > 0: Gauss-Markov velocity (bounded extrapolation in outages); 0: constant
    uere_m: float = 4.0  # user equivalent range error: sigma_h = HDOP * UERE when no GST sigmas are given
    vertical_factor: float = 1.7  # sigma_up = vertical_factor * sigma_h when only HDOP is known
    default_gnss_sigma_m: float = 10.0  # a fix with neither covariance nor HDOP
    min_gnss_sigma_m: float = 0.5  # floor: receivers report optimistic GST sigmas
    gnss_noise_adaptation: float = 0.2  # EMA weight of the GNSS innovation-based noise scale (0 = off)
    gnss_max_noise_scale: float = 25.0  # the GNSS covariance is inflated at most this much (sigma x5)
    gnss_gate_probability: float = 0.999  # chi-square gate on the GNSS innovation (3 dof)
    visual_gate_probability: float = 0.999  # chi-square gate on the visual innovation (2 dof)
    min_visual_sigma_m: float = 1.0
    init_velocity_sigma_mps: float = 10.0
    init_min_visual_confidence: float = 0.5  # a GNSS-denied start trusts only confident visual fixes ...
    init_visual_fixes: int = 3  # ... and only when this many in a row agree with each other
    init_gnss_fixes: int = 1
    init_up_sigma_m: float = 50.0  # height is unknown when a visual fix starts the filter
    recovery_rejections: int = 5  # consecutive rejections of one sensor before recovery is considered
    recovery_quiet_s: float = 5.0  # ... and only if no other sensor was accepted for that long
    max_measurement_lag_s: float = 0.5  # older measurements than this behind the filter time are rejected
    max_prediction_s: float = 120.0  # predicting further without any accepted update marks the state stale

    def __post_init__(self) -> None:
        for name in ("accel_sigma_mps2", "vertical_accel_sigma_mps2", "uere_m", "vertical_factor",
                     "default_gnss_sigma_m", "min_gnss_sigma_m", "min_visual_sigma_m", "init_velocity_sigma_mps",
                     "init_up_sigma_m", "max_prediction_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"fusion.{name} must be > 0, got {getattr(self, name)}")
        for name in ("gnss_gate_probability", "visual_gate_probability"):
            if not 0.5 < getattr(self, name) < 1.0:
                raise ValueError(f"fusion.{name} must be in (0.5, 1), e.g. 0.999; got {getattr(self, name)}")
        if not 0.0 <= self.gnss_noise_adaptation < 1.0 or self.gnss_max_noise_scale < 1.0:
            raise ValueError("fusion.gnss_noise_adaptation must be in [0, 1) and gnss_max_noise_scale >= 1")
        if self.init_visual_fixes < 1 or self.init_gnss_fixes < 1:
            raise ValueError("fusion.init_visual_fixes and fusion.init_gnss_fixes must be >= 1")
        if self.recovery_rejections < 2:
            raise ValueError(f"fusion.recovery_rejections must be >= 2, got {self.recovery_rejections}")
        if self.max_measurement_lag_s < 0 or self.recovery_quiet_s < 0 or self.velocity_tau_s < 0:
            raise ValueError("fusion.max_measurement_lag_s, recovery_quiet_s and velocity_tau_s must be >= 0")

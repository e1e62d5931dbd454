"""The fusion filter's configuration (``fusion:`` section of ``configs/runtime*.yaml``).

Noise values are 1-sigma standard deviations in metres (or m/s, m/s^2); covariances derived from them are
computed where they are used, never stored. Gates are probabilities of the chi-square distribution of the
squared Mahalanobis distance, so they mean the same for 2-D (visual) and 3-D (GNSS) updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FusionMode = Literal["ekf", "particle"]


@dataclass(frozen=True)
class ParticleConfig:
    """The multi-hypothesis (particle) filter, ``fusion.particle`` (see :mod:`edge_geoloc.fusion.particle`).

    Times are in seconds of flight, not in updates, so the recovery behaves the same at any sensor rate."""

    num_particles: int = 1500
    seed: int = 0  # the filter is deterministic for a seed
    speed_sigma_mps2: float = 0.3  # random walk of the speed when the heading is measured (heading-driven motion)
    heading_sigma_deg: float = 3.0  # noise of the measured heading per prediction
    position_diffusion_mps: float = 0.3  # position random walk (m / sqrt(s)): keeps the cloud diverse
    max_speed_mps: float = 40.0
    init_speed_mps: float = 10.0  # speed hypotheses of a start without GNSS velocity: uniform in [0, 2x]
    gnss_outlier_probability: float = 0.1  # Gaussian + uniform mixture: the multipath share of fixes ...
    gnss_outlier_radius_m: float = 200.0  # ... spread uniformly over a disc of this radius
    gnss_recovery_s: float = 15.0  # GNSS outliers that agree with each other this long re-seed the belief
    velocity_sigma_mps: float = 1.0  # GNSS speed/course as a velocity likelihood (heavy-tailed too)
    heatmap_inlier_probability: float = 0.5  # prior that one of the heat maps holds the truth at its peak
    heatmap_exponent: float = 0.5  # heat maps are tempered (p^e) against over-confident models
    visual_outlier_probability: float = 0.3  # single visual fixes (update_visual): Gaussian + uniform
    alpha_slow_s: float = 60.0  # augmented MCL: time constants of the slow and fast averages of the ...
    alpha_fast_s: float = 3.0  # ... belief's heat-map quality; inject when the fast one drops below the slow one
    injection_ratio: float = 0.7  # ... (by this factor: a real drop, not the heat maps' frame-to-frame noise) ...
    recovery_quality: float = 0.5  # ... or below this (a belief that never explained the heat maps)
    max_injection_fraction: float = 0.25  # at most this share of the particles is re-drawn per update
    resample_ess_fraction: float = 0.5  # resample when the effective sample size falls under this share
    mode_cell_m: float = 8.0  # histogram cell of the mode search
    mode_radius_m: float = 20.0  # particles within this of a mode belong to it
    ambiguous_mass: float = 0.2  # a second mode with at least this weight makes the belief ambiguous ...
    min_dominant_mass: float = 0.5  # ... and so does a dominant mode lighter than this (a diffuse cloud)
    # The map grid (fusion.map_grid): global relocalization from a map matcher's whole-map scores, when the
    # pipeline's global search gives them (global_search.kind ncc / matcher). Defaults measured on the
    # relocalization benchmark's flights (docs/runtime.md).
    map_grid: bool = True  # False: cold starts and recovery draw from the heat maps of the frame alone
    grid_beta: float = 3.0  # softmax temperature of the z-scores ...
    grid_exponent: float = 0.7  # ... the likelihood ratio tempered to this power ...
    grid_inlier_probability: float = 0.5  # ... and mixed with the background (1 - this)
    grid_min_speed_mps: float = 2.0  # speed hypotheses: from this (at rest explains any repeated texture) ...
    max_grid_speed_mps: float = 16.0  # ... to this ...
    grid_speed_step_mps: float = 1.0  # ... in these steps
    grid_speed_walk: float = 0.1  # share of each speed layer that moves to each neighbouring speed per prediction
    grid_blur_m: float = 2.0  # position spread per prediction (plus a share of the turn)
    grid_uniform_floor: float = 1e-3  # share of the belief spread over the whole grid per prediction
    grid_mode_radius_m: float = 10.0  # the grid's place: its heaviest cell and the cells within this radius ...
    grid_confident_mass: float = 0.5  # ... holding this much of the belief seed a cold start
    grid_weighs_particles: bool = False  # the frame's score likelihood also weighs the particles (beside heat maps)
    grid_evidence_period_s: float = 0.0  # > 0: a frame's scores count fully only when frames are this far apart,
    #                                      else the share dt / period (evidence per second); 0: every frame whole
    grid_gnss_trust_s: float = 0.0  # a GNSS-confirmed belief yields to a confident grid this long after its last
    #                                 confirming fix (inside an outage); 0: never yields while confirmed

    def __post_init__(self) -> None:
        if self.num_particles < 50:
            raise ValueError(f"fusion.particle.num_particles must be >= 50, got {self.num_particles}")
        for name in ("speed_sigma_mps2", "heading_sigma_deg", "position_diffusion_mps", "max_speed_mps",
                     "gnss_outlier_radius_m", "gnss_recovery_s", "velocity_sigma_mps", "heatmap_exponent",
                     "alpha_slow_s", "alpha_fast_s", "mode_cell_m", "mode_radius_m", "grid_beta", "grid_exponent",
                     "max_grid_speed_mps", "grid_speed_step_mps", "grid_blur_m", "grid_mode_radius_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"fusion.particle.{name} must be > 0, got {getattr(self, name)}")
        for name in ("gnss_outlier_probability", "heatmap_inlier_probability", "visual_outlier_probability",
                     "max_injection_fraction", "resample_ess_fraction", "ambiguous_mass", "recovery_quality",
                     "injection_ratio", "min_dominant_mass", "grid_inlier_probability", "grid_confident_mass",
                     "grid_uniform_floor"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"fusion.particle.{name} must be in (0, 1), got {getattr(self, name)}")
        if not (self.grid_gnss_trust_s >= 0 and self.grid_evidence_period_s >= 0):
            raise ValueError("fusion.particle.grid_gnss_trust_s and grid_evidence_period_s must be >= 0 (0: off)")
        if not 0.0 <= self.grid_min_speed_mps <= self.max_grid_speed_mps or not 0.0 <= self.grid_speed_walk < 0.5:
            raise ValueError("fusion.particle: need 0 <= grid_min_speed_mps <= max_grid_speed_mps and "
                             "0 <= grid_speed_walk < 0.5")
        if self.alpha_fast_s >= self.alpha_slow_s:
            raise ValueError("fusion.particle.alpha_fast_s must be shorter than alpha_slow_s")


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
    mode: FusionMode = "ekf"  # "particle": the multi-hypothesis filter (fusion.particle), fed with heat maps
    particle: ParticleConfig = field(default_factory=ParticleConfig)

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
        if self.mode not in ("ekf", "particle"):
            raise ValueError(f"fusion.mode must be 'ekf' or 'particle', got {self.mode!r}")
        if self.max_measurement_lag_s < 0 or self.recovery_quiet_s < 0 or self.velocity_tau_s < 0:
            raise ValueError("fusion.max_measurement_lag_s, recovery_quiet_s and velocity_tau_s must be >= 0")

"""Multi-hypothesis fusion: a particle filter over (east, north, v_east, v_north) in the local ENU frame.

Why particles rather than a grid over the map (both were measured, ``docs/runtime.md``): the belief after a
GNSS-denied start lives on a few small islands of a map kilometres wide; a grid fine enough for the heat maps
(1 m) costs the whole map per frame, particles cost their number, whatever the map size.

One cycle (AMCL's recipe, Thrun et al. *Probabilistic Robotics* ch. 8):

- **predict**: with a measured heading (compass / IMU, or the GNSS course), each particle keeps its own speed
  (random walk) and travels along the headings at the two ends of the interval, turning at a point it draws
  (or, for a large turn, anywhere within reach: the headings may alias a loop); without one, constant velocity
  with white-noise acceleration; plus a small position diffusion so the cloud stays diverse;
- **weight**: GNSS and single visual fixes by a Gaussian + uniform outlier mixture (a multipath jump lowers all
  weights alike); heat maps over the top-k retrieved tiles and the patch around the belief by their
  likelihood ratio against a background (:mod:`edge_geoloc.fusion.likelihoods`);
- **resample** (systematic) when the effective sample size falls under ``resample_ess_fraction``;
- **relocalize globally** (when the global search is a map matcher, :meth:`update_map_scores`): a histogram
  filter over the whole map (:mod:`edge_geoloc.fusion.map_grid`) accumulates the matcher's scores of every frame
  along the measured motion. Without GNSS the particles start only when one place holds
  ``grid_confident_mass`` of that grid's belief (a cold start publishes nothing before), a belief that vision
  alone built moves to the grid's place when the two disagree, and recovery draws from the grid;
- **recover** (augmented MCL): the belief's mean heat-map likelihood divided by that of hypotheses drawn
  from the heat maps themselves is a quality in about [0, 1]; a slow and a fast running average of it (time
  constants in seconds); while the fast one is below ``injection_ratio`` times the slow one (or below
  ``recovery_quality``, so a cold start that never explained the heat maps is refreshed too), a share
  ``1 - w_fast / (ratio w_slow)`` of the particles (at most ``max_injection_fraction``) is re-drawn from the
  heat maps of the globally retrieved tiles. GNSS fixes that stay outliers for ``gnss_recovery_s`` while
  agreeing with each other re-seed the belief around them (a drifted belief, not a multipath episode, which is
  shorter); an ambiguous belief yields to the first GNSS fix it cannot explain, and so does a belief that
  vision alone built (a GNSS-denied start) until a GNSS fix confirms it.

Output: the mean and covariance of the dominant mode; the belief is ``ambiguous`` when a second mode holds
at least ``ambiguous_mass`` of the weight (then the covariance spans all modes). Deterministic for a seed.
Bad input (a heat map with NaNs, an empty tile set, a GNSS fix with a zero or negative covariance) is rejected
and counted; the filter never produces NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_geoloc.fusion.config import FusionConfig, ParticleConfig
from edge_geoloc.fusion.ekf import KalmanState
from edge_geoloc.fusion.filter import GNSS, VISUAL, FusionCounters, UpdateResult
from edge_geoloc.fusion.gnss import gnss_covariance_enu, usable_gnss_covariance, velocity_from_course
from edge_geoloc.fusion.likelihoods import (
    HeatmapMeasurement,
    gaussian_outlier_likelihood,
    heatmap_likelihood,
    heatmap_problem,
    sample_from_heatmaps,
)
from edge_geoloc.fusion.map_grid import GridRelocalizer, MapScores, map_scores_problem
from edge_geoloc.fusion.particle_belief import BeliefSummary, summarize_belief
from edge_geoloc.geo import EnuFrame
from edge_geoloc.types import FixStatus, GnssFix, VisualFix

log = logging.getLogger(__name__)

HEADING_MAX_AGE_S = 2.0  # an older heading measurement no longer steers the motion


@dataclass
class ParticleCounters(FusionCounters):
    """:class:`FusionCounters` plus the particle filter's own events."""

    heatmap_updates: int = 0
    map_score_updates: int = 0
    grid_relocalizations: int = 0  # a vision-only belief moved to the map grid's place
    particles_injected: int = 0
    ambiguous_updates: int = 0


class ParticleFilter:
    """Same interface as :class:`~edge_geoloc.fusion.FusionFilter`, plus :meth:`update_heatmaps`,
    :meth:`set_heading` and :attr:`ambiguous`."""

    def __init__(self, cfg: FusionConfig | None = None, origin: EnuFrame | None = None) -> None:
        self.cfg = cfg or FusionConfig(mode="particle")
        self.pc: ParticleConfig = self.cfg.particle
        self.origin = origin
        self.counters = ParticleCounters()
        self.rng = np.random.default_rng(self.pc.seed)
        self.particles: np.ndarray | None = None  # (N, 4) east, north, v_east, v_north
        self.weights = np.full(self.pc.num_particles, 1.0 / self.pc.num_particles)
        self.stamp_s: float | None = None
        self.up_m, self.up_var_m2 = 0.0, self.cfg.init_up_sigma_m**2
        self._heading: tuple[float, float] | None = None  # (stamp_s, heading_rad clockwise from north)
        self._heading_at_stamp: float | None = None  # the heading the last prediction ended with
        self._gnss_confirmed = True  # False while the belief rests on vision alone (a GNSS-denied start)
        self._gnss_confirmed_s: float | None = None  # the last fix that confirmed the belief
        self._quality: tuple[float, float, float] | None = None  # (stamp_s, slow, fast)
        self._gnss_outliers: list[tuple[float, np.ndarray, np.ndarray]] = []  # (stamp, z, R) while outliers
        self._summary: BeliefSummary | None = None
        self._last_accepted_s: float | None = None
        self._grid: GridRelocalizer | None = None

    # ------------------------------------------------------------------ public state
    @property
    def initialized(self) -> bool:
        return self.particles is not None

    @property
    def summary(self) -> BeliefSummary:
        if self.particles is None:
            raise RuntimeError("the particle filter is not initialised yet (no GNSS fix or heat map)")
        if self._summary is None:
            self._summary = summarize_belief(self.particles, self.weights, self.pc)
        return self._summary

    @property
    def ambiguous(self) -> bool:
        return self.initialized and self.summary.ambiguous

    @property
    def state(self) -> KalmanState | None:
        """Mean and covariance of the dominant mode as the EKF's 6-D state (E, N, U, vE, vN, vU)."""
        if self.particles is None:
            return None
        s = self.summary
        x = np.array([s.mean[0], s.mean[1], self.up_m, s.mean[2], s.mean[3], 0.0])
        P = np.zeros((6, 6))
        P[np.ix_([0, 1, 3, 4], [0, 1, 3, 4])] = s.covariance
        P[2, 2], P[5, 5] = self.up_var_m2, 1.0
        return KalmanState(x, P)

    def position_enu(self) -> tuple[float, float, float]:
        s = self.summary
        return float(s.mean[0]), float(s.mean[1]), float(self.up_m)

    def position_latlon(self) -> tuple[float, float, float]:
        return self.origin.from_enu(*self.position_enu())

    # ------------------------------------------------------------------ motion
    def set_heading(self, stamp_s: float, heading_rad: float | None) -> None:
        """The measured heading (clockwise from north) steers the motion of the next predictions."""
        if heading_rad is not None and math.isfinite(heading_rad):
            self._heading = (stamp_s, float(heading_rad))

    def predict_to(self, stamp_s: float) -> None:
        """Move every particle to ``stamp_s``; drop a belief no measurement has supported for too long."""
        if self.particles is None or self.stamp_s is None or stamp_s <= self.stamp_s:
            return
        if self._last_accepted_s is not None and stamp_s - self._last_accepted_s > self.cfg.max_prediction_s:
            log.warning("no accepted measurement for %.0f s: dropping the stale belief", self.cfg.max_prediction_s)
            self.particles, self.stamp_s = None, None
            return
        dt = stamp_s - self.stamp_s
        heading = self._steering_heading(stamp_s)
        if heading is None:
            self._move_constant_velocity(dt)
        else:
            start = self._heading_at_stamp if self._heading_at_stamp is not None else heading
            self._move_along_headings(dt, start, heading)
        self._diffuse(dt)
        self._heading_at_stamp = heading
        self.stamp_s = stamp_s
        self._summary = None

    def _move_constant_velocity(self, dt: float) -> None:
        p = self.particles
        p[:, 2:] += self.rng.standard_normal((len(p), 2)) * self.cfg.accel_sigma_mps2 * math.sqrt(dt)
        p[:, :2] += p[:, 2:] * dt

    def _move_along_headings(self, dt: float, start: float, end: float) -> None:
        """Heading-driven motion over an interval that starts and ends with a measured heading. The heading is
        the direction of travel, but only at the two ends: where the vehicle turned in between is unknown. Each
        particle draws it (two legs, ``split`` of the way along the start heading, the rest along the end one:
        the chord of a corner at any point of the interval, which also brackets a smooth arc) and, with
        probability ``turn_alias_share`` of the measured turn, travels a path the two samples alias (a loop or a
        hairpin between frames): then it lands anywhere within its speed x dt."""
        p, n, rng = self.particles, len(self.particles), self.rng
        speed = np.hypot(p[:, 2], p[:, 3]) + rng.standard_normal(n) * self.pc.speed_sigma_mps2 * math.sqrt(dt)
        distance = np.clip(speed, 0.0, self.pc.max_speed_mps) * dt
        sigma = math.radians(self.pc.heading_sigma_deg)
        course_start = start + rng.standard_normal(n) * sigma
        course_end = end + rng.standard_normal(n) * sigma
        split = rng.random(n)[:, None]
        step = distance[:, None] * (split * _unit(course_start) + (1.0 - split) * _unit(course_end))
        aliased = rng.random(n) < turn_alias_share((end - start + math.pi) % (2 * math.pi) - math.pi)
        if aliased.any():
            radius = distance[aliased] * np.sqrt(rng.random(int(aliased.sum())))
            step[aliased] = radius[:, None] * _unit(rng.uniform(0.0, 2 * math.pi, int(aliased.sum())))
        p[:, :2] += step
        p[:, 2:] = (distance / dt)[:, None] * _unit(course_end)

    def _diffuse(self, dt: float) -> None:
        """A small position random walk, so the cloud stays diverse."""
        p = self.particles
        p[:, :2] += self.rng.standard_normal((len(p), 2)) * self.pc.position_diffusion_mps * math.sqrt(dt)

    # ------------------------------------------------------------------ GNSS
    def update_gnss(self, fix: GnssFix) -> UpdateResult:
        """Weight by the fix (Gaussian + uniform outlier mixture); it starts the filter when none runs."""
        if fix.status == FixStatus.NO_FIX or fix.fix_quality == 0:
            return self._reject(GNSS, "invalid")
        if not usable_gnss_covariance(fix):
            return self._reject(GNSS, "bad_covariance")
        if self.origin is None:
            self.origin = EnuFrame(fix.lat_deg, fix.lon_deg, fix.alt_m)
        e, n, u = self.origin.to_enu(fix.lat_deg, fix.lon_deg, fix.alt_m)
        R3 = gnss_covariance_enu(fix, self.cfg)
        z, R = np.array([e, n], dtype=np.float64), R3[:2, :2]
        velocity = velocity_from_course(fix)
        if fix.course_rad is not None and velocity is not None and fix.speed_mps > 1.0:
            self.set_heading(fix.stamp_s, fix.course_rad)  # the course over ground steers the motion too
        self._update_up(float(u), float(R3[2, 2]))
        self._grid_gnss(fix.stamp_s, z, R)
        if self.particles is None:
            self._seed_gaussian(fix.stamp_s, z, R, velocity)
            return self._accept(GNSS, fix.stamp_s, "initialized")
        if fix.stamp_s < self.stamp_s - self.cfg.max_measurement_lag_s:
            self.counters.out_of_order += 1
            return self._reject(GNSS, "out_of_order")
        self.predict_to(fix.stamp_s)
        if self.particles is None:
            return self.update_gnss(fix)
        return self._weight_gnss(fix.stamp_s, z, R, velocity)

    def _grid_gnss(self, stamp_s: float, z: np.ndarray, R: np.ndarray) -> None:
        if self._grid is not None:
            self._grid.predict_to(stamp_s, self._steering_heading(stamp_s))
            self._grid.update_gaussian(z, R)

    def _weight_gnss(self, stamp_s: float, z: np.ndarray, R: np.ndarray, velocity: np.ndarray | None) -> UpdateResult:
        pc = self.pc
        inlier = gaussian_outlier_likelihood(self.particles[:, :2], z, R, 0.0, pc.gnss_outlier_radius_m)
        outlier = pc.gnss_outlier_probability / (math.pi * pc.gnss_outlier_radius_m**2)
        inlier_share = float(self.weights @ ((1 - pc.gnss_outlier_probability) * inlier))
        inlier_share /= inlier_share + outlier
        self._apply((1 - pc.gnss_outlier_probability) * inlier + outlier)
        if velocity is not None:
            self._weight_velocity(stamp_s, velocity)
        if inlier_share >= 0.5:
            self._gnss_outliers.clear()
            self._gnss_confirmed, self._gnss_confirmed_s = True, stamp_s
            return self._accept(GNSS, stamp_s, "fused")
        return self._gnss_outlier(stamp_s, z, R)

    def _weight_velocity(self, stamp_s: float, velocity: np.ndarray) -> None:
        """GNSS speed and course as a likelihood of the particles' velocities (heavy-tailed). While a measured
        heading steers the motion, every prediction re-draws the course from it, so only the speed is a state
        of the particles: the course is not weighed twice (nor held against a particle that took a turn)."""
        pc = self.pc
        if self._steering_heading(stamp_s) is None:
            v, z, dims = self.particles[:, 2:], velocity, 2
        else:
            v, z, dims = np.hypot(self.particles[:, 2], self.particles[:, 3])[:, None], np.hypot(*velocity)[None], 1
        sigma = np.eye(dims) * pc.velocity_sigma_mps**2
        self._apply(gaussian_outlier_likelihood(v, z, sigma, pc.gnss_outlier_probability, pc.max_speed_mps))

    def _steering_heading(self, stamp_s: float) -> float | None:
        """The measured heading that steers a prediction to ``stamp_s`` (None when there is none or it is stale)."""
        if self._heading is None or stamp_s - self._heading[0] > HEADING_MAX_AGE_S:
            return None
        return self._heading[1]

    def _gnss_outlier(self, stamp_s: float, z: np.ndarray, R: np.ndarray) -> UpdateResult:
        """An outlier fix: counted. Outliers whose offsets from the belief agree (:func:`_offsets_agree`) for
        ``gnss_recovery_s`` mean the belief drifted (a multipath episode is shorter): re-seed around the fix. An
        ambiguous belief, or one that vision alone built and no GNSS fix has confirmed yet, is re-seeded by the
        first fix it cannot explain."""
        run = self._gnss_outliers
        run.append((stamp_s, z - self.weights @ self.particles[:, :2], R))  # offset from the whole cloud's mean
        while len(run) > 1 and stamp_s - run[1][0] >= self.pc.gnss_recovery_s:
            run.pop(0)  # a sliding window of gnss_recovery_s
        drifted = stamp_s - run[0][0] >= self.pc.gnss_recovery_s and _offsets_agree(run)
        if not (drifted or self.summary.ambiguous or not self._gnss_confirmed):  # yields to the fix at once
            return self._reject(GNSS, "outlier")
        velocity = self.summary.mean[2:].copy()
        self._seed_gaussian(stamp_s, z, R, velocity)
        run.clear()
        self.counters.filter_resets += 1
        return self._accept(GNSS, stamp_s, "recovered")

    def _update_up(self, up_m: float, var_m2: float) -> None:
        """Height is not part of the particles: a 1-D Kalman filter on GNSS height (random walk)."""
        self.up_var_m2 += 1.0
        gain = self.up_var_m2 / (self.up_var_m2 + var_m2)
        self.up_m += gain * (up_m - self.up_m)
        self.up_var_m2 *= 1.0 - gain

    # ------------------------------------------------------------------ vision
    def update_visual(self, fix: VisualFix) -> UpdateResult:
        """One visual fix as a Gaussian + outlier mixture (when the pipeline gives no heat maps)."""
        R = np.asarray(fix.covariance_en_m2, dtype=np.float64).reshape(2, 2)
        if not np.all(np.isfinite(R)) or R[0, 0] <= 0 or R[1, 1] <= 0 or np.linalg.det(R) <= 0:
            return self._reject(VISUAL, "invalid")
        R = R + np.eye(2) * self.cfg.min_visual_sigma_m**2
        if self.origin is None:
            self.origin = EnuFrame(fix.lat_deg, fix.lon_deg, 0.0)
        e, n, _ = self.origin.to_enu(fix.lat_deg, fix.lon_deg, self.up_m)
        z = np.array([e, n], dtype=np.float64)
        if self.particles is None:
            if fix.confidence < self.cfg.init_min_visual_confidence:
                return self._reject(VISUAL, "not_initialized")
            self._seed_gaussian(fix.stamp_s, z, R, None)
            return self._accept(VISUAL, fix.stamp_s, "initialized")
        self.predict_to(fix.stamp_s)
        if self.particles is None:
            return self.update_visual(fix)
        pc = self.pc
        self._apply(gaussian_outlier_likelihood(self.particles[:, :2], z, R, pc.visual_outlier_probability,
                                                pc.gnss_outlier_radius_m))
        return self._accept(VISUAL, fix.stamp_s, "fused")

    def update_heatmaps(self, stamp_s: float, measurements: Sequence[HeatmapMeasurement]) -> UpdateResult:
        """Weight by the heat maps of one frame (top-k tiles and the patch around the belief); recover."""
        usable = [m for m in measurements if self._usable_heatmap(m)]
        if not usable:
            return self._reject(VISUAL, "empty_tile_set" if not measurements else "invalid")
        self.counters.heatmap_updates += 1
        if self.particles is None and self._grid is not None:
            return self._reject(VISUAL, "grid_not_confident")  # the map grid starts the filter (update_map_scores)
        if self.particles is None:
            return self._seed_from_heatmaps(stamp_s, usable)
        self.predict_to(stamp_s)
        if self.particles is None:
            return self._seed_from_heatmaps(stamp_s, usable)
        likelihood = heatmap_likelihood(usable, self.particles[:, :2], self.pc.heatmap_inlier_probability,
                                        self.pc.heatmap_exponent)
        self._track_quality(stamp_s, float(self.weights @ likelihood) / self._reference_likelihood(usable))
        self._apply(likelihood)
        self._inject([m for m in usable if m.global_candidate])
        return self._accept(VISUAL, stamp_s, "fused")

    def update_map_scores(self, stamp_s: float, scores: MapScores) -> UpdateResult:
        """One frame's whole-map scores of the map matcher into the map grid (module doc): it starts a cold
        filter once confident, and moves a belief that vision alone built when the two disagree."""
        if not self.pc.map_grid:
            return UpdateResult(False, "map_grid_off")
        problem = map_scores_problem(scores)
        if problem is not None:
            return self._reject(VISUAL, problem)
        if self._grid is None or not self._grid.matches(scores):
            self._grid = GridRelocalizer(scores, self.pc)
        heading = self._steering_heading(stamp_s)
        self._grid.predict_to(stamp_s, heading)
        self._grid.update(scores)
        self.counters.map_score_updates += 1
        mode = self._grid.mode()
        confident = mode.mass >= self.pc.grid_confident_mass
        if self.particles is None:
            if not confident:
                return self._reject(VISUAL, "grid_not_confident")
            self._reset(stamp_s, self._grid.sample(self.pc.num_particles, heading, self.rng))
            self._gnss_confirmed = False
            return self._grid_result(stamp_s, "initialized")
        self.predict_to(stamp_s)
        if self.particles is None:
            return self.update_map_scores(stamp_s, scores)
        far = np.hypot(*(self.summary.mean[:2] - mode.en)) > self.pc.mode_radius_m
        if confident and far and not self._gnss_trusted(stamp_s):  # a belief vision alone built (or GNSS long ago)
            self._reset(stamp_s, self._grid.sample(self.pc.num_particles, heading, self.rng))
            self.counters.grid_relocalizations += 1
            return self._grid_result(stamp_s, "relocalized")
        if self.pc.grid_weighs_particles:
            self._apply(self._grid.likelihood_at(self.particles[:, :2]))
        return UpdateResult(True, "grid_updated")  # the frame's heat maps weigh the particles (update_heatmaps)

    def _gnss_trusted(self, stamp_s: float) -> bool:
        """Whether GNSS confirmed the belief, recently enough (``grid_gnss_trust_s``) for the grid not to move it:
        a fix that confirmed a multipath jump just before an outage must not hold the belief there for good."""
        if not self._gnss_confirmed:
            return False
        trust = self.pc.grid_gnss_trust_s
        return trust == 0 or self._gnss_confirmed_s is None or stamp_s - self._gnss_confirmed_s <= trust

    def _grid_result(self, stamp_s: float, reason: str) -> UpdateResult:
        """The grid started or moved the belief: the belief is current (not stale), but no visual update is
        counted (the frame's heat maps count, in update_heatmaps)."""
        self._mark_current(stamp_s)
        return UpdateResult(True, reason)

    def _mark_current(self, stamp_s: float) -> None:
        """A measurement supported the belief at ``stamp_s``: it is not stale (``max_prediction_s``)."""
        self._last_accepted_s = stamp_s if self._last_accepted_s is None else max(self._last_accepted_s, stamp_s)

    def _usable_heatmap(self, m: HeatmapMeasurement) -> bool:
        problem = heatmap_problem(m.probability, m.enu_to_pixel)
        if problem is not None:
            self._reject(VISUAL, problem)
        return problem is None

    def _reference_likelihood(self, usable: list[HeatmapMeasurement], samples: int = 64) -> float:
        """The mean likelihood of hypotheses drawn from the heat maps themselves: what a belief that explains
        this frame would score."""
        en = sample_from_heatmaps(usable, samples, self.pc.heatmap_exponent, self.rng)
        return float(heatmap_likelihood(usable, en, self.pc.heatmap_inlier_probability,
                                        self.pc.heatmap_exponent).mean())

    def _track_quality(self, stamp_s: float, quality: float) -> None:
        """Slow and fast exponential averages of how well the belief explains the heat maps (time constants in
        seconds, so the same at any frame rate)."""
        if self._quality is None:
            self._quality = (stamp_s, quality, quality)
            return
        last_s, slow, fast = self._quality
        dt = max(stamp_s - last_s, 1e-3)
        slow += -math.expm1(-dt / self.pc.alpha_slow_s) * (quality - slow)
        fast += -math.expm1(-dt / self.pc.alpha_fast_s) * (quality - fast)
        self._quality = (stamp_s, slow, fast)

    def _injection_share(self) -> float:
        """Augmented MCL's ``1 - w_fast / w_slow`` with ``w_slow`` scaled by ``injection_ratio`` (a real drop, not
        the frame-to-frame noise of the heat maps) and floored at ``recovery_quality`` (so that a belief that
        never explained the heat maps, a cold start, is refreshed too); capped."""
        if self._quality is None:
            return 0.0
        _, slow, fast = self._quality
        share = 1.0 - fast / max(self.pc.injection_ratio * slow, self.pc.recovery_quality)
        return min(max(0.0, share), self.pc.max_injection_fraction)

    def _inject(self, candidates: list[HeatmapMeasurement]) -> None:
        """Re-draw :meth:`_injection_share` of the particles from the map grid's belief when there is one, else
        from the heat maps of globally retrieved tiles."""
        grid = self._grid if self._grid is not None and self._grid.belief is not None else None
        count = int(round(self._injection_share() * len(self.particles))) if (candidates or grid) else 0
        if count == 0:
            return
        idx = self.rng.choice(len(self.particles), size=count, replace=False)
        if grid is not None:
            self.particles[idx] = grid.sample(count, self._steering_heading(self.stamp_s), self.rng)
        else:
            self.particles[idx, :2] = sample_from_heatmaps(candidates, count, self.pc.heatmap_exponent, self.rng)
            self.particles[idx, 2:] = self._speed_hypotheses(count, None)
        self.weights[idx] = 1.0 / len(self.particles)
        self.weights /= self.weights.sum()
        self.counters.particles_injected += count
        self._summary = None

    # ------------------------------------------------------------------ seeding, weights, resampling
    def _seed_gaussian(self, stamp_s: float, z: np.ndarray, R: np.ndarray, velocity: np.ndarray | None) -> None:
        n = self.pc.num_particles
        positions = self.rng.multivariate_normal(z, R, size=n)
        self._reset(stamp_s, np.hstack([positions, self._speed_hypotheses(n, velocity)]))

    def _seed_from_heatmaps(self, stamp_s: float, usable: list[HeatmapMeasurement]) -> UpdateResult:
        n = self.pc.num_particles
        positions = sample_from_heatmaps(usable, n, self.pc.heatmap_exponent, self.rng)
        self._reset(stamp_s, np.hstack([positions, self._speed_hypotheses(n, None)]))
        self._gnss_confirmed = False  # vision alone: the first GNSS fix it cannot explain re-seeds it
        return self._accept(VISUAL, stamp_s, "initialized")

    def _speed_hypotheses(self, n: int, velocity: np.ndarray | None) -> np.ndarray:
        """(n, 2) velocities: around a measured velocity; else along the heading with unknown speed; else
        isotropic."""
        if velocity is not None:
            return velocity[None, :] + self.rng.standard_normal((n, 2)) * self.pc.velocity_sigma_mps
        if self.particles is not None:
            speed = float(np.hypot(*self.summary.mean[2:]))
            speeds = np.abs(speed + self.rng.standard_normal(n) * self.pc.velocity_sigma_mps)
        else:
            speeds = self.rng.uniform(0.0, 2.0 * self.pc.init_speed_mps, n)
        heading = self._heading[1] if self._heading else None
        course = self.rng.uniform(0, 2 * math.pi, n) if heading is None else np.full(n, heading)
        return speeds[:, None] * np.stack([np.sin(course), np.cos(course)], axis=1)

    def _reset(self, stamp_s: float, particles: np.ndarray) -> None:
        self.particles = particles
        self.weights = np.full(len(particles), 1.0 / len(particles))
        self.stamp_s = stamp_s
        self._heading_at_stamp = self._heading[1] if self._heading else None
        self._quality = None
        self._summary = None

    def _apply(self, likelihood: np.ndarray) -> None:
        """Multiply the weights by a (positive, finite) likelihood, normalise, resample when degenerate."""
        w = self.weights * likelihood
        total = float(w.sum())
        if not math.isfinite(total) or total <= 0:
            log.warning("particle weights collapsed; keeping the previous weights")
            return
        self.weights = w / total
        self._summary = None
        if 1.0 / float(self.weights @ self.weights) < self.pc.resample_ess_fraction * len(self.weights):
            self._resample()

    def _resample(self) -> None:
        """Systematic resampling (one random offset, deterministic for the seed)."""
        n = len(self.weights)
        positions = (self.rng.random() + np.arange(n)) / n
        idx = np.minimum(np.searchsorted(np.cumsum(self.weights), positions), n - 1)
        self.particles = self.particles[idx]
        self.weights = np.full(n, 1.0 / n)

    def _accept(self, sensor: str, stamp_s: float, reason: str) -> UpdateResult:
        setattr(self.counters, f"{sensor}_accepted", getattr(self.counters, f"{sensor}_accepted") + 1)
        self._mark_current(stamp_s)
        if self.particles is not None and self.summary.ambiguous:
            self.counters.ambiguous_updates += 1
        return UpdateResult(True, reason)

    def _reject(self, sensor: str, reason: str) -> UpdateResult:
        setattr(self.counters, f"{sensor}_rejected", getattr(self.counters, f"{sensor}_rejected") + 1)
        key = f"{sensor}_{reason}"
        self.counters.rejected_by_reason[key] = self.counters.rejected_by_reason.get(key, 0) + 1
        return UpdateResult(False, reason)


def turn_alias_share(turn_rad: float) -> float:
    """The share of particles that take a turn of ``turn_rad`` between two heading samples for an aliased path
    (anywhere within reach): ``(turn / pi)^2``, 0 flying straight, 1 for a reversal. On the benchmark's
    simulated flights (heading sampled at 0.5 Hz) the measured share of intervals whose truth the two-leg model
    misses by more than 3 m stays below its mean in every turn bin (docs/runtime.md)."""
    return min(1.0, (turn_rad / math.pi) ** 2)


def _unit(course_rad: np.ndarray) -> np.ndarray:
    """(n, 2) east/north unit vectors of courses measured clockwise from north."""
    return np.stack([np.sin(course_rad), np.cos(course_rad)], axis=1)


def _offsets_agree(run: list[tuple[float, np.ndarray, np.ndarray]], chi2_999_2dof: float = 13.8) -> bool:
    """True when the fixes' offsets from the belief follow a straight line in time (a belief that drifted, its
    speed a little off), each within its 99.9 % ellipse, rather than scattering."""
    t = np.array([stamp for stamp, _, _ in run]) - run[-1][0]
    A = np.stack([np.ones_like(t), t], axis=1)
    offsets = np.stack([o for _, o, _ in run])  # (n, 2)
    coef, *_ = np.linalg.lstsq(A, offsets, rcond=None)
    residuals = offsets - A @ coef
    return all(float(d @ np.linalg.solve(R, d)) <= chi2_999_2dof for d, (_, _, R) in zip(residuals, run, strict=True))

"""GNSS + visual fusion: time bookkeeping, initialisation, gating, recovery and outages around the EKF core.

Conventions (robot_localization where they apply): the state lives in a local ENU frame (REP-103 axes) whose
origin is a fixed WGS84 point, published as the REP-105 ``map`` frame; covariances are in m^2 in that frame,
row-major like ``NavSatFix.position_covariance``. Measurements are applied at their own stamps: the filter
predicts forward to each one; a measurement up to ``max_measurement_lag_s`` older than the filter is applied
at the filter time, an older one is rejected and counted (no history re-play).

Recovery: when one sensor is rejected ``recovery_rejections`` times in a row, no other sensor has been
accepted for ``recovery_quiet_s``, and the rejected measurements agree with *each other* (a straight-line
constant-velocity fit explains them within the gate), the filter has drifted rather than the sensor being
wrong, so it re-initialises from them (counted in ``filter_resets``). Scattered outliers (multipath jumps,
wrong tile matches) fail the fit and stay rejected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from edge_geoloc.fusion.config import FusionConfig
from edge_geoloc.fusion.ekf import H_POSITION_2D, H_POSITION_3D, KalmanState
from edge_geoloc.fusion.gating import chi2_quantile, passes_gate
from edge_geoloc.fusion.gnss import gnss_covariance_enu, usable_gnss_covariance, velocity_from_course
from edge_geoloc.geo import EnuFrame
from edge_geoloc.types import FixStatus, GnssFix, VisualFix

log = logging.getLogger(__name__)

GNSS, VISUAL = "gnss", "visual"
VISUAL_FROM_PRIOR = "visual_from_prior"  # accepted visual fixes that were searched for around the estimate


@dataclass(frozen=True)
class UpdateResult:
    """What happened to one measurement: ``accepted`` plus a reason (``fused``, ``initialized``,
    ``recovered``, ``gated``, ``invalid``, ``out_of_order``, ``not_initialized``)."""

    accepted: bool
    reason: str
    mahalanobis_sq: float = float("nan")


@dataclass
class FusionCounters:
    """Per-sensor counts of accepted and rejected measurements, and filter resets."""

    gnss_accepted: int = 0
    gnss_rejected: int = 0
    visual_accepted: int = 0
    visual_rejected: int = 0
    out_of_order: int = 0
    filter_resets: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Measurement:
    stamp_s: float
    z: np.ndarray  # (m,) ENU position
    R: np.ndarray  # (m, m)


class FusionFilter:
    """The fused position/velocity estimate, fed by :meth:`update_gnss` and :meth:`update_visual`."""

    def __init__(self, cfg: FusionConfig | None = None, origin: EnuFrame | None = None) -> None:
        self.cfg = cfg or FusionConfig()
        self.origin = origin
        self.counters = FusionCounters()
        self.state: KalmanState | None = None
        self.stamp_s: float | None = None
        self._last_accepted_s: dict[str, float] = {}
        self._rejected_run: dict[str, list[_Measurement]] = {GNSS: [], VISUAL: []}
        self._gnss_noise_scale = 1.0
        self._pending: dict[str, list[_Measurement]] = {GNSS: [], VISUAL: []}

    @property
    def initialized(self) -> bool:
        return self.state is not None

    def predict_to(self, stamp_s: float) -> None:
        """Carry the estimate forward to ``stamp_s`` (through GNSS outages); drop it when it is stale."""
        if self.state is None or self.stamp_s is None or stamp_s <= self.stamp_s:
            return
        if stamp_s - max(self._last_accepted_s.values()) > self.cfg.max_prediction_s:
            log.warning("no accepted measurement for %.0f s: dropping the stale estimate", self.cfg.max_prediction_s)
            self.state, self.stamp_s = None, None
            return
        self.state.predict(stamp_s - self.stamp_s, self.cfg.accel_sigma_mps2, self.cfg.vertical_accel_sigma_mps2,
                           self.cfg.velocity_tau_s)
        self.stamp_s = stamp_s

    def update_gnss(self, fix: GnssFix) -> UpdateResult:
        """Fuse a GNSS fix (3-D, covariance per :func:`gnss_covariance_enu`), gated at 3 dof."""
        if fix.status == FixStatus.NO_FIX or fix.fix_quality == 0:
            return self._reject(GNSS, "invalid")
        if not usable_gnss_covariance(fix):
            return self._reject(GNSS, "bad_covariance")
        self._ensure_origin(fix.lat_deg, fix.lon_deg, fix.alt_m)
        z = np.array(self.origin.to_enu(fix.lat_deg, fix.lon_deg, fix.alt_m), dtype=np.float64)
        R = gnss_covariance_enu(fix, self.cfg)
        velocity = velocity_from_course(fix)
        return self._update(GNSS, _Measurement(fix.stamp_s, z, R), H_POSITION_3D,
                            self.cfg.gnss_gate_probability, velocity)

    def update_visual(self, fix: VisualFix) -> UpdateResult:
        """Fuse a visual fix (2-D east/north), gated at 2 dof; it starts the filter only when confident.

        A fix with ``from_prior_patch`` was found in a patch centred on this filter's own estimate, so it can
        only confirm that estimate, drift included: it is fused, but it does not hold off the recovery of a
        sensor the filter keeps rejecting (see the module doc)."""
        previous = self._last_accepted_s.get(VISUAL)
        result = self._update_visual(fix)
        if result.accepted and fix.from_prior_patch:
            self._last_accepted_s[VISUAL_FROM_PRIOR] = self._last_accepted_s.pop(VISUAL)
            if previous is not None:
                self._last_accepted_s[VISUAL] = previous
        return result

    def _update_visual(self, fix: VisualFix) -> UpdateResult:
        self._ensure_origin(fix.lat_deg, fix.lon_deg, 0.0)
        east, north, _ = self.origin.to_enu(fix.lat_deg, fix.lon_deg, self._up_guess())
        R = _visual_covariance(fix, self.cfg.min_visual_sigma_m)
        if R is None:
            return self._reject(VISUAL, "invalid")
        if self.state is None and fix.confidence < self.cfg.init_min_visual_confidence:
            return self._reject(VISUAL, "not_initialized")
        return self._update(VISUAL, _Measurement(fix.stamp_s, np.array([east, north]), R), H_POSITION_2D,
                            self.cfg.visual_gate_probability, None)

    def position_enu(self) -> tuple[float, float, float]:
        if self.state is None:
            raise RuntimeError("the fusion filter is not initialised yet (no GNSS or confident visual fix)")
        return tuple(float(v) for v in self.state.x[:3])

    def position_latlon(self) -> tuple[float, float, float]:
        """(lat_deg, lon_deg, alt_m) of the current estimate."""
        return self.origin.from_enu(*self.position_enu())

    def _ensure_origin(self, lat_deg: float, lon_deg: float, alt_m: float) -> None:
        if self.origin is None:
            self.origin = EnuFrame(lat_deg, lon_deg, alt_m)
            log.info("fusion ENU origin set to %s", self.origin)

    def _up_guess(self) -> float:
        return float(self.state.x[2]) if self.state is not None else 0.0

    def _update(self, sensor: str, m: _Measurement, H: np.ndarray, gate: float,
                velocity: np.ndarray | None) -> UpdateResult:
        if self.state is None:
            return self._try_initialize(sensor, m, velocity, gate)
        if m.stamp_s < self.stamp_s - self.cfg.max_measurement_lag_s:
            self.counters.out_of_order += 1
            return self._reject(sensor, "out_of_order")
        self.predict_to(m.stamp_s)
        if self.state is None:  # went stale during the prediction
            return self._update(sensor, m, H, gate, velocity)
        R = self._adapted_noise(sensor, m, H)
        innovation = self.state.innovation(m.z, H, R)
        if passes_gate(innovation.mahalanobis_sq, gate, len(m.z)):
            self.state.update(innovation, H, R)
            return self._accept(sensor, m.stamp_s, "fused", innovation.mahalanobis_sq)
        return self._gated(sensor, m, gate, innovation.mahalanobis_sq)

    def _try_initialize(self, sensor: str, m: _Measurement, velocity: np.ndarray | None,
                        gate: float) -> UpdateResult:
        """Start the filter once ``init_<sensor>_fixes`` consecutive measurements agree (a constant-velocity fit
        explains them within the gate), so one wrong tile match cannot start a GNSS-denied flight."""
        needed = self.cfg.init_visual_fixes if sensor == VISUAL else self.cfg.init_gnss_fixes
        pending = self._pending[sensor]
        pending.append(m)
        del pending[:-needed]
        if len(pending) < needed or (needed > 1 and not _consistent_track(pending, gate)):
            return self._reject(sensor, "not_initialized")
        if needed > 1:
            velocity = _fit_constant_velocity(pending)[1]
        self._initialize(sensor, m, velocity)
        pending.clear()
        return self._accept(sensor, m.stamp_s, "initialized")

    def _adapted_noise(self, sensor: str, m: _Measurement, H: np.ndarray) -> np.ndarray:
        """GNSS noise scaled by a running mean of its normalised innovation squared (covariance matching).

        ``s <- (1 - a) s + a min(NIS / m, s_max)``, ``s >= 1``, ``R_used = s R``: when fixes keep landing further
        from the estimate than their reported covariance allows (multipath the receiver does not report),
        their weight drops instead of dragging the estimate; consistent fixes keep ``s`` near 1.
        """
        alpha = self.cfg.gnss_noise_adaptation
        if sensor != GNSS or alpha <= 0:
            return m.R
        nis = self.state.innovation(m.z, H, m.R).mahalanobis_sq / len(m.z)
        scale = (1 - alpha) * self._gnss_noise_scale + alpha * min(nis, self.cfg.gnss_max_noise_scale)
        self._gnss_noise_scale = max(1.0, scale)
        return m.R * self._gnss_noise_scale

    def _gated(self, sensor: str, m: _Measurement, gate: float, d2: float) -> UpdateResult:
        run = self._rejected_run[sensor]
        run.append(m)
        del run[:-self.cfg.recovery_rejections]
        if self._should_recover(sensor, m.stamp_s, gate):
            velocity = _fit_constant_velocity(run)[1]
            log.warning("%s rejected %d times in a row but self-consistent: re-initialising the filter",
                        sensor, len(run))
            self.counters.filter_resets += 1
            self._initialize(sensor, m, velocity)
            return self._accept(sensor, m.stamp_s, "recovered", d2)
        return self._reject(sensor, "gated", d2)

    def _should_recover(self, sensor: str, stamp_s: float, gate: float) -> bool:
        run = self._rejected_run[sensor]
        if len(run) < self.cfg.recovery_rejections:
            return False
        others = [t for s, t in self._last_accepted_s.items() if s not in (sensor, VISUAL_FROM_PRIOR)]
        if others and stamp_s - max(others) < self.cfg.recovery_quiet_s:
            return False
        return _consistent_track(run, gate)

    def _initialize(self, sensor: str, m: _Measurement, velocity: np.ndarray | None) -> None:
        cfg = self.cfg
        x, P = np.zeros(6), np.zeros((6, 6))
        dim = len(m.z)
        x[:dim], P[:dim, :dim] = m.z, m.R
        if dim == 2:
            x[2] = self._up_guess()
            P[2, 2] = cfg.init_up_sigma_m**2
        if velocity is not None:
            x[3:3 + len(velocity)] = velocity
        P[3:6, 3:6] = np.eye(3) * cfg.init_velocity_sigma_mps**2
        self.state, self.stamp_s = KalmanState(x, P), m.stamp_s
        log.info("fusion initialised from %s at E=%.1f N=%.1f", sensor, x[0], x[1])

    def _accept(self, sensor: str, stamp_s: float, reason: str, d2: float = float("nan")) -> UpdateResult:
        self._last_accepted_s[sensor] = stamp_s
        self._rejected_run[sensor].clear()
        setattr(self.counters, f"{sensor}_accepted", getattr(self.counters, f"{sensor}_accepted") + 1)
        return UpdateResult(True, reason, d2)

    def _reject(self, sensor: str, reason: str, d2: float = float("nan")) -> UpdateResult:
        setattr(self.counters, f"{sensor}_rejected", getattr(self.counters, f"{sensor}_rejected") + 1)
        key = f"{sensor}_{reason}"
        self.counters.rejected_by_reason[key] = self.counters.rejected_by_reason.get(key, 0) + 1
        return UpdateResult(False, reason, d2)


def _visual_covariance(fix: VisualFix, min_sigma_m: float) -> np.ndarray | None:
    """(2, 2) E/N covariance of a visual fix, variances floored at ``min_sigma_m^2``; None if not usable."""
    R = np.asarray(fix.covariance_en_m2, dtype=np.float64).reshape(2, 2)
    if not np.all(np.isfinite(R)) or R[0, 0] < 0 or R[1, 1] < 0:
        return None
    R = 0.5 * (R + R.T)
    R[np.diag_indices(2)] = np.maximum(np.diag(R), min_sigma_m**2)
    return R if np.linalg.det(R) > 0 else None


def _fit_constant_velocity(run: list[_Measurement]) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``z(t) = a + b (t - t_last)`` over the horizontal part: (a, b), each (2,)."""
    t = np.array([m.stamp_s for m in run]) - run[-1].stamp_s
    Z = np.stack([m.z[:2] for m in run])  # (n, 2)
    A = np.stack([np.ones_like(t), t], axis=1)
    coef, *_ = np.linalg.lstsq(A, Z, rcond=None)
    return coef[0], coef[1]


def _consistent_track(run: list[_Measurement], gate: float) -> bool:
    """True when every measurement lies within the gate of the constant-velocity line through them all."""
    a, b = _fit_constant_velocity(run)
    t_last = run[-1].stamp_s
    threshold = chi2_quantile(gate, 2)
    for m in run:
        residual = m.z[:2] - (a + b * (m.stamp_s - t_last))
        if float(residual @ np.linalg.solve(m.R[:2, :2], residual)) > threshold:
            return False
    return True

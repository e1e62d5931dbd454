"""Constant-velocity Kalman filter core in local ENU: state ``[e, n, u, ve, vn, vu]`` (m, m/s).

Pure numpy, no time bookkeeping and no sensor logic (that lives in :mod:`edge_geoloc.fusion.filter`).
Both measurement models are linear (position observed directly in ENU), so the EKF update is the Kalman
update; the filter is still called an EKF because the measurements arrive as WGS84 lat/lon and are
linearised into the ENU tangent frame at the origin.

Prediction over ``dt`` (per axis, white-noise acceleration with spectral density ``q = sigma_a^2``)::

    F = [[1, dt], [0, 1]],   Q = q * [[dt^3/3, dt^2/2], [dt^2/2, dt]]

With a velocity time constant ``tau`` the velocity is a first-order Gauss-Markov process (``dv = -v/tau dt +
dw``), so a long prediction without measurements does not extrapolate a straight line forever; with
``phi = exp(-dt/tau)``::

    F = [[1, tau (1 - phi)], [0, phi]]
    Q = q * [[tau^2 (dt - 2 tau (1 - phi) + tau/2 (1 - phi^2)), tau^2/2 (1 - phi)^2],
             [tau^2/2 (1 - phi)^2,                                tau/2 (1 - phi^2)]]

which tends to the constant-velocity matrices as ``tau -> inf`` (``tau = 0`` selects them).

Update with ``z = H x + v``, ``v ~ N(0, R)``::

    y = z - H x,   S = H P H^T + R,   d^2 = y^T S^-1 y,   K = P H^T S^-1,
    x <- x + K y,  P <- (I - K H) P (I - K H)^T + K R K^T   (Joseph form, stays symmetric positive definite)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STATE_DIM = 6
H_POSITION_3D = np.hstack([np.eye(3), np.zeros((3, 3))])  # GNSS: E, N, U
H_POSITION_2D = np.hstack([np.eye(2), np.zeros((2, 4))])  # visual fix: E, N


@dataclass(frozen=True)
class Innovation:
    """The innovation of one measurement against the predicted state."""

    residual: np.ndarray  # (m,) z - H x
    covariance: np.ndarray  # (m, m) S = H P H^T + R
    mahalanobis_sq: float  # y^T S^-1 y


class KalmanState:
    """Mean ``x`` (6,) and covariance ``P`` (6, 6) of the constant-velocity ENU state."""

    def __init__(self, x: np.ndarray, P: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(STATE_DIM)
        P = np.asarray(P, dtype=np.float64).reshape(STATE_DIM, STATE_DIM)
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(P))):
            raise ValueError("Kalman state and covariance must be finite")
        self.x, self.P = x, 0.5 * (P + P.T)

    def copy(self) -> KalmanState:
        return KalmanState(self.x.copy(), self.P.copy())

    def predict(self, dt_s: float, accel_sigma_mps2: float, vertical_accel_sigma_mps2: float,
                velocity_tau_s: float = 0.0) -> None:
        """Propagate mean and covariance ``dt_s`` seconds ahead (no-op for dt <= 0)."""
        if dt_s <= 0:
            return
        F = transition_matrix(dt_s, velocity_tau_s)
        Q = process_noise(dt_s, accel_sigma_mps2, vertical_accel_sigma_mps2, velocity_tau_s)
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + Q
        self.P = 0.5 * (self.P + self.P.T)

    def innovation(self, z: np.ndarray, H: np.ndarray, R: np.ndarray) -> Innovation:
        y = np.asarray(z, dtype=np.float64) - H @ self.x
        S = H @ self.P @ H.T + R
        d2 = float(y @ np.linalg.solve(S, y))
        return Innovation(y, S, d2)

    def update(self, innovation: Innovation, H: np.ndarray, R: np.ndarray) -> None:
        """Kalman update with a precomputed innovation (Joseph form)."""
        K = np.linalg.solve(innovation.covariance, H @ self.P).T  # P H^T S^-1 (S symmetric)
        self.x = self.x + K @ innovation.residual
        I_KH = np.eye(STATE_DIM) - K @ H
        self.P = I_KH @ self.P @ I_KH.T + K @ R @ K.T
        self.P = 0.5 * (self.P + self.P.T)


def transition_matrix(dt_s: float, velocity_tau_s: float = 0.0) -> np.ndarray:
    F = np.eye(STATE_DIM)
    if velocity_tau_s > 0:
        phi = math.exp(-dt_s / velocity_tau_s)
        F[0:3, 3:6] = velocity_tau_s * (1.0 - phi) * np.eye(3)
        F[3:6, 3:6] = phi * np.eye(3)
    else:
        F[0:3, 3:6] = dt_s * np.eye(3)
    return F


def _noise_block(dt: float, tau: float) -> np.ndarray:
    """Per-axis (position, velocity) noise for unit spectral density (see module doc)."""
    if tau <= 0:
        return np.array([[dt**3 / 3.0, dt**2 / 2.0], [dt**2 / 2.0, dt]])
    x = dt / tau
    a = -math.expm1(-x)  # 1 - phi, without cancellation
    # x - 2a + a(2 - a)/2 = x - 3/2 + 2 e^-x - e^-2x / 2, by its series when x is small (cancellation)
    f = x**3 / 3 - x**4 / 4 + 7 * x**5 / 60 - x**6 / 24 if x < 0.05 else x - a - 0.5 * a * a
    pv = 0.5 * tau**2 * a * a
    return np.array([[tau**3 * f, pv], [pv, 0.5 * tau * a * (2.0 - a)]])


def process_noise(dt_s: float, accel_sigma_mps2: float, vertical_accel_sigma_mps2: float,
                  velocity_tau_s: float = 0.0) -> np.ndarray:
    """Discrete process-noise covariance (see module doc), horizontal and vertical densities."""
    Q = np.zeros((STATE_DIM, STATE_DIM))
    block = _noise_block(dt_s, velocity_tau_s)
    for axis, sigma in ((0, accel_sigma_mps2), (1, accel_sigma_mps2), (2, vertical_accel_sigma_mps2)):
        idx = [axis, axis + 3]
        Q[np.ix_(idx, idx)] = sigma**2 * block
    return Q

"""Global relocalization over the whole map: a histogram filter over (speed, map cell) fed by a map matcher.

Why a grid here, when the filter itself is particles (``particle.py``): a GNSS-denied start must weigh every
place of the map at every frame, and a map matcher scores every place anyway (its score map, normalised against
the map's own background: :func:`edge_geoloc.runtime.map_search.score_background`). Over that score grid (2 m
cells: 185 x 185 for a 400 m map) a histogram filter is exact where particles would be too sparse, and costs a few
milliseconds per frame. Its posterior is the particle filter's proposal: it seeds a cold start only once one
place holds ``grid_confident_mass`` of the belief, and it is where augmented MCL draws recovery hypotheses
(Thrun et al., *Probabilistic Robotics* ch. 8.3: a better proposal than the last frame alone).

- **State**: belief over (speed hypothesis, cell), float32, normalised after every step; speeds from
  ``grid_min_speed_mps`` to ``max_grid_speed_mps`` (a hypothesis at rest would explain any repeated texture,
  frame after frame; see docs/runtime.md).
- **Predict**: every speed layer shifts along the measured heading (the mean of the headings at the two ends of
  the interval) by speed x dt, blurred by ``grid_blur_m`` plus a spread that grows with the turn; the speed
  diffuses to its neighbours (``grid_speed_walk``). Without a heading, each layer blurs by its reach instead.
  A share ``grid_uniform_floor`` of the belief is spread uniformly (the kidnapped-robot term): no place is ever
  ruled out for good, so a wrong lock can be overturned by the frames that follow.
- **Update**: the frame's z-scores as a tempered likelihood ratio against a background that knows nothing,
  mixed with it (heavy-tailed, so one bad frame cannot erase the truth)::

      l(x) = (pi_0 + (1 - pi_0) (n p(x))^e)^w,   p = softmax(beta z),   w = min(1, dt / grid_evidence_period_s)

  ``w`` (1 when ``grid_evidence_period_s`` is 0, the default) makes it evidence per second: frames closer than the
  period repeat most of each other's errors.

  and GNSS fixes as the same Gaussian + uniform mixture as the particles use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_geoloc.fusion.config import ParticleConfig
from edge_geoloc.fusion.likelihoods import gaussian_outlier_likelihood, inverse_affine, pixel_lookup, usable_affine


@dataclass(frozen=True)
class MapScores:
    """One frame's normalised map-matcher scores over the whole map, geo-referenced like a heat map:
    ``enu_to_pixel`` is the (2, 3) affine ``[row, col] = A @ [east, north, 1]`` of the score grid."""

    z: np.ndarray  # (H, W) z-scores (higher: more like the frame)
    enu_to_pixel: np.ndarray  # (2, 3)


def map_scores_problem(scores: MapScores) -> str | None:
    """Why a score grid cannot be used (one short reason), or None when it can."""
    z = np.asarray(scores.z)
    if z.ndim != 2 or min(z.shape) < 2:
        return "map_scores_shape"
    if not np.all(np.isfinite(z)):
        return "map_scores_not_finite"
    return None if usable_affine(scores.enu_to_pixel) else "map_scores_georef"


def score_log_likelihood(z: np.ndarray, cfg: ParticleConfig) -> np.ndarray:
    """``log(pi_0 + (1 - pi_0) (n p)^e)`` with ``p = softmax(beta z)`` over the grid (module doc): (H, W)."""
    logits = cfg.grid_beta * np.asarray(z, dtype=np.float64)
    log_p = logits - logits.max()
    log_p -= math.log(float(np.exp(log_p).sum()))
    ratio = np.exp(cfg.grid_exponent * (log_p + math.log(log_p.size)))
    pi0 = 1.0 - cfg.grid_inlier_probability
    return np.log(pi0 + (1.0 - pi0) * ratio)


@dataclass(frozen=True)
class GridMode:
    """The grid belief's heaviest place: its ENU position and the mass within ``grid_mode_radius_m``."""

    en: np.ndarray  # (2,)
    mass: float


class GridRelocalizer:
    """Histogram filter over (speed, cell) of one score grid (module doc). Deterministic; numpy and OpenCV."""

    def __init__(self, scores: MapScores, cfg: ParticleConfig) -> None:
        self.cfg = cfg
        self.shape = tuple(np.asarray(scores.z).shape)
        self.enu_to_pixel = np.asarray(scores.enu_to_pixel, dtype=np.float64)
        self.speeds = np.arange(cfg.grid_min_speed_mps, cfg.max_grid_speed_mps + 1e-9, cfg.grid_speed_step_mps)
        pixel_to_enu = inverse_affine(self.enu_to_pixel)
        rows, cols = np.mgrid[0:self.shape[0], 0:self.shape[1]]
        rc = np.stack([rows.ravel() + 0.5, cols.ravel() + 0.5, np.ones(rows.size)])
        self.cell_en = (pixel_to_enu @ rc).T  # (H*W, 2) cell centres
        self.cell_m = 1.0 / math.sqrt(abs(float(np.linalg.det(self.enu_to_pixel[:, :2]))))
        self.belief: np.ndarray | None = None  # (S, H, W) float32, sums to 1
        self.last_log_likelihood: np.ndarray | None = None  # (H, W) of the last frame
        self.stamp_s: float | None = None
        self.heading: float | None = None  # the heading the last prediction ended with
        self._scored_s: float | None = None  # the last frame's stamp

    def matches(self, scores: MapScores) -> bool:
        """Whether ``scores`` lies on this grid (same shape and geo-reference)."""
        return (tuple(np.asarray(scores.z).shape) == self.shape
                and np.allclose(np.asarray(scores.enu_to_pixel, dtype=np.float64), self.enu_to_pixel))

    # ------------------------------------------------------------------ filter
    def predict_to(self, stamp_s: float, heading_rad: float | None) -> None:
        """Move the belief to ``stamp_s`` along the measured heading (see the module doc)."""
        if self.belief is None or self.stamp_s is None or stamp_s <= self.stamp_s:
            self.stamp_s = stamp_s if self.stamp_s is None else max(self.stamp_s, stamp_s)
            self.heading = heading_rad if heading_rad is not None else self.heading
            return
        dt = stamp_s - self.stamp_s
        start = self.heading if self.heading is not None else heading_rad
        moved = np.empty_like(self.belief)
        for k, speed in enumerate(self.speeds):
            moved[k] = self._move(self.belief[k], float(speed) * dt, start, heading_rad)
        walk = self.cfg.grid_speed_walk
        padded = np.concatenate([moved[:1], moved, moved[-1:]])
        moved = (1 - 2 * walk) * moved + walk * (padded[:-2] + padded[2:])
        floor = self.cfg.grid_uniform_floor
        self.belief = self._normalised((1 - floor) * moved / max(float(moved.sum()), 1e-30) + floor / moved.size)
        self.stamp_s, self.heading = stamp_s, heading_rad

    def _move(self, layer: np.ndarray, distance_m: float, start: float | None, end: float | None) -> np.ndarray:
        blur_m = self.cfg.grid_blur_m
        if start is None or end is None:  # no heading: anywhere within reach
            shift = np.zeros(2)
            blur_m = math.hypot(blur_m, distance_m / 2)
        else:
            turn = (end - start + math.pi) % (2 * math.pi) - math.pi
            course = start + turn / 2
            shift = self.enu_to_pixel[:, :2] @ (distance_m * np.array([math.sin(course), math.cos(course)]))
            blur_m = math.hypot(blur_m, 0.25 * distance_m * abs(turn))
        M = np.float32([[1, 0, shift[1]], [0, 1, shift[0]]])  # x = col, y = row
        out = cv2.warpAffine(layer, M, (self.shape[1], self.shape[0]), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        return cv2.GaussianBlur(out, (0, 0), max(blur_m / self.cell_m, 0.3))

    def update(self, scores: MapScores) -> None:
        """Weigh by one frame's scores (the first one starts the belief, uniform in speed), tempered by
        :meth:`_evidence_share`."""
        log_l = self._evidence_share() * score_log_likelihood(scores.z, self.cfg)
        self.last_log_likelihood = log_l
        self._scored_s = self.stamp_s
        self._weigh(np.exp(log_l - log_l.max()))

    def _evidence_share(self) -> float:
        """How much of a whole frame's evidence this frame adds: frames closer than ``grid_evidence_period_s``
        see nearly the same ground, and their scores' errors repeat, so at 4 Hz each counts an eighth of a frame
        at 0.5 Hz (the rate the likelihood's settings were chosen at); evidence per second, not per frame."""
        if self._scored_s is None or self.stamp_s is None or self.cfg.grid_evidence_period_s == 0:
            return 1.0
        return float(min(1.0, max(0.0, self.stamp_s - self._scored_s) / self.cfg.grid_evidence_period_s))

    def likelihood_at(self, en: np.ndarray) -> np.ndarray:
        """(N,) the last frame's score likelihood at ENU positions (the background's ``pi_0`` off the grid)."""
        pi0 = 1.0 - self.cfg.grid_inlier_probability
        out = np.full(len(en), pi0)
        if self.last_log_likelihood is None:
            return out
        r, c, inside = pixel_lookup(self.enu_to_pixel, en, self.shape)
        out[inside] = np.exp(self.last_log_likelihood[r[inside], c[inside]])
        return out

    def update_gaussian(self, z_en: np.ndarray, R: np.ndarray) -> None:
        """Weigh by a GNSS position fix (Gaussian + uniform outlier mixture, as the particles)."""
        if self.belief is None:
            return
        pc = self.cfg
        likelihood = gaussian_outlier_likelihood(self.cell_en, z_en, R, pc.gnss_outlier_probability,
                                                 pc.gnss_outlier_radius_m)
        self._weigh(likelihood.reshape(self.shape) / likelihood.max())

    def _weigh(self, likelihood: np.ndarray) -> None:
        """Multiply by a (H, W) likelihood scaled to a maximum of 1, and normalise."""
        likelihood = likelihood.astype(np.float32)[None]
        if self.belief is None:
            self.belief = self._normalised(np.repeat(likelihood, len(self.speeds), axis=0))
            return
        weighted = self.belief * likelihood
        self.belief = self._normalised(weighted) if float(weighted.sum()) > 0 else self.belief

    @staticmethod
    def _normalised(belief: np.ndarray) -> np.ndarray:
        return (belief / np.float32(belief.sum())).astype(np.float32)

    # ------------------------------------------------------------------ read-out
    def mode(self) -> GridMode:
        """The heaviest cell of the position marginal and the mass within ``grid_mode_radius_m`` of it."""
        position = self.belief.sum(axis=0, dtype=np.float64).ravel()
        best = int(np.argmax(position))
        near = np.sum((self.cell_en - self.cell_en[best]) ** 2, axis=1) <= self.cfg.grid_mode_radius_m**2
        return GridMode(self.cell_en[best].copy(), float(position[near].sum()))

    def sample(self, count: int, heading_rad: float | None, rng: np.random.Generator) -> np.ndarray:
        """``count`` particles (east, north, v_east, v_north) drawn from the belief: a cell and a speed, a position
        uniform inside the cell, the course along the heading (isotropic without one)."""
        belief = self.belief.ravel().astype(np.float64)
        flat = rng.choice(belief.size, size=count, p=belief / belief.sum())
        speed_idx, cell = np.divmod(flat, self.shape[0] * self.shape[1])
        jitter = (rng.random((count, 2)) - 0.5) * self.cell_m
        en = self.cell_en[cell] + jitter
        speed = self.speeds[speed_idx] + (rng.random(count) - 0.5) * self.cfg.grid_speed_step_mps
        course = rng.uniform(0, 2 * math.pi, count) if heading_rad is None else np.full(count, heading_rad)
        return np.hstack([en, (np.abs(speed)[:, None] * np.stack([np.sin(course), np.cos(course)], axis=1))])

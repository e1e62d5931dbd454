"""What a particle cloud says: its dominant mode, a covariance from the spread, and whether it is ambiguous.

Modes are found on a coarse histogram (cell ``mode_cell_m``): the heaviest cell is the first mode and the
particles within ``mode_radius_m`` of its weighted centre belong to it; the heaviest cell among the others is
the second mode. The belief is ambiguous when the second mode holds at least ``ambiguous_mass`` of the weight,
or when the dominant mode holds less than ``min_dominant_mass`` (a diffuse cloud, e.g. just after a cold start):
then the mean of the dominant mode is still reported, with the covariance of the whole cloud, so nobody
mistakes it for a confident fix. O(N log N) in the number of particles, independent of the map size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_geoloc.fusion.config import ParticleConfig


@dataclass(frozen=True)
class BeliefSummary:
    """The published belief: mean (4,) and covariance (4, 4) of (east, north, v_east, v_north)."""

    mean: np.ndarray
    covariance: np.ndarray
    dominant_mass: float  # weight of the dominant mode
    second_mass: float  # weight of the second mode (0 for a single mode)
    second_mode_en_m: np.ndarray | None  # (2,) centre of the second mode
    ambiguous: bool


def weighted_moments(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean (D,) and covariance (D, D) of rows ``x`` (N, D); ``w`` need not be normalised."""
    w = w / w.sum()
    mean = w @ x
    d = x - mean
    return mean, (d * w[:, None]).T @ d


def _heaviest_cell_centre(en: np.ndarray, w: np.ndarray, cell_m: float) -> tuple[np.ndarray, float]:
    """Weighted centre of the heaviest histogram cell, and that cell's weight."""
    cells = np.floor(en / cell_m).astype(np.int64)
    keys, inverse = np.unique(cells, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    mass = np.bincount(inverse, weights=w, minlength=len(keys))
    best = int(np.argmax(mass))
    members = inverse == best
    return (w[members] @ en[members]) / mass[best], float(mass[best])


def _members(en: np.ndarray, centre: np.ndarray, radius_m: float) -> np.ndarray:
    return np.sum((en - centre) ** 2, axis=1) <= radius_m**2


def summarize_belief(particles: np.ndarray, weights: np.ndarray, cfg: ParticleConfig) -> BeliefSummary:
    """Dominant mode, second mode and ambiguity of a weighted cloud (see the module doc)."""
    w = weights / weights.sum()
    en = particles[:, :2]
    centre, _ = _heaviest_cell_centre(en, w, cfg.mode_cell_m)
    first = _members(en, centre, cfg.mode_radius_m)
    if not first.any():  # cannot happen with a positive cell mass; kept for safety against NaN
        first = np.ones(len(w), bool)
    first_mass = float(w[first].sum())
    mean, cov = weighted_moments(particles[first], w[first])
    second_mass, second_centre = 0.0, None
    rest = ~first
    if rest.any() and w[rest].sum() > 0:
        second_centre, _ = _heaviest_cell_centre(en[rest], w[rest], cfg.mode_cell_m)
        second_mass = float(w[rest][_members(en[rest], second_centre, cfg.mode_radius_m)].sum())
    ambiguous = second_mass >= cfg.ambiguous_mass or first_mass < cfg.min_dominant_mass
    if ambiguous:
        _, cov_all = weighted_moments(particles, w)
        cov = cov_all
    return BeliefSummary(mean, _regularised(cov), first_mass, second_mass, second_centre, ambiguous)


def _regularised(cov: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """Symmetric, with a tiny diagonal floor so a collapsed cloud still has a positive-definite covariance."""
    cov = 0.5 * (cov + cov.T)
    return cov + np.eye(len(cov)) * floor

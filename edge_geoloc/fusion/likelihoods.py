"""Measurement likelihoods of the particle filter, evaluated for all particles at once (pure numpy).

GNSS and single visual fixes: a Gaussian with the reported covariance mixed with a uniform outlier density, so
a multipath jump lowers every particle's weight alike instead of pulling the belief::

    l(x) = (1 - eps) N(z; x, R) + eps / (pi r^2)

Heat maps: a heat map ``p`` over a patch of ``n`` pixels is compared with a background that knows nothing
(uniform over the patch): the likelihood ratio is ``n p(x)``, tempered to ``(n p(x))^e`` against an
over-confident model. Several heat maps (top-k tiles, the patch around the belief) form a mixture with the
background, each holding the truth at its peak with prior ``pi_k``::

    l(x) = pi_0 + sum_k pi_k (n_k p_k(x))^e [x inside patch k],   pi_0 = 1 - sum_k pi_k

so an off-patch particle keeps ``pi_0`` and a wrong peak cannot capture a belief that is not near it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HeatmapMeasurement:
    """One heat map over a geo-referenced patch, as a likelihood over the filter's ENU plane.

    ``enu_to_pixel`` is the (2, 3) affine ``[row, col] = A @ [east, north, 1]`` (continuous pixels, (0, 0) the
    upper-left corner). ``global_candidate`` marks a tile found by global retrieval: recovery draws new
    hypotheses from those only, never from the patch around the belief itself."""

    probability: np.ndarray  # (H, W), sums to 1
    enu_to_pixel: np.ndarray  # (2, 3)
    global_candidate: bool = True
    confidence: float = float("nan")  # the heat map's own confidence, for the record

    @property
    def pixel_to_enu(self) -> np.ndarray:
        """(2, 3) inverse affine: ``[east, north] = B @ [row, col, 1]``."""
        return inverse_affine(self.enu_to_pixel)


def heatmap_problem(probability: np.ndarray, enu_to_pixel: np.ndarray) -> str | None:
    """Why a heat map cannot be used (one short reason), or None when it can."""
    p = np.asarray(probability)
    if p.ndim != 2 or min(p.shape) < 2:
        return "heatmap_shape"
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.sum() <= 0:
        return "heatmap_not_finite"
    return None if usable_affine(enu_to_pixel) else "heatmap_georef"


def usable_affine(enu_to_pixel: np.ndarray) -> bool:
    """Whether a (2, 3) ENU -> pixel affine is finite and invertible."""
    A = np.asarray(enu_to_pixel, dtype=np.float64)
    return A.shape == (2, 3) and bool(np.all(np.isfinite(A))) and abs(np.linalg.det(A[:, :2])) >= 1e-12


def inverse_affine(enu_to_pixel: np.ndarray) -> np.ndarray:
    """(2, 3) pixel -> ENU affine of an ENU -> pixel one: ``[east, north] = B @ [row, col, 1]``."""
    return np.linalg.inv(np.vstack([enu_to_pixel, [0.0, 0.0, 1.0]]))[:2]


def pixel_lookup(enu_to_pixel: np.ndarray, en: np.ndarray, shape: tuple[int, ...]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer (row, col) of the pixel under each ENU position (N, 2), and whether it lies inside ``shape``."""
    rc = en @ enu_to_pixel[:, :2].T + enu_to_pixel[:, 2]  # (N, 2) continuous row, col
    r, c = np.floor(rc[:, 0]).astype(np.int64), np.floor(rc[:, 1]).astype(np.int64)
    return r, c, (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])


def affine_from_points(enu_en: np.ndarray, pixel_rc: np.ndarray) -> np.ndarray:
    """(2, 3) affine ENU -> pixel through three (or more) corresponding points, least squares."""
    X = np.hstack([np.asarray(enu_en, dtype=np.float64), np.ones((len(enu_en), 1))])  # (n, 3)
    coef, *_ = np.linalg.lstsq(X, np.asarray(pixel_rc, dtype=np.float64), rcond=None)  # (3, 2)
    return coef.T


def heatmap_ratio(m: HeatmapMeasurement, en: np.ndarray, exponent: float) -> np.ndarray:
    """``(n p(x))^e`` for particles inside the patch, NaN outside: (N,)."""
    p = np.asarray(m.probability, dtype=np.float64)
    r, c, inside = pixel_lookup(m.enu_to_pixel, en, p.shape)
    out = np.full(len(en), np.nan)
    out[inside] = (p.size * p[r[inside], c[inside]] / p.sum()) ** exponent
    return out


def heatmap_likelihood(measurements: Sequence[HeatmapMeasurement], en: np.ndarray, inlier_probability: float,
                       exponent: float) -> np.ndarray:
    """Mixture likelihood of several heat maps against the background (module doc): (N,), >= pi_0 > 0."""
    pi_k = inlier_probability / len(measurements)
    out = np.full(len(en), 1.0 - inlier_probability)
    for m in measurements:
        ratio = heatmap_ratio(m, en, exponent)
        out += pi_k * np.where(np.isnan(ratio), 0.0, ratio)
    return out


def gaussian_outlier_likelihood(en: np.ndarray, z: np.ndarray, R: np.ndarray, outlier_probability: float,
                                outlier_radius_m: float) -> np.ndarray:
    """``(1 - eps) N(z; x, R) + eps / (pi r^2)`` for each particle position ``x``: (N,)."""
    d = np.asarray(z, dtype=np.float64)[None, :] - en
    R_inv = np.linalg.inv(R)
    d2 = np.einsum("ni,ij,nj->n", d, R_inv, d)
    dim = len(z)
    norm = 1.0 / math.sqrt((2 * math.pi) ** dim * float(np.linalg.det(R)))
    background = 1.0 / (math.pi * outlier_radius_m**2) ** (dim / 2.0)
    return (1.0 - outlier_probability) * norm * np.exp(-0.5 * d2) + outlier_probability * background


def sample_from_heatmaps(measurements: Sequence[HeatmapMeasurement], count: int, exponent: float,
                         rng: np.random.Generator) -> np.ndarray:
    """``count`` ENU positions drawn from the tempered heat maps (equal share per map): (count, 2)."""
    which = rng.integers(0, len(measurements), count)
    out = np.empty((count, 2))
    for k, m in enumerate(measurements):
        idx = np.flatnonzero(which == k)
        if idx.size == 0:
            continue
        p = np.asarray(m.probability, dtype=np.float64) ** exponent
        flat = rng.choice(p.size, size=idx.size, p=(p / p.sum()).ravel())
        rows, cols = np.divmod(flat, p.shape[1])
        rc = np.stack([rows + rng.random(idx.size), cols + rng.random(idx.size)], axis=1)
        out[idx] = rc @ m.pixel_to_enu[:, :2].T + m.pixel_to_enu[:, 2]
    return out

"""Mahalanobis gating: accept a measurement when ``y^T S^-1 y`` is below a chi-square quantile.

robot_localization's ``*_rejection_threshold`` parameters are Mahalanobis *distances*; here the gate is a
probability (e.g. 0.999) turned into the squared-distance threshold for the measurement's dimension, so the
same number means the same false-rejection rate for 2-D visual fixes and 3-D GNSS fixes.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist


@lru_cache(maxsize=64)
def chi2_quantile(probability: float, dof: int) -> float:
    """Quantile of the chi-square distribution with ``dof`` degrees of freedom.

    Exact for ``dof == 2`` (``-2 ln(1 - p)``); otherwise the closed-form CDF (:func:`chi2_cdf`) is inverted by
    bisection, starting from the Wilson-Hilferty bracket.
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    if dof == 2:
        return -2.0 * math.log1p(-probability)
    z = NormalDist().inv_cdf(probability)
    c = 2.0 / (9.0 * dof)
    guess = dof * max(1.0 - c + z * math.sqrt(c), 0.1) ** 3
    lo, hi = 0.0, 4.0 * guess + 10.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if chi2_cdf(mid, dof) < probability else (lo, mid)
    return 0.5 * (lo + hi)


def chi2_cdf(x: float, dof: int) -> float:
    """CDF of the chi-square distribution for integer ``dof`` (closed form).

    Even k: ``1 - exp(-x/2) sum_{i<k/2} (x/2)^i / i!``; odd k: ``erf(sqrt(x/2)) - exp(-x/2)
    sum_{i=1}^{(k-1)/2} (x/2)^(i-1/2) / Gamma(i + 1/2)``.
    """
    if x <= 0:
        return 0.0
    h = 0.5 * x
    if dof % 2 == 0:
        return 1.0 - math.exp(-h) * sum(h**i / math.factorial(i) for i in range(dof // 2))
    tail = sum(h ** (i - 0.5) / math.gamma(i + 0.5) for i in range(1, (dof - 1) // 2 + 1))
    return math.erf(math.sqrt(h)) - math.exp(-h) * tail


def passes_gate(mahalanobis_sq: float, probability: float, dof: int) -> bool:
    """True when a squared Mahalanobis distance is inside the ``probability`` gate."""
    return math.isfinite(mahalanobis_sq) and mahalanobis_sq <= chi2_quantile(probability, dof)

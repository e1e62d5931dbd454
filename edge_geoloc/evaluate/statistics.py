"""Statistics for comparing localizers: paired bootstrap intervals of an error change, and AUROC of a confidence.

- Paired bootstrap: the same test pairs are scored by two models (``a``, ``b``); resampling the pairs (within
  each group, e.g. seed, when groups are given) ``n`` times gives the distribution of ``mean(b) - mean(a)`` and of
  ``mean(b) / mean(a)``; the interval is its 2.5 and 97.5 percentiles. It "excludes no change" when it does
  not contain 0 (or 1 for the ratio).
- AUROC: the probability that a random positive scores above a random negative, ties counting one half
  (Mann-Whitney ``U / (n_pos n_neg)``); 0.5 is chance.
"""

from __future__ import annotations

import numpy as np


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean ``positives``; NaN when one class is empty."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(positives, bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and positives {y.shape} differ in length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over ties (1-based)
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    for lo, hi in zip(starts, ends, strict=True):
        ranks[order[lo:hi]] = 0.5 * (lo + 1 + hi)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, groups: np.ndarray | None = None, n: int = 2000,
                     seed: int = 0) -> dict[str, float]:
    """Mean change ``b - a`` and ratio ``b / a`` of paired per-sample errors, with 95 % bootstrap intervals."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"a and b must be paired 1-D arrays of equal length, got {a.shape} and {b.shape}")
    groups = np.zeros(len(a), int) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    idx = np.concatenate([rng.choice(m, size=(n, len(m))) for m in members], axis=1)  # (n, N)
    mean_a, mean_b = a[idx].mean(axis=1), b[idx].mean(axis=1)
    change, ratio = mean_b - mean_a, mean_b / np.maximum(mean_a, 1e-12)
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "change": float(b.mean() - a.mean()),
            "change_ci95": [float(v) for v in np.percentile(change, [2.5, 97.5])],
            "ratio": float(b.mean() / max(a.mean(), 1e-12)),
            "ratio_ci95": [float(v) for v in np.percentile(ratio, [2.5, 97.5])], "n": int(len(a)),
            "resamples": int(n)}

"""Parity gate: an exported model must answer like its PyTorch reference, numerically and in task terms.

Numbers: per output max absolute / relative error and the fraction of elements failing Polygraphy's rule
(``|a-b| > atol and |a-b| > rtol*|b|``). Task: retrieval -> the same top-1 tile among the sample set;
localizer -> the same heat-map argmax; map matcher -> the same best position of each frame in its map block
(cosine score map of the frame's features over the block's, as the runtime's global search computes it). A task
disagreement is excused only when the reference itself cannot tell the two answers apart within the measured
numerical error (a tie), so a real flip always counts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from edge_geoloc.export.config import ParityConfig

from edge_geoloc.runtime.learned_matcher import cosine_score_map

logger = logging.getLogger(__name__)


class ParityError(RuntimeError):
    """The exported model does not match its reference within the configured tolerances."""

    def __init__(self, message: str, report: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.report = dict(report)


def element_errors(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> dict[str, float]:
    """Max abs / max rel / mean abs error and the fraction of elements failing both tolerances.

    An element fails if ``|c - r| > atol * max(1, max|r|)`` and ``|c - r| > rtol * |r|``: for outputs of
    unit scale (probabilities, unit embeddings) this is Polygraphy's rule; for unnormalised outputs (matching
    volumes in the hundreds) the absolute tolerance follows the output's range, as float32 rounding does.
    """
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape}, candidate {candidate.shape}")
    ref = reference.astype(np.float64)
    diff = np.abs(candidate.astype(np.float64) - ref)
    rel = diff / np.maximum(np.abs(ref), 1e-12)
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))  # atol is relative to outputs larger than 1
    failing = (diff > atol * scale) & (diff > rtol * np.abs(ref))
    return {"max_abs": float(diff.max(initial=0.0)), "max_rel": float(rel.max(initial=0.0)),
            "mean_abs": float(diff.mean()) if diff.size else 0.0, "failing": int(failing.sum()),
            "failing_fraction": float(failing.mean())}


def top1_agreement(ref_emb: np.ndarray, cand_emb: np.ndarray, top_k: int = 1,
                   excuse_ties: bool = True) -> dict[str, float]:
    """Each sample queries the others (cosine): is the reference's top-1 within the candidate's top-k?

    ``ref_emb``, ``cand_emb``: ``(N, D)`` L2-normalised. The tie margin is ``2 * max_i ||cand_i - ref_i||``,
    a bound on how much any cosine score can move between the two.
    """
    n = ref_emb.shape[0]
    if n < 3:
        raise ValueError("top-1 agreement needs at least 3 samples")
    s_ref = ref_emb @ ref_emb.T
    s_cand = cand_emb @ cand_emb.T
    np.fill_diagonal(s_ref, -np.inf)
    np.fill_diagonal(s_cand, -np.inf)
    margin = 2.0 * float(np.linalg.norm(cand_emb - ref_emb, axis=1).max())
    ref_top = s_ref.argmax(axis=1)
    cand_topk = np.argsort(-s_cand, axis=1)[:, :top_k]
    agree = 0
    for i in range(n):
        hit = ref_top[i] in cand_topk[i]
        tie = excuse_ties and s_ref[i, ref_top[i]] - s_ref[i, cand_topk[i, 0]] <= margin
        agree += int(hit or tie)
    raw = float(np.mean([ref_top[i] in cand_topk[i] for i in range(n)]))
    return {"agreement": agree / n, "raw_agreement": raw, "tie_margin": margin}


def argmax_agreement(ref_maps: np.ndarray, cand_maps: np.ndarray, radius_px: float = 0.0,
                     excuse_ties: bool = True) -> dict[str, float]:
    """Heat maps ``(N, H, W)``: does the candidate's peak land within ``radius_px`` of the reference's?

    A different peak is excused when the reference value there is within the maps' max abs error of its
    own maximum (the reference has two equally good peaks).
    """
    n, _, w = ref_maps.shape
    tie_eps = float(np.abs(cand_maps - ref_maps).max())
    flat_ref, flat_cand = ref_maps.reshape(n, -1), cand_maps.reshape(n, -1)
    ref_idx, cand_idx = flat_ref.argmax(axis=1), flat_cand.argmax(axis=1)
    dist = np.hypot(ref_idx // w - cand_idx // w, ref_idx % w - cand_idx % w)
    near = dist <= radius_px
    tie = (flat_ref[np.arange(n), ref_idx] - flat_ref[np.arange(n), cand_idx] <= tie_eps) & excuse_ties
    return {"agreement": float(np.mean(near | tie)), "raw_agreement": float(np.mean(near)),
            "max_peak_distance_px": float(dist.max()), "tie_margin": tie_eps}


def compare_runs(kind: str, reference: Sequence[Mapping[str, np.ndarray]],
                 candidate: Sequence[Mapping[str, np.ndarray]], cfg: ParityConfig,
                 task_from: int = 0) -> dict[str, Any]:
    """Compare two lists of output dicts; samples from index ``task_from`` on feed the task check."""
    report: dict[str, Any] = {"samples": len(reference), "outputs": {}}
    wrong_shapes = _shape_mismatches(reference, candidate)
    if wrong_shapes:
        return {**report, "task": {"agreement": 0.0, "raw_agreement": 0.0}, "failures": wrong_shapes,
                "passed": False}
    for name in reference[0]:
        ref = np.concatenate([r[name].ravel() for r in reference])  # samples may differ in size (matcher)
        cand = np.concatenate([c[name].ravel() for c in candidate])
        report["outputs"][name] = element_errors(ref, cand, cfg.atol, cfg.rtol)
    task_ref, task_cand = reference[task_from:], candidate[task_from:]
    if kind == "retrieval":
        report["task"] = top1_agreement(_stack(task_ref, "embedding"), _stack(task_cand, "embedding"), cfg.top_k,
                                        cfg.excuse_ties)
    elif kind == "matcher":
        report["task"] = argmax_agreement(_pair_scores(task_ref), _pair_scores(task_cand), cfg.argmax_radius_px,
                                          cfg.excuse_ties)
    else:
        report["task"] = argmax_agreement(_stack(task_ref, "heatmap"), _stack(task_cand, "heatmap"),
                                          cfg.argmax_radius_px, cfg.excuse_ties)
    report["failures"] = parity_failures(report, cfg)
    report["passed"] = not report["failures"]
    return report


def _shape_mismatches(reference: Sequence[Mapping[str, np.ndarray]],
                      candidate: Sequence[Mapping[str, np.ndarray]]) -> list[str]:
    """An output whose shape differs from the reference's (e.g. a size baked in at tracing) fails outright."""
    return [f"{name}: sample {i} has shape {list(c[name].shape)}, the reference {list(r[name].shape)}"
            for i, (r, c) in enumerate(zip(reference, candidate, strict=True)) for name in r
            if r[name].shape != c[name].shape]


def parity_failures(report: Mapping[str, Any], cfg: ParityConfig) -> list[str]:
    """Why a report fails the gate (empty list: it passes)."""
    failures = []
    if cfg.check_elements:
        for name, err in report["outputs"].items():
            if err["failing"] > 0:
                failures.append(f"{name}: {err['failing']} element(s) ({err['failing_fraction']:.3%}) beyond "
                                f"atol={cfg.atol} and "
                                f"rtol={cfg.rtol} (max abs {err['max_abs']:.3g}, max rel {err['max_rel']:.3g})")
    task = report["task"]
    if task["agreement"] < cfg.min_task_agreement:
        failures.append(f"task agreement {task['agreement']:.2f} < {cfg.min_task_agreement:.2f} "
                        f"(raw {task['raw_agreement']:.2f})")
    return failures


def run_parity(reference_backend: Any, candidate_backend: Any, feeds: Sequence[Mapping[str, np.ndarray]],
               cfg: ParityConfig, task_from: int = 0) -> dict[str, Any]:
    """Run both backends on every feed dict and compare (see :func:`compare_runs`)."""
    ref = [reference_backend.run(f) for f in feeds]
    cand = [candidate_backend.run(f) for f in feeds]
    report = compare_runs(reference_backend.kind, ref, cand, cfg, task_from)
    worst = max((e["max_abs"] for e in report["outputs"].values()), default=float("nan"))
    logger.info("parity %s: worst max abs %.3g, task agreement %.2f", "passed" if report["passed"] else "FAILED",
                worst, report["task"]["agreement"])
    return report


def _pair_scores(runs: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    """``(N, h, w)`` score maps of the (frame, block) pairs ``runs[0:2], runs[2:4], ...`` (matcher parity)."""
    if len(runs) % 2:
        raise ValueError(f"matcher parity runs come in (frame, block) pairs, got {len(runs)} runs")
    return np.stack([cosine_score_map(block["features"][0], frame["features"][0])
                     for frame, block in zip(runs[0::2], runs[1::2], strict=True)]).astype(np.float64)


def _stack(runs: Sequence[Mapping[str, np.ndarray]], name: str) -> np.ndarray:
    return np.concatenate([r[name] for r in runs]).astype(np.float64)

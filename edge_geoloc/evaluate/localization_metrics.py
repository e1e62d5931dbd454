"""Metric localization errors: mean/median metres, recall within 1/3/5 m, lateral/longitudinal, orientation.

Pixels are ``(row, col)`` of a north-up aerial patch (row grows south, col grows east) with ``m_per_px`` metres
per pixel. For a camera with heading ``h`` (clockwise from north) the forward unit vector is
``f = (sin h, cos h)`` in (east, north); for an error vector ``d``: ``longitudinal = |d . f|``,
``lateral = |d x f|`` (KITTI's decomposition). Orientation error: ``min(|a - b|, 360 - |a - b|)`` degrees.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from edge_geoloc.models.localizer_blocks import heatmap_argmax_rowcol, orientation_at

log = logging.getLogger(__name__)

RECALL_THRESHOLDS_M = (1.0, 3.0, 5.0)
RECALL_THRESHOLDS_DEG = (1.0, 3.0, 5.0)


def _rowcol_to_en(d_rowcol: np.ndarray, m_per_px: np.ndarray | float) -> np.ndarray:
    """(N, 2) (row, col) differences -> (N, 2) (east, north) metres."""
    m = np.asarray(m_per_px, dtype=np.float64).reshape(-1, 1) if np.ndim(m_per_px) else float(m_per_px)
    return np.stack([d_rowcol[:, 1], -d_rowcol[:, 0]], axis=1) * m


def localization_errors(pred_rowcol: np.ndarray, gt_rowcol: np.ndarray, m_per_px: np.ndarray | float,
                        heading_rad: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-sample errors in metres: ``distance_m`` and, with headings, ``lateral_m`` and ``longitudinal_m``."""
    pred, gt = np.asarray(pred_rowcol, np.float64), np.asarray(gt_rowcol, np.float64)
    if pred.shape != gt.shape or pred.ndim != 2 or pred.shape[1] != 2:
        raise ValueError(f"pred and gt must both be (N, 2) (row, col), got {pred.shape} and {gt.shape}")
    d_en = _rowcol_to_en(pred - gt, m_per_px)
    out = {"distance_m": np.linalg.norm(d_en, axis=1)}
    if heading_rad is not None:
        h = np.asarray(heading_rad, np.float64)
        forward = np.stack([np.sin(h), np.cos(h)], axis=1)
        out["longitudinal_m"] = np.abs((d_en * forward).sum(axis=1))
        out["lateral_m"] = np.abs(d_en[:, 0] * forward[:, 1] - d_en[:, 1] * forward[:, 0])
    return out


def orientation_error_deg(pred_rad: np.ndarray, gt_rad: np.ndarray) -> np.ndarray:
    """Absolute angular difference in degrees, in [0, 180]."""
    diff = np.abs(np.degrees(np.asarray(pred_rad, np.float64) - np.asarray(gt_rad, np.float64))) % 360.0
    return np.minimum(diff, 360.0 - diff)


def _summary(values: np.ndarray, prefix: str, unit: str, thresholds: tuple[float, ...]) -> dict[str, float]:
    out = {f"{prefix}mean_{unit}": float(values.mean()), f"{prefix}median_{unit}": float(np.median(values))}
    for t in thresholds:
        out[f"{prefix}recall_{t:g}{unit}"] = float((values < t).mean())
    return out


def summarize_errors(errors: dict[str, np.ndarray], orientation_errors_deg: np.ndarray | None = None
                     ) -> dict[str, float]:
    """Mean, median and recall@1/3/5 m (and deg) of the per-sample errors; ``count`` samples."""
    dist = np.asarray(errors["distance_m"])
    if dist.size == 0:
        raise ValueError("no samples to summarise")
    out: dict[str, float] = {"count": int(dist.size), **_summary(dist, "", "m", RECALL_THRESHOLDS_M)}
    for part in ("lateral", "longitudinal"):
        if f"{part}_m" in errors:
            out.update(_summary(np.asarray(errors[f"{part}_m"]), f"{part}_", "m", RECALL_THRESHOLDS_M))
    if orientation_errors_deg is not None:
        out.update(_summary(np.asarray(orientation_errors_deg), "orientation_", "deg", RECALL_THRESHOLDS_DEG))
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, loader: Any, device: str = "cpu") -> dict[str, np.ndarray]:
    """Modes of the finest heat maps: ``rowcol (N, 2)``, ``heading_rad (N,)`` read at the mode, ``index (N,)``.

    Reads only ``query``, ``aerial`` and ``index`` from each batch (no labels), so it is safe on target data.
    """
    model.eval()
    rows, headings, indices = [], [], []
    for batch in loader:
        out = model(batch["query"].to(device), batch["aerial"].to(device))
        rowcol = heatmap_argmax_rowcol(out.heatmap)
        rows.append(rowcol.cpu())
        headings.append(orientation_at(out.orientation, rowcol).cpu())
        indices.append(torch.as_tensor(batch["index"]))
    return {"rowcol": torch.cat(rows).numpy(), "heading_rad": torch.cat(headings).numpy(),
            "index": torch.cat(indices).numpy()}


def evaluate_dataset(model: torch.nn.Module, dataset: Any, batch_size: int = 16, device: str = "cpu",
                     decompose: bool = False, orientation: bool = False) -> dict[str, float]:
    """Localization metrics of ``model`` on a dataset opened with ground truth (``dataset.ground_truth()``)."""
    module = getattr(model, "module", model)
    pred = predict(module, DataLoader(dataset, batch_size=batch_size, shuffle=False), device)
    gt_rowcol, m_per_px, heading = dataset.ground_truth()
    heading = None if np.isnan(heading).any() else heading
    summary, _ = evaluate_predictions(pred, gt_rowcol, m_per_px, heading, decompose, orientation)
    return summary


def evaluate_predictions(pred: dict[str, np.ndarray], gt_rowcol: np.ndarray, m_per_px: np.ndarray | float,
                         heading_rad: np.ndarray | None = None, decompose: bool = False,
                         orientation: bool = False) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Summary and per-sample errors of :func:`predict` output against ground truth (in the same order).

    ``decompose``: lateral/longitudinal (pinhole cameras); ``orientation``: orientation error (unknown-heading
    protocol) of the heading read at the predicted mode.
    """
    errors = localization_errors(pred["rowcol"], gt_rowcol, m_per_px, heading_rad if decompose else None)
    ori = orientation_error_deg(pred["heading_rad"], heading_rad) if orientation and heading_rad is not None else None
    if ori is not None:
        errors["orientation_deg"] = ori
    return summarize_errors(errors, ori), errors

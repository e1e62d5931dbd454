"""Errors of cars: a ground localizer on labelled pairs (beside the patch centre), a drive along / across its path.

Pairs: ``data.pairs`` datasets of ground views with ground truth (``data.ground_pairs``). A north-up panorama
localizer (``runtime.classical_ground.BevNccLocalizer``, ``runtime.learned_ground.LearnedBevLocalizer``) is run
on each pair's panorama, rolled north-up by the pair's heading, and judged by its heat-map mode; answering the
patch centre (the coarse fix) is the baseline. Drives: east/north error vectors per frame, split along
(longitudinal) and across (lateral) the true heading ``h``: with ``f = (sin h, cos h)``, ``longitudinal = |d . f|``
and ``lateral = |d x f|`` (KITTI's decomposition, as ``localization_metrics``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.data.images import read_image_rgb
from edge_geoloc.data.pairs import read_pairs
from edge_geoloc.geo.view_alignment import align_query_north_up, pinhole_to_panorama
from edge_geoloc.runtime.classical_ground import BevNccConfig, BevNccLocalizer

LocalizerFactory = Callable[[float], Any]  # aerial ground size (m) -> an object with locate(query, aerial)


def classical_factory(size_m: float) -> BevNccLocalizer:
    """The classical BEV + NCC localizer for a patch of ``size_m`` metres."""
    return BevNccLocalizer(BevNccConfig(aerial_size_m=size_m))


def centre_errors(root: Path) -> np.ndarray:
    """Metres from each pair's truth to its patch centre (the coarse fix: the baseline)."""
    _, records = read_pairs(root, read_ground_truth=True)
    return np.asarray([math.hypot(r.gt_row - r.aerial_georef.height_px / 2, r.gt_col - r.aerial_georef.width_px / 2)
                       * r.aerial_georef.m_per_px for r in records])


def heatmap_errors(root: Path, make_localizer: LocalizerFactory | None = None, limit: int | None = None
                   ) -> np.ndarray:
    """Heat-map mode error (m) of a north-up panorama localizer inside each pair's aerial patch (the panorama
    rolled north-up by the pair's heading); ``make_localizer(aerial_size_m)`` defaults to BEV + NCC."""
    return mode_errors(root, make_localizer or classical_factory, limit, heading_known=True).distance_m


@dataclass(frozen=True)
class ModeErrors:
    """Per pair at the heat-map mode: distance, lateral / longitudinal parts along the true heading (m), heading
    error (deg; NaN when the heading was given)."""

    distance_m: np.ndarray
    lateral_m: np.ndarray
    longitudinal_m: np.ndarray
    heading_deg: np.ndarray


def mode_errors(root: Path, make_localizer: LocalizerFactory, limit: int | None = None, heading_known: bool = True,
                pano_wh: tuple[int, int] = (256, 128)) -> ModeErrors:
    """Errors at each pair's heat-map mode (:class:`ModeErrors`). ``heading_known``: the panorama is
    rolled north-up by the pair's heading (heading errors NaN); else it goes in as captured and the localizer's
    ``orientation_at(row, col)`` is compared with the true heading. A pinhole query (its record has ``hfov_deg``)
    is first resampled into its part of a ``pano_wh`` panorama (:func:`pinhole_to_panorama`)."""
    _, records = read_pairs(root, read_ground_truth=True)
    errors_en, headings, heading_errors = [], [], []
    for rec in records[:limit]:
        m = rec.aerial_georef.m_per_px
        localizer = make_localizer(rec.aerial_georef.height_px * m)
        query = read_image_rgb(root / rec.query)
        if rec.hfov_deg is not None:
            query = pinhole_to_panorama(query, rec.hfov_deg, pano_wh)
        if heading_known:
            query = align_query_north_up(query, rec.heading_rad, "ground_pano")
        heat = localizer.locate(query, read_image_rgb(root / rec.aerial))
        row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
        errors_en.append(((col + 0.5 - rec.gt_col) * m, -(row + 0.5 - rec.gt_row) * m))
        headings.append(rec.heading_rad)
        found = None if heading_known else localizer.orientation_at(float(row), float(col))
        heading_errors.append(float("nan") if found is None else
                              abs(math.degrees((found - rec.heading_rad + math.pi) % (2 * math.pi) - math.pi)))
    en = np.asarray(errors_en).reshape(-1, 2)
    lateral, longitudinal = along_across(en, np.asarray(headings, float))
    return ModeErrors(np.hypot(*en.T), lateral, longitudinal, np.asarray(heading_errors))


def pair_error_stats(errors: np.ndarray) -> dict[str, float]:
    """Mean / median / p95 (m), share within 1 m and 5 m, and the count of a set of pair errors."""
    return {"mean_m": float(errors.mean()), "median_m": float(np.median(errors)),
            "p95_m": float(np.percentile(errors, 95)), "r_at_1m": float(np.mean(errors < 1.0)),
            "r_at_5m": float(np.mean(errors < 5.0)), "n": int(errors.size)}


def along_across(errors_en: np.ndarray, heading_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lateral, longitudinal) absolute error components (m) of ``(N, 2)`` east/north errors."""
    lon = errors_en[:, 0] * np.sin(heading_rad) + errors_en[:, 1] * np.cos(heading_rad)
    lat = errors_en[:, 0] * np.cos(heading_rad) - errors_en[:, 1] * np.sin(heading_rad)
    return np.abs(lat), np.abs(lon)


def drive_error_stats(errors_en: np.ndarray, heading_rad: np.ndarray) -> dict[str, float]:
    """Mean / p95 / max distance and lateral / longitudinal mean and p95 (m) over the finite error vectors."""
    ok = np.all(np.isfinite(errors_en), axis=1)
    dist = np.hypot(*errors_en[ok].T)
    lat, lon = along_across(errors_en[ok], heading_rad[ok])
    return {"mean_m": float(dist.mean()), "p95_m": float(np.percentile(dist, 95)), "max_m": float(dist.max()),
            "lateral_mean_m": float(lat.mean()), "longitudinal_mean_m": float(lon.mean()),
            "lateral_p95_m": float(np.percentile(lat, 95)), "longitudinal_p95_m": float(np.percentile(lon, 95)),
            "frames": int(ok.sum())}


def share_fused_worse(fused_en: np.ndarray, gnss_en: np.ndarray) -> float:
    """Share of the frames with both errors where the fused error is larger than GNSS only's."""
    both = np.all(np.isfinite(fused_en), axis=1) & np.all(np.isfinite(gnss_en), axis=1)
    return float(np.mean(np.hypot(*fused_en[both].T) > np.hypot(*gnss_en[both].T)))


def drive_comparison(fused_en: np.ndarray, gnss_en: np.ndarray, heading_rad: np.ndarray) -> dict[str, Any]:
    """GNSS only vs fused on one drive (or concatenated drives): both rows, the share of frames fused worse, and
    the goal of issue 15 (fused p95 at most half of GNSS only's)."""
    fused, gnss = drive_error_stats(fused_en, heading_rad), drive_error_stats(gnss_en, heading_rad)
    return {"gnss_only": gnss, "fused": fused, "share_fused_worse": share_fused_worse(fused_en, gnss_en),
            "goal_p95_half": fused["p95_m"] <= 0.5 * gnss["p95_m"]}

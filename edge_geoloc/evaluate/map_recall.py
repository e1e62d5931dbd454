"""On-board retrieval recall of a map matcher: does its best tile contain the point below the drone?

The on-board protocol (docs/retrieval.md) on held-out frames: each query is the frame the runtime would produce
over a known point (north-up by the measured heading, cut to the matcher's ground size, camera up to
``max_tilt_deg`` off nadir; :meth:`~edge_geoloc.sim.onboard_pairs.OnboardPairSampler.frame`), captured under the
flight's condition while the map shows the map's. The gallery is the tiles ``build-index`` would cut from the map
(``tile_size_m`` every ``stride_m``). A tile's score is the matcher's best score for the frame centred within
``radius_m`` of the tile's centre (each axis), so any matcher with ``score_map`` / ``window_centre_en`` (the
classical NCC or the learned map matcher, :mod:`edge_geoloc.runtime.map_search`) is scored the same way.

``R@1 contains``: the top tile contains the point below the drone. Chance is the expected score of a random
ranking (the mean share of tiles that contain the truth).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edge_geoloc.geo.raster import axis_centres
from edge_geoloc.runtime.map_search import MapMatcher, tile_scores
from edge_geoloc.sim.area import Area, capture_area
from edge_geoloc.sim.onboard_pairs import AreaPair, OnboardPairConfig, OnboardPairSampler


@dataclass(frozen=True)
class RecallQueries:
    """Held-out aligned frames of one area with the points below the drone (area-local east/north metres)."""

    name: str
    map: Area
    frames: list[np.ndarray]
    points_en: np.ndarray  # (N, 2)


def onboard_queries(name: str, map_area: Area, flight_condition: str | None, pairs: OnboardPairConfig,
                    count: int, seed: int, margin_m: float) -> RecallQueries:
    """``count`` frames over random points at least ``margin_m`` inside ``map_area``'s edge, seen under
    ``flight_condition`` (None: the map's own look), cut as ``pairs`` declares (ground size, tilt, noise)."""
    flight = capture_area(map_area, flight_condition)
    sampler = OnboardPairSampler([AreaPair(map_area, flight)], pairs, seed=seed)
    half = map_area.size_m / 2 - margin_m
    if half <= 0:
        raise ValueError(f"margin_m {margin_m} leaves no room in a {map_area.size_m} m area")
    points = np.random.default_rng([seed, 1]).uniform(-half, half, (count, 2))
    frames = [sampler.frame(flight, float(e), float(n)) for e, n in points]
    return RecallQueries(name, map_area, frames, points)


def area_tile_centres(area: Area, tile_size_m: float, stride_m: float) -> np.ndarray:
    """(N, 2) east/north centres of the tiles ``build-index`` cuts from the area (full tiles only)."""
    half = area.size_m / 2
    axis = axis_centres(-half, half, tile_size_m / 2, stride_m)
    axis = axis[axis + tile_size_m / 2 <= half + 1e-6]
    east, north = np.meshgrid(axis, axis[::-1])
    return np.stack([east.ravel(), north.ravel()], axis=1)


def tile_recall(matcher: MapMatcher, queries: RecallQueries, tile_size_m: float, stride_m: float,
                radius_m: float) -> dict[str, float]:
    """R@1 contains (percent) of ``matcher`` (built over ``queries.map``'s orthophoto in area-local metres) with
    its chance level, and the whole-map best position's median error."""
    centres = area_tile_centres(queries.map, tile_size_m, stride_m)
    half = tile_size_m / 2
    hits, covering, errors = [], [], []
    started = time.perf_counter()
    for frame, point in zip(queries.frames, queries.points_en, strict=True):
        query = matcher.prepare_aligned(frame)
        scores = matcher.score_map(query)
        k = query.shape[-1]
        best = centres[int(np.argmax(tile_scores(matcher, scores, k, centres, radius_m)))]
        hits.append(bool(np.abs(best - point).max() <= half))
        covering.append(float((np.abs(centres - point).max(axis=1) <= half).mean()))
        row, col = np.unravel_index(int(np.argmax(scores)), scores.shape)
        errors.append(float(np.hypot(*(np.array(matcher.window_centre_en(row, col, k)) - point))))
    return {"queries": len(hits), "gallery_tiles": len(centres), "r1_contains": 100 * float(np.mean(hits)),
            "r1_contains_chance": 100 * float(np.mean(covering)), "median_fix_error_m": float(np.median(errors)),
            "ms_per_query": 1e3 * (time.perf_counter() - started) / max(1, len(hits))}

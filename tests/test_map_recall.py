"""On-board retrieval recall (edge_geoloc.evaluate.map_recall): the tile grid, the chance level and the score of a
matcher that can answer (NCC with no map-vs-flight gap) against one that cannot (a constant score map)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_geoloc.evaluate.map_recall import area_tile_centres, onboard_queries, tile_recall
from edge_geoloc.runtime.classical import NccConfig, NccMatcher
from edge_geoloc.runtime.map_search import tile_scores
from edge_geoloc.sim import generate_area
from edge_geoloc.sim.onboard_pairs import OnboardPairConfig

PAIRS = OnboardPairConfig(n_areas=1, area_size_m=240.0, gsd_m=1.0, query_ground_size_m=32.0, tile_size_m=64.0,
                          offset_m=12.0, height_m=45.0, max_tilt_deg=0.0, heading_sigma_deg=0.0,
                          altitude_sigma_frac=0.0, min_spacing_m=40.0)


@pytest.fixture(scope="module")
def area():
    return generate_area("source", 7, 240.0, 1.0)


def ncc(area) -> NccMatcher:
    return NccMatcher(area.ortho, -area.size_m / 2, area.size_m / 2, area.gsd_m, NccConfig(32.0, 1.0))


def test_tile_grid_is_build_index_s_full_tiles(area):
    centres = area_tile_centres(area, 64.0, 24.0)
    axis = np.unique(centres[:, 0])
    assert axis[0] == -88.0 and np.allclose(np.diff(axis), 24.0) and axis[-1] + 32.0 <= 120.0
    assert len(centres) == len(axis) ** 2 and centres[0, 1] == axis[-1]  # north first, like raster rows


def test_ncc_without_a_gap_finds_the_tile_and_chance_is_the_share_of_covering_tiles(area):
    queries = onboard_queries("no_gap", area, None, PAIRS, count=10, seed=3, margin_m=40.0)
    result = tile_recall(ncc(area), queries, 64.0, 24.0, 12.0)
    centres = area_tile_centres(area, 64.0, 24.0)
    covering = [(np.abs(centres - p).max(axis=1) <= 32.0).mean() for p in queries.points_en]
    assert result["r1_contains_chance"] == pytest.approx(100 * np.mean(covering))
    assert result["r1_contains"] >= 80.0 > 3 * result["r1_contains_chance"]
    assert result["median_fix_error_m"] < 3.0


def test_a_matcher_that_cannot_tell_places_apart_scores_near_chance(area):
    class Blind:
        def __init__(self, inner):
            self.inner = inner

        def prepare_aligned(self, frame):
            return self.inner.prepare_aligned(frame)

        def score_map(self, query):
            return np.zeros_like(self.inner.score_map(query))

        def window_centre_en(self, row, col, k):
            return self.inner.window_centre_en(row, col, k)

    queries = onboard_queries("no_gap", area, None, PAIRS, count=10, seed=3, margin_m=40.0)
    assert tile_recall(Blind(ncc(area)), queries, 64.0, 24.0, 12.0)["r1_contains"] <= 30.0


def test_tile_scores_take_the_best_window_near_each_tile_centre(area):
    matcher = ncc(area)
    query = matcher.prepare_aligned(area.ortho[40:72, 150:182])  # centre: east 46, north 64 (local metres)
    centres = np.array([[-60.0, -60.0], [46.0, 64.0], [46.0, 40.0], [200.0, 200.0]])
    scores = tile_scores(matcher, matcher.score_map(query), query.shape[0], centres, radius_m=12.0)
    assert int(np.argmax(scores)) == 1 and scores[1] > 0.99
    assert scores[2] < scores[1] and scores[3] == -1.0  # 24 m off: beyond the radius; outside the map: none

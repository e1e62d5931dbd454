"""Adapting a car's learned BEV matcher from coarse-GPS pairs: no ground truth is read, bad inputs stop before
any training, and the pseudo label is where the teacher's best window is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_geoloc.data.ground_bev_pairs import CoarsePairs, GroundBevPairConfig, coarse_pairs
from edge_geoloc.models import create_model
from edge_geoloc.train.matcher_adaptation import MatcherAdaptConfig, adapt_matcher, window_modes
from tests.test_learned_ground import fake_views
from tests.test_map_matcher import texture

GEOMETRY = {"channels": [8, 16, 32], "m_per_px": 0.5, "query_ground_size_m": 32.0, "tile_size_m": 64.0,
            "search_radius_m": 16.0}
FAST = MatcherAdaptConfig(steps=3, batch_size=4, min_pairs=4, validate_every=0)


def teacher(camera: str = "panorama"):
    torch.manual_seed(0)
    return create_model("map_matcher_micro", query_camera=camera, **GEOMETRY).eval()


def logged_pairs() -> CoarsePairs:
    points = [(-40.0, -40.0), (-40.0, 40.0), (40.0, -40.0), (40.0, 40.0), (0.0, 0.0), (20.0, -20.0)]
    views = fake_views(points, [0] * len(points))
    bevs = np.stack([texture(64, seed=10 + i) for i in range(len(points))])
    views = type(views)(bevs, views.area, views.east_north, views.maps)
    return coarse_pairs(views, GroundBevPairConfig(), seed=0)


def test_ground_truth_is_never_read(tmp_path):
    pairs = logged_pairs()
    garbage = CoarsePairs(pairs.bevs, pairs.tiles, np.random.default_rng(1).uniform(0, 128, pairs.truth.shape),
                          pairs.area)
    a = adapt_matcher(teacher(), pairs, FAST, tmp_path / "a").student.state_dict()
    b = adapt_matcher(teacher(), garbage, FAST, tmp_path / "b").student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_inputs_stop_before_training(tmp_path):
    pairs = logged_pairs()
    with pytest.raises(ValueError, match="panorama BEVs"):
        adapt_matcher(teacher("nadir"), pairs, FAST, tmp_path)
    with pytest.raises(ValueError, match="at least 50"):
        adapt_matcher(teacher(), pairs, MatcherAdaptConfig(), tmp_path)
    other_map = CoarsePairs(pairs.bevs, pairs.tiles[:, :96, :96], pairs.truth, pairs.area)
    with pytest.raises(ValueError, match="do not fit the teacher"):
        adapt_matcher(teacher(), other_map, FAST, tmp_path)
    assert not (tmp_path / "student").exists()


def test_window_mode_is_where_a_bev_cut_from_its_tile_lies():
    """Features that pass pixels through: a BEV cut from the tile at a known place scores best there."""
    from tests.test_matcher_deploy import pixel_passing_matcher

    model = pixel_passing_matcher()
    model.m_per_px, model.query_ground_size_m, model.tile_size_m, model.search_radius_m = 0.5, 32.0, 64.0, 16.0
    tile = texture(128, seed=4)
    bev = tile[24:88, 40:104]  # camera (centre) at (56, 72): 8 px north, 8 px east of the tile centre
    modes, confidence = window_modes(model, bev[None], tile[None])
    assert np.allclose(modes[0], [56.0, 72.0]) and 0 < confidence[0] <= 1

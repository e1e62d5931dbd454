"""The learned map matcher: score geometry, the torch-free global search, the training pairs and that it learns."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from edge_geoloc.geo.view_alignment import align_query_north_up
from edge_geoloc.models.map_matcher import MapMatcher, dense_scores, window_cosines
from edge_geoloc.runtime.learned_matcher import LearnedMatcher, LearnedMatcherConfig, disc_mask
from edge_geoloc.runtime.map_search import tile_scores
from edge_geoloc.sim.onboard_pairs import (
    AreaPair,
    OnboardPairConfig,
    OnboardPairSampler,
    tilt_rays,
    training_areas,
)
from edge_geoloc.train.map_matcher import (
    MatcherOptimConfig,
    MatcherRunConfig,
    MatcherTrainConfig,
    next_batch,
    position_labels,
    train_map_matcher,
)


def texture(size: int, seed: int = 0) -> np.ndarray:
    """A random smooth RGB texture: every window looks different."""
    noise = np.random.default_rng(seed).uniform(0, 255, (size, size, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 255, 0, 255).astype(np.uint8)


def pooled_pixels(image: np.ndarray, stride: int = 4) -> np.ndarray:
    """A stand-in feature network: centred pixels averaged over stride x stride cells."""
    h, w = image.shape[0] // stride, image.shape[1] // stride
    cells = image[:h * stride, :w * stride].astype(np.float32).reshape(h, stride, w, stride, 3).mean((1, 3))
    return (cells / 255.0 - 0.5).transpose(2, 0, 1)


def test_whole_map_search_returns_the_position_of_a_cut_out_frame():
    ortho = texture(240)
    matcher = LearnedMatcher(ortho, west_m=-120.0, north_m=120.0, map_m_per_px=1.0, features=pooled_pixels,
                             config=LearnedMatcherConfig(ground_size_m=40.0))
    # frame of 40 m centred on local (east, north) = (20, -28): pixel rows/cols 128..168 / 120..160
    frame = ortho[128:168, 120:160]
    match = matcher.locate(matcher.prepare_aligned(frame))
    assert match.score == pytest.approx(1.0, abs=1e-4)
    assert (match.east_m, match.north_m) == pytest.approx((20.0, -28.0))
    assert match.second_score < match.score


def test_a_disc_frame_scores_only_its_disc_and_finds_its_place():
    ortho = texture(240, seed=3)
    disc = LearnedMatcher(ortho, -120.0, 120.0, 1.0, pooled_pixels, LearnedMatcherConfig(ground_size_m=40.0, disc=True))
    frame = ortho[128:168, 120:160].copy()
    mask = disc_mask(10)
    frame[np.kron(mask, np.ones((4, 4))) == 0] = 0  # what lies outside the disc does not count
    query = disc.prepare_aligned(frame)
    assert np.all(query[:, mask == 0] == 0) and np.linalg.norm(query) == pytest.approx(1.0, abs=1e-5)
    match = disc.locate(query)
    assert match.score == pytest.approx(1.0, abs=1e-4) and (match.east_m, match.north_m) == pytest.approx((20.0, -28.0))
    # the window's energy is over the disc's cells only: the cosine against a brute-force masked window
    scores = disc.score_map(query)
    window = disc.map_features[:, 5:15, 12:22] * mask
    expected = float((window * query).sum() / np.linalg.norm(window))
    assert scores[5, 12] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="disc matcher"):
        disc.score_map(query[:, :8, :8])


def test_the_disc_of_a_nadir_frame_survives_any_heading():
    frame = np.full((64, 64, 3), 200, np.uint8)
    rows, cols = np.mgrid[0:64, 0:64]
    inside = (rows - 31.5) ** 2 + (cols - 31.5) ** 2 <= 31**2
    for heading in np.radians([0.0, 30.0, 45.0, 123.0]):
        turned = align_query_north_up(frame, float(heading), "drone")
        assert turned[inside].min() > 190  # nothing black inside the disc
    assert disc_mask(16).sum() / 16**2 == pytest.approx(math.pi / 4, abs=0.03)


def test_prior_window_and_tile_scores_follow_the_frame():
    ortho = texture(240, seed=1)
    matcher = LearnedMatcher(ortho, -120.0, 120.0, 1.0, pooled_pixels, LearnedMatcherConfig(ground_size_m=40.0))
    query = matcher.prepare_aligned(ortho[40:80, 160:200])  # centre (60, 60)
    near = matcher.locate(query, prior_en=(-60.0, -60.0), radius_m=20.0)  # the truth is outside this window
    assert max(abs(near.east_m + 60), abs(near.north_m + 60)) <= 20.0 and near.score < 0.9
    centres = np.array([[-60.0, -60.0], [0.0, 0.0], [60.0, 60.0], [60.0, -60.0]])
    assert int(np.argmax(tile_scores(matcher, matcher.score_map(query), query.shape[-1], centres, radius_m=30.0))) == 2


def test_bad_features_are_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        LearnedMatcher(texture(64), 0.0, 64.0, 1.0, lambda im: np.full((4, 16, 16), np.nan, np.float32),
                       LearnedMatcherConfig(ground_size_m=32.0))
    with pytest.raises(ValueError, match="features must be"):
        LearnedMatcher(texture(64), 0.0, 64.0, 1.0, lambda im: np.zeros((4, 3, 3), np.float32),
                       LearnedMatcherConfig(ground_size_m=32.0))


def test_dense_scores_find_each_frame_in_its_own_tile():
    tiles = torch.randn(3, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    frames = tiles[:, :, 2:12, 4:14]  # each frame is a window of its tile, one cell off the centre
    scores = dense_scores(tiles, frames, radius_cells=3)
    assert scores.shape == (3, 3)
    assert torch.allclose(scores.diagonal(), torch.ones(3), atol=1e-4)
    assert torch.equal(scores.argmax(dim=1), torch.arange(3))
    assert dense_scores(tiles, frames, radius_cells=0).diagonal().max() < 0.9  # the window excludes the true offset


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_position_label_peaks_on_the_window_where_the_frame_was_cut(turns):
    """Raw pixels as features (stride 1): the window that scores 1 is the one the label puts its peak on, also
    after frame and tile turn together (the trainer turns the label grid the same way)."""
    model = MapMatcher(stage=0, m_per_px=1.0, query_ground_size_m=12.0, tile_size_m=32.0, search_radius_m=8.0)
    tile = torch.from_numpy(texture(32, seed=3)).permute(2, 0, 1).float()[None]
    camera = np.array([[19.0, 11.0]])  # (row, col) in the tile: 3 px south and 5 px west of its centre
    frame = tile[:, :, 13:25, 5:17]  # the 12 px frame centred there
    labels = torch.rot90(position_labels(model, camera, sigma_m=1.0), turns, (1, 2))
    windows = window_cosines(torch.rot90(tile, turns, (2, 3)), torch.rot90(frame, turns, (2, 3)), 8)[0, 0]
    assert windows.shape == labels.shape[1:] == (17, 17)
    assert int(windows.argmax()) == int(labels[0].argmax())
    assert windows.max() > 0.999 and torch.isclose(labels.sum(), torch.tensor(1.0))


def test_position_loss_needs_a_source_that_knows_positions():
    class PlacesOnly:
        def batch(self, size):
            return np.zeros((size, 80, 80, 3), np.uint8), np.zeros((size, 120, 120, 3), np.uint8)

    with pytest.raises(ValueError, match="batch_with_positions"):
        next_batch(PlacesOnly(), MapMatcher(), MatcherOptimConfig(position_weight=1.0))


def test_tilted_camera_leans_its_rays_toward_the_given_azimuth():
    axis = tilt_rays(np.array([0.0, 0.0, -1.0]).reshape(3, 1), math.radians(10), math.radians(90)).ravel()
    assert axis == pytest.approx([math.sin(math.radians(10)), 0.0, -math.cos(math.radians(10))], abs=1e-9)


def test_an_untilted_frame_is_the_capture_under_it():
    cfg = OnboardPairConfig(n_areas=1, area_size_m=360.0, max_tilt_deg=0.0, heading_sigma_deg=0.0,
                            altitude_sigma_frac=0.0)
    area = training_areas(cfg)[0].map
    frame = OnboardPairSampler([AreaPair(area, area)], cfg, seed=0).frame(area, 20.0, -30.0)
    patch, _ = area.aerial_patch(20.0, -30.0, 80.0, 80)
    assert np.corrcoef(frame.ravel(), patch.ravel())[0, 1] > 0.98  # up to the random photometric change


def test_pairs_are_deterministic_and_cut_as_configured():
    cfg = OnboardPairConfig(n_areas=2, area_size_m=360.0, places_per_area=4)
    areas = training_areas(cfg)
    frames_a, tiles_a = OnboardPairSampler(areas, cfg, seed=3).batch(8)
    frames_b, tiles_b = OnboardPairSampler(areas, cfg, seed=3).batch(8)
    assert frames_a.shape == (8, 80, 80, 3) and tiles_a.shape == (8, 120, 120, 3)
    assert np.array_equal(frames_a, frames_b) and np.array_equal(tiles_a, tiles_b)
    with pytest.raises(ValueError, match="multiple of places_per_area"):
        OnboardPairSampler(areas, cfg).batch(6)


def test_training_learns_and_the_checkpoint_describes_itself(tmp_path):
    from edge_geoloc.models.checkpoint import load_model

    batch = 8
    cfg = MatcherTrainConfig(model_kwargs={"channels": [8, 16, 32]},
                             pairs=OnboardPairConfig(n_areas=2, area_size_m=360.0, places_per_area=4),
                             optim=MatcherOptimConfig(batch_size=batch, steps=60, warmup_steps=5, lr=2e-3),
                             run=MatcherRunConfig(out_dir=str(tmp_path), seed=0, threads=1, log_every=1))
    train_map_matcher(cfg)
    losses = np.loadtxt(tmp_path / "metrics.csv", delimiter=",", skiprows=1, usecols=1)
    assert losses[-10:].mean() < 0.6 * math.log(batch) < losses[:3].mean()  # well below chance, which it started at
    model, meta = load_model(tmp_path / "final.safetensors", expected_kind="matcher")
    assert isinstance(model, MapMatcher) and meta.preprocessing["image"]["stride"] == 4
    assert meta.preprocessing["image"]["query_ground_size_m"] == 80.0


def test_pairs_that_differ_from_the_model_stop_before_training(tmp_path):
    cfg = MatcherTrainConfig(pairs=OnboardPairConfig(n_areas=1, area_size_m=360.0, tile_size_m=100.0),
                             run=MatcherRunConfig(out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="differ from the model"):
        train_map_matcher(cfg)

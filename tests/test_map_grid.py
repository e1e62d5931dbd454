"""The map grid (global relocalization over a map matcher's whole-map scores) and how the particle filter uses it:
a cold start waits until one place is confident, a moving truth beats a place that scores high in every frame, a
vision-only belief moves to the grid's place, bad score grids are rejected and counted."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_particle import gnss_fix, make_filter

from edge_geoloc.fusion import MapScores, ParticleConfig
from edge_geoloc.fusion.map_grid import GridRelocalizer, map_scores_problem, score_log_likelihood

CELL_M, SIDE = 2.0, 120  # a 240 m map of 2 m score cells, north-up, its upper-left corner at ENU (-120, 120)
AFFINE = np.array([[0.0, -1 / CELL_M, 120 / CELL_M], [1 / CELL_M, 0.0, 120 / CELL_M]])  # [row, col] = A [e, n, 1]
SPEED, DT = 8.0, 2.0


def truth_at(t: float) -> np.ndarray:
    """Flying east at SPEED from (-80, 10), heading 90 degrees."""
    return np.array([-80.0 + SPEED * t, 10.0])


def scores_at(t: float, rng: np.random.Generator, signal: float = 4.0, hub_en=(60.0, -60.0), hub: float = 3.0
              ) -> MapScores:
    """z-scores of one frame: noise everywhere, ``signal`` (a 3-cell blob) at the truth and ``hub`` at a fixed
    place that matches every frame as well (a plain field the background did not remove)."""
    z = rng.standard_normal((SIDE, SIDE)).astype(np.float32)
    rows, cols = np.mgrid[0:SIDE, 0:SIDE] + 0.5
    for (e, n), height in ((truth_at(t), signal), (hub_en, hub)):
        r, c = AFFINE @ np.array([e, n, 1.0])
        z += height * np.exp(-0.5 * ((rows - r) ** 2 + (cols - c) ** 2) / 1.0).astype(np.float32)
    return MapScores(z, AFFINE)


def run_grid(frames: int, seed: int = 0, **cfg) -> GridRelocalizer:
    rng = np.random.default_rng(seed)
    grid = None
    for i in range(frames):
        s = scores_at(i * DT, rng)
        grid = grid or GridRelocalizer(s, ParticleConfig(**cfg))
        grid.predict_to(i * DT, math.pi / 2)
        grid.update(s)
    return grid


def test_the_likelihood_is_heavy_tailed_and_peaks_where_the_scores_do():
    z = np.zeros((10, 10))
    z[3, 4] = 5.0
    log_l = score_log_likelihood(z, ParticleConfig())
    assert np.unravel_index(np.argmax(log_l), z.shape) == (3, 4)
    assert log_l.min() >= math.log(1 - ParticleConfig().grid_inlier_probability) - 1e-12  # one bad frame is bounded


def test_a_moving_truth_accumulates_and_beats_a_place_that_scores_high_in_every_frame():
    one = run_grid(1)
    assert one.mode().mass < 0.5  # a single frame: truth and hub alike, nothing confident
    grid = run_grid(8)
    mode = grid.mode()
    assert np.hypot(*(mode.en - truth_at(7 * DT))) < 5.0
    assert mode.mass > 0.5
    speed_marginal = grid.belief.sum(axis=(1, 2))
    assert abs(grid.speeds[int(np.argmax(speed_marginal))] - SPEED) <= 1.0


def test_frames_closer_than_the_evidence_period_count_a_share_of_a_frame():
    rng = np.random.default_rng(6)
    s = scores_at(0.0, rng)
    grid = GridRelocalizer(s, ParticleConfig(grid_evidence_period_s=2.0))
    grid.predict_to(0.0, math.pi / 2)
    grid.update(s)
    full = score_log_likelihood(s.z, grid.cfg)
    np.testing.assert_allclose(grid.last_log_likelihood, full)  # the first frame counts whole
    grid.predict_to(0.25, math.pi / 2)  # 4 Hz: an eighth of the evidence of a frame 2 s later
    grid.update(s)
    np.testing.assert_allclose(grid.last_log_likelihood, full / 8, rtol=1e-6)
    grid.predict_to(2.75, math.pi / 2)
    grid.update(s)
    np.testing.assert_allclose(grid.last_log_likelihood, full)


def test_a_gnss_fix_concentrates_the_grid():
    grid = run_grid(1)
    grid.update_gaussian(truth_at(0), np.eye(2) * 4.0)
    assert np.hypot(*(grid.mode().en - truth_at(0))) < 4.0


def test_a_cold_start_waits_for_a_confident_place_then_starts_near_the_truth():
    filt = make_filter()
    rng = np.random.default_rng(1)
    results = []
    for i in range(8):
        filt.set_heading(i * DT, math.pi / 2)
        results.append(filt.update_map_scores(i * DT, scores_at(i * DT, rng)))
        if filt.initialized:
            break
    assert results[0].reason == "grid_not_confident" and not results[0].accepted
    assert filt.initialized, [r.reason for r in results]
    assert float(np.hypot(*(np.array(filt.position_enu()[:2]) - truth_at(i * DT)))) < 10.0
    assert filt.counters.map_score_updates == len(results)


def test_heat_maps_do_not_start_the_filter_while_the_grid_is_unsure():
    from test_particle import blob_heatmap

    filt = make_filter()
    filt.set_heading(0.0, math.pi / 2)
    filt.update_map_scores(0.0, scores_at(0.0, np.random.default_rng(2)))
    result = filt.update_heatmaps(0.0, [blob_heatmap(0.0, (60.0, -60.0), [(60.0, -60.0)])])
    assert not filt.initialized and result.reason == "grid_not_confident"


def test_a_vision_only_belief_moves_to_the_grids_place():
    filt = make_filter()
    rng = np.random.default_rng(3)
    filt.set_heading(0.0, math.pi / 2)
    filt._reset(0.0, np.tile([60.0, -60.0, 8.0, 0.0], (filt.pc.num_particles, 1)))  # wrong, vision only
    filt._gnss_confirmed = False
    for i in range(8):
        filt.set_heading(i * DT, math.pi / 2)
        filt.update_map_scores(i * DT, scores_at(i * DT, rng))
    assert filt.counters.grid_relocalizations >= 1
    assert float(np.hypot(*(np.array(filt.position_enu()[:2]) - truth_at(7 * DT)))) < 10.0


def test_a_gnss_confirmed_belief_is_not_moved_by_the_grid():
    filt = make_filter()
    filt.update_gnss(gnss_fix(0.0, truth_at(0)))
    rng = np.random.default_rng(4)
    for i in range(1, 6):
        filt.update_gnss(gnss_fix(i * DT, truth_at(i * DT)))
        filt.set_heading(i * DT, math.pi / 2)
        filt.update_map_scores(i * DT, scores_at(i * DT, rng, signal=0.0))  # the matcher sees only the hub
    assert filt.counters.grid_relocalizations == 0
    assert float(np.hypot(*(np.array(filt.position_enu()[:2]) - truth_at(5 * DT)))) < 5.0


@pytest.mark.parametrize("trust_s, moved", [(0.0, False), (6.0, True)])
def test_a_belief_gnss_confirmed_at_a_jump_yields_to_the_grid_only_once_the_outage_outlasts_the_trust(trust_s, moved):
    filt = make_filter(grid_gnss_trust_s=trust_s)
    jump = np.array([0.0, 25.0])  # multipath: the receiver reports 25 m north of the truth, then goes silent
    rng = np.random.default_rng(5)
    for i in range(4):
        filt.update_gnss(gnss_fix(i * DT, truth_at(i * DT) + jump))
        filt.set_heading(i * DT, math.pi / 2)
        filt.update_map_scores(i * DT, scores_at(i * DT, rng))
    for i in range(4, 14):  # the outage: the matcher's scores only
        filt.set_heading(i * DT, math.pi / 2)
        filt.update_map_scores(i * DT, scores_at(i * DT, rng))
    error = float(np.hypot(*(np.array(filt.position_enu()[:2]) - truth_at(13 * DT))))
    assert (filt.counters.grid_relocalizations >= 1) == moved
    assert (error < 10.0) == moved


@pytest.mark.parametrize("bad", [
    MapScores(np.full((10, 10), np.nan), AFFINE),
    MapScores(np.zeros((10,)), AFFINE),
    MapScores(np.zeros((10, 10)), np.zeros((2, 3))),
])
def test_bad_score_grids_are_rejected_counted_and_never_nan(bad):
    assert map_scores_problem(bad) is not None
    filt = make_filter()
    filt.update_gnss(gnss_fix(0.0, (0.0, 0.0)))
    result = filt.update_map_scores(1.0, bad)
    assert not result.accepted
    assert sum(filt.counters.rejected_by_reason.values()) == 1
    assert np.all(np.isfinite(filt.position_enu()))


def test_the_grid_can_be_switched_off():
    filt = make_filter(map_grid=False)
    assert filt.update_map_scores(0.0, scores_at(0.0, np.random.default_rng(0))).reason == "map_grid_off"
    assert filt._grid is None


def test_the_scores_weigh_the_particles_when_asked():
    """grid_weighs_particles: the matcher's score likelihood weighs the particles beside the heat maps."""
    rng = np.random.default_rng(5)
    truth = np.array([12.0, 0.0])
    z = np.zeros((SIDE, SIDE), np.float32)
    r, c = (AFFINE @ np.array([truth[0], truth[1], 1.0])).astype(int)
    z[r - 1:r + 2, c - 1:c + 2] = 6.0
    errors = {}
    for weighs in (False, True):
        filt = make_filter(grid_weighs_particles=weighs)
        filt.update_gnss(gnss_fix(0.0, (0.0, 0.0), sigma_m=15.0))  # a wide belief around the origin
        filt.update_map_scores(0.0, MapScores(z + 0.1 * rng.standard_normal(z.shape).astype(np.float32), AFFINE))
        errors[weighs] = float(np.hypot(*(filt.weights @ filt.particles[:, :2] - truth)))
    assert errors[True] < 0.5 * errors[False]

"""Particle filter: convergence, robustness to multipath, recovery, ambiguity, bad input, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_geoloc.fusion import FusionConfig, HeatmapMeasurement, ParticleConfig, ParticleFilter, make_fusion
from edge_geoloc.fusion.likelihoods import affine_from_points, heatmap_likelihood, sample_from_heatmaps
from edge_geoloc.geo import EnuFrame
from edge_geoloc.types import CovarianceType, GnssFix, diagonal_covariance

ORIGIN = EnuFrame(52.0, 4.36, 0.0)
PATCH_M = 64


def patch_affine(centre_en) -> np.ndarray:
    """ENU -> (row, col) of a north-up 1 m/px patch of PATCH_M metres centred on ``centre_en``."""
    ce, cn = centre_en
    return np.array([[0.0, -1.0, cn + PATCH_M / 2], [1.0, 0.0, PATCH_M / 2 - ce]])


def blob_heatmap(stamp_s, centre_en, peaks_en, sigma_m=2.0, global_candidate=True, size_m=PATCH_M):
    """A heat map over a patch with Gaussian peaks at ``peaks_en`` (equal mass each)."""
    A = patch_affine(centre_en) if size_m == PATCH_M else _affine(centre_en, size_m)
    rows, cols = np.mgrid[0:size_m, 0:size_m] + 0.5
    p = np.full((size_m, size_m), 1e-9)
    for peak in peaks_en:
        r, c = A @ np.array([peak[0], peak[1], 1.0])
        p += np.exp(-0.5 * ((rows - r) ** 2 + (cols - c) ** 2) / sigma_m**2)
    return HeatmapMeasurement(p / p.sum(), A, global_candidate)


def _affine(centre_en, size_m):
    ce, cn = centre_en
    return np.array([[0.0, -1.0, cn + size_m / 2], [1.0, 0.0, size_m / 2 - ce]])


def gnss_fix(stamp_s, en, sigma_m=1.5, cov_type=CovarianceType.DIAGONAL_KNOWN, cov=None):
    lat, lon, alt = ORIGIN.from_enu(en[0], en[1], 100.0)
    cov = cov if cov is not None else diagonal_covariance(sigma_m, sigma_m, 2 * sigma_m)
    return GnssFix(stamp_s, lat, lon, alt, cov, cov_type)


def truth_at(t, speed=8.0):
    """Straight flight to the east at ``speed`` m/s, heading 90 degrees."""
    return np.array([speed * t, 0.0])


def make_filter(seed=0, **particle):
    cfg = FusionConfig(mode="particle", particle=ParticleConfig(seed=seed, **particle))
    return ParticleFilter(cfg, ORIGIN)


def error_m(filt, truth):
    return float(np.hypot(*(np.array(filt.position_enu()[:2]) - truth)))


def frame_heatmaps(t, rng, n_wrong=4):
    """What one frame gives: a global tile containing the truth, wrong tiles with confident peaks elsewhere."""
    truth = truth_at(t)
    centre = truth + rng.uniform(-20, 20, 2)
    maps = [blob_heatmap(t, centre, [truth + rng.normal(0, 1.0, 2)])]
    for _ in range(n_wrong):
        wrong = rng.uniform(-200, 200, 2)
        maps.append(blob_heatmap(t, wrong, [wrong + rng.uniform(-20, 20, 2)]))
    return maps


def test_affine_from_points_recovers_the_patch_affine():
    A = patch_affine((10.0, -5.0))
    en = np.array([[0.0, 0.0], [30.0, 4.0], [-7.0, 22.0]])
    rc = en @ A[:, :2].T + A[:, 2]
    np.testing.assert_allclose(affine_from_points(en, rc), A, atol=1e-9)


def test_heatmap_likelihood_is_background_off_patch_and_peaks_at_the_peak():
    m = blob_heatmap(0.0, (0.0, 0.0), [(5.0, 5.0)])
    lik = heatmap_likelihood([m], np.array([[5.0, 5.0], [-20.0, 20.0], [500.0, 0.0]]), 0.5, 1.0)
    assert lik[2] == pytest.approx(0.5)  # outside the patch: background only
    assert lik[0] > 50 * lik[1]
    draws = sample_from_heatmaps([m], 500, 1.0, np.random.default_rng(0))
    assert np.median(np.hypot(*(draws - [5.0, 5.0]).T)) < 4.0


def test_converges_from_a_uniform_start_among_wrong_tiles():
    rng = np.random.default_rng(1)
    filt = make_filter()
    filt.set_heading(0.0, math.pi / 2)
    uniform = blob_heatmap(0.0, (0.0, 0.0), [], size_m=400)  # the whole map, no information
    assert filt.update_heatmaps(0.0, [uniform]).reason == "initialized"
    for k in range(1, 16):
        filt.set_heading(float(k), math.pi / 2)
        filt.update_heatmaps(float(k), frame_heatmaps(float(k), rng))
    assert error_m(filt, truth_at(15.0)) < 5.0
    assert not filt.ambiguous
    assert filt.counters.particles_injected > 0


def test_multipath_jump_does_not_capture_the_belief():
    rng = np.random.default_rng(2)
    filt = make_filter()
    worst_during_jump = 0.0
    for k in range(0, 30 * 5):
        t = k / 5
        truth = truth_at(t)
        jump = np.array([25.0, 0.0]) if 10.0 <= t < 18.0 else np.zeros(2)
        filt.set_heading(t, math.pi / 2)
        filt.update_gnss(gnss_fix(t, truth + jump + rng.normal(0, 0.8, 2)))
        if jump.any():
            worst_during_jump = max(worst_during_jump, error_m(filt, truth))
    assert worst_during_jump < 5.0
    assert error_m(filt, truth_at(29.8)) < 3.0
    assert filt.counters.rejected_by_reason.get("gnss_outlier", 0) >= 30


def test_recovers_from_a_wrong_belief_through_retrieval():
    rng = np.random.default_rng(3)
    filt = make_filter()
    filt.set_heading(0.0, math.pi / 2)
    wrong = truth_at(0.0) + np.array([150.0, 120.0])
    filt.update_heatmaps(0.0, [blob_heatmap(0.0, wrong, [wrong])])
    assert error_m(filt, truth_at(0.0)) > 100
    for k in range(1, 25):
        filt.set_heading(float(k), math.pi / 2)
        filt.update_heatmaps(float(k), frame_heatmaps(float(k), rng, n_wrong=2))
    assert error_m(filt, truth_at(24.0)) < 5.0


def test_long_consistent_gnss_disagreement_reseeds_the_belief():
    filt = make_filter()
    filt.set_heading(0.0, math.pi / 2)
    wrong = np.array([120.0, 80.0])
    filt.update_heatmaps(0.0, [blob_heatmap(0.0, wrong, [wrong])])
    for k in range(1, 5 * 25):
        t = k / 5
        filt.set_heading(t, math.pi / 2)
        filt.update_gnss(gnss_fix(t, truth_at(t)))
    assert filt.counters.filter_resets == 1
    assert error_m(filt, truth_at(k / 5)) < 4.0


def test_two_equal_modes_are_ambiguous_and_one_is_not():
    filt = make_filter()
    a, b = np.array([0.0, 0.0]), np.array([0.0, 100.0])
    for k in range(6):
        filt.update_heatmaps(float(k), [blob_heatmap(float(k), a, [a]), blob_heatmap(float(k), b, [b])])
        filt.predict_to(float(k) + 0.5)
    assert filt.ambiguous
    assert filt.summary.second_mass > 0.3
    sigma = math.sqrt(filt.state.P[1, 1])
    assert sigma > 30.0  # the published covariance spans both modes
    single = make_filter()
    for k in range(6):
        single.update_heatmaps(float(k), [blob_heatmap(float(k), a, [a])])
    assert not single.ambiguous
    assert math.sqrt(single.state.P[1, 1]) < 5.0


def test_bad_input_is_rejected_counted_and_never_nan():
    filt = make_filter()
    filt.update_gnss(gnss_fix(0.0, (0.0, 0.0)))
    nan_map = blob_heatmap(1.0, (0.0, 0.0), [(0.0, 0.0)])
    nan_map.probability[3, 4] = np.nan
    assert not filt.update_heatmaps(1.0, [nan_map]).accepted
    assert not filt.update_heatmaps(1.0, []).accepted
    zero = gnss_fix(1.0, (0.0, 0.0), cov=(0.0,) * 9)
    negative = gnss_fix(1.0, (0.0, 0.0), cov=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    assert filt.update_gnss(zero).reason == "bad_covariance"
    assert filt.update_gnss(negative).reason == "bad_covariance"
    reasons = filt.counters.rejected_by_reason
    assert reasons["visual_heatmap_not_finite"] == 1 and reasons["visual_empty_tile_set"] == 1
    assert reasons["gnss_bad_covariance"] == 2
    assert np.all(np.isfinite(filt.state.x)) and np.all(np.isfinite(filt.state.P))
    assert np.all(np.isfinite(filt.particles))


def test_same_seed_same_belief_other_seed_other_particles():
    def run(seed):
        rng = np.random.default_rng(5)
        filt = make_filter(seed=seed)
        for k in range(8):
            filt.set_heading(float(k), math.pi / 2)
            filt.update_heatmaps(float(k), frame_heatmaps(float(k), rng))
        return filt.particles.copy()

    np.testing.assert_array_equal(run(0), run(0))
    assert not np.array_equal(run(0), run(1))


def test_mode_selects_the_filter():
    assert isinstance(make_fusion(FusionConfig(mode="particle")), ParticleFilter)
    assert not isinstance(make_fusion(FusionConfig()), ParticleFilter)
    with pytest.raises(ValueError):
        FusionConfig(mode="grid")


def test_an_ambiguous_belief_yields_to_the_first_gnss_fix():
    filt = make_filter()
    a, b = np.array([0.0, 0.0]), np.array([0.0, 100.0])
    for k in range(3):
        filt.update_heatmaps(float(k), [blob_heatmap(float(k), a, [a]), blob_heatmap(float(k), b, [b])])
    assert filt.ambiguous
    assert filt.update_gnss(gnss_fix(3.0, (200.0, -150.0))).reason == "recovered"
    assert error_m(filt, np.array([200.0, -150.0])) < 5.0 and not filt.ambiguous


def test_a_vision_only_belief_yields_to_the_first_gnss_fix_it_cannot_explain():
    filt = make_filter()
    wrong = np.array([120.0, 80.0])
    for k in range(4):
        filt.update_heatmaps(float(k), [blob_heatmap(float(k), wrong, [wrong])])
    assert not filt.ambiguous
    assert filt.update_gnss(gnss_fix(4.0, (0.0, 0.0))).reason == "recovered"
    assert error_m(filt, np.zeros(2)) < 5.0


def _cloud_after(start_heading, end_heading, dt=2.0, speed=8.0, seed=0):
    """Particles seeded tightly at the origin moving at ``speed`` along ``start_heading``, predicted over ``dt``
    to a frame whose measured heading is ``end_heading`` (both clockwise from north)."""
    filt = make_filter(seed=seed)
    filt.set_heading(0.0, start_heading)
    velocity = speed * np.array([math.sin(start_heading), math.cos(start_heading)])
    filt.update_gnss(GnssFix(0.0, *ORIGIN.from_enu(0.0, 0.0, 100.0), diagonal_covariance(0.05, 0.05, 0.1),
                             CovarianceType.DIAGONAL_KNOWN, speed_mps=speed,
                             course_rad=start_heading))
    filt.particles[:, 2:] = velocity  # the seeded velocity spread is not what this test is about
    filt.set_heading(dt, end_heading)
    filt.predict_to(dt)
    return filt.particles


@pytest.mark.parametrize("corner_at", [0.2, 0.5, 0.8])
def test_a_corner_between_two_frames_stays_inside_the_cloud(corner_at):
    """East, then a 90 degree left turn to north at ``corner_at`` of a 2 s interval: the truth is the chord of
    the two legs (shorter than speed x dt). A model that moves every particle speed x dt along one course (the
    mean of the two headings) puts no particle near it when the corner is not in the middle."""
    particles = _cloud_after(math.pi / 2, 0.0)
    truth = 16.0 * np.array([corner_at, 1.0 - corner_at])
    near = np.hypot(*(particles[:, :2] - truth).T) < 1.5
    assert near.mean() > 0.03
    assert np.percentile(np.hypot(*particles[:, :2].T), 99) < 16.0 + 2.0  # no further than the vehicle's reach
    np.testing.assert_allclose(np.median(particles[:, 2:], axis=0), [0.0, 8.0], atol=0.5)  # ends heading north


def test_straight_flight_keeps_the_cloud_tight():
    particles = _cloud_after(math.pi / 2, math.pi / 2)
    assert np.median(np.hypot(*(particles[:, :2] - [16.0, 0.0]).T)) < 1.2
    assert np.percentile(np.hypot(*(particles[:, :2] - [16.0, 0.0]).T), 99) < 4.0


def test_a_reversal_between_frames_spreads_the_cloud_over_the_reach():
    """Heading east, then west two seconds later: a hairpin or a loop, the heading samples alias the path; where
    the vehicle is can only be bounded by its reach, so the cloud covers the disc around the start."""
    particles = _cloud_after(math.pi / 2, 3 * math.pi / 2)
    distance = np.hypot(*particles[:, :2].T)
    assert np.mean(distance < 6.0) > 0.1  # e.g. a hairpin that comes back near the start
    assert np.percentile(distance, 99) < 16.0 + 2.0


def test_turn_alias_share_grows_with_the_turn():
    from edge_geoloc.fusion.particle import turn_alias_share

    shares = [turn_alias_share(math.radians(d)) for d in (0, 30, 90, 180)]
    assert shares[0] == 0.0 and shares[-1] == 1.0
    assert shares == sorted(shares) and shares[1] < 0.05

"""Fusion EKF: golden-value math, GNSS covariance rules, gating, recovery, outages and scenario accuracy."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from edge_geoloc.fusion import (
    FusionConfig,
    FusionFilter,
    KalmanState,
    chi2_quantile,
    gnss_covariance_enu,
    make_fusion,
)
from edge_geoloc.fusion.ekf import H_POSITION_2D, process_noise
from edge_geoloc.geo import EnuFrame
from edge_geoloc.sim.fusion_scenarios import ScenarioConfig, error_stats, gnss_only_track, make_scenario, run_fusion
from edge_geoloc.types import CovarianceType, FixStatus, GnssFix, VisualFix, diagonal_covariance

ORIGIN = EnuFrame(52.0, 4.36, 40.0)


def gnss_at(t: float, east: float, north: float, sigma: float = 2.0, **kw) -> GnssFix:
    lat, lon, alt = ORIGIN.from_enu(east, north, 60.0)
    kw.setdefault("covariance_type", CovarianceType.DIAGONAL_KNOWN)
    return GnssFix(t, lat, lon, alt, diagonal_covariance(sigma, sigma, 2 * sigma), **kw)


def visual_at(t: float, east: float, north: float, sigma: float = 3.0, confidence: float = 0.8) -> VisualFix:
    lat, lon, _ = ORIGIN.from_enu(east, north, 60.0)
    return VisualFix(t, lat, lon, east, north, (sigma**2, 0.0, 0.0, sigma**2), confidence, 1.0, 0, 0.9)


def test_chi2_quantile_golden_values():
    assert chi2_quantile(0.99, 2) == pytest.approx(9.2103, rel=1e-4)  # exact for 2 dof
    assert chi2_quantile(0.95, 1) == pytest.approx(3.8415, rel=1e-4)
    assert chi2_quantile(0.999, 3) == pytest.approx(16.2662, rel=1e-4)
    assert chi2_quantile(0.99, 3) == pytest.approx(11.3449, rel=1e-4)
    assert chi2_quantile(0.999, 6) == pytest.approx(22.4577, rel=1e-4)
    with pytest.raises(ValueError, match="probability"):
        chi2_quantile(1.0, 2)


def test_kalman_update_matches_hand_computation():
    state = KalmanState(np.zeros(6), np.diag([4.0, 9.0, 1.0, 1.0, 1.0, 1.0]))
    R = np.diag([1.0, 1.0])
    inn = state.innovation(np.array([5.0, 10.0]), H_POSITION_2D, R)
    assert inn.mahalanobis_sq == pytest.approx(25 / 5 + 100 / 10)
    state.update(inn, H_POSITION_2D, R)
    assert state.x[:2] == pytest.approx([4.0, 9.0])  # K = P/(P+R): 4/5 * 5, 9/10 * 10
    assert np.diag(state.P)[:2] == pytest.approx([0.8, 0.9])  # P R / (P + R)


def test_prediction_moves_with_velocity_and_grows_covariance():
    state = KalmanState(np.array([0, 0, 0, 2.0, -1.0, 0]), np.eye(6))
    state.predict(3.0, accel_sigma_mps2=1.0, vertical_accel_sigma_mps2=0.0)
    assert state.x[:2] == pytest.approx([6.0, -3.0])
    # P_ee = 1 + dt^2 * 1 + q dt^3/3 = 1 + 9 + 9
    assert state.P[0, 0] == pytest.approx(19.0)
    assert process_noise(2.0, 1.0, 1.0)[0, 3] == pytest.approx(2.0)  # q dt^2 / 2


def test_gnss_covariance_rules():
    cfg = FusionConfig(uere_m=4.0, vertical_factor=2.0, default_gnss_sigma_m=10.0, min_gnss_sigma_m=0.5)
    known = GnssFix(0, 52, 4, 0, diagonal_covariance(1.0, 2.0, 3.0), CovarianceType.KNOWN, hdop=5.0)
    assert np.diag(gnss_covariance_enu(known, cfg)) == pytest.approx([1, 4, 9])  # GST wins over HDOP
    approx = GnssFix(0, 52, 4, 0, diagonal_covariance(0.1, 0.1, 0.2), CovarianceType.APPROXIMATED, hdop=1.0)
    assert np.diag(gnss_covariance_enu(approx, cfg)) == pytest.approx([0.25, 0.25, 0.25])  # reader's RTK UERE
    hdop = GnssFix(0, 52, 4, 0, diagonal_covariance(1, 1, 1), covariance_type=CovarianceType.UNKNOWN, hdop=1.5)
    assert np.diag(gnss_covariance_enu(hdop, cfg)) == pytest.approx([36, 36, 144])  # (1.5 * 4)^2, (2 * 6)^2
    unknown = GnssFix(0, 52, 4, 0, covariance_type=CovarianceType.UNKNOWN)
    assert np.diag(gnss_covariance_enu(unknown, cfg)) == pytest.approx([100, 100, 100])
    tiny = GnssFix(0, 52, 4, 0, diagonal_covariance(0.01, 0.01, 0.01), CovarianceType.DIAGONAL_KNOWN)
    assert np.diag(gnss_covariance_enu(tiny, cfg)) == pytest.approx([0.25, 0.25, 0.25])


def test_config_rejects_bad_values_with_a_hint():
    with pytest.raises(ValueError, match="gnss_gate_probability"):
        FusionConfig(gnss_gate_probability=1.5)
    with pytest.raises(ValueError, match="accel_sigma_mps2 must be > 0"):
        FusionConfig(accel_sigma_mps2=0.0)


def test_gnss_jump_is_gated_and_counted():
    filt = FusionFilter(origin=ORIGIN)
    for i in range(10):
        assert filt.update_gnss(gnss_at(i * 0.2, 0.0, 0.0)).accepted
    result = filt.update_gnss(gnss_at(2.0, 80.0, 0.0))
    assert not result.accepted and result.reason == "gated" and result.mahalanobis_sq > 100
    assert filt.counters.gnss_rejected == 1 and filt.counters.rejected_by_reason == {"gnss_gated": 1}
    assert abs(filt.position_enu()[0]) < 1.0


def test_invalid_and_out_of_order_fixes_are_rejected():
    filt = FusionFilter(origin=ORIGIN)
    assert not filt.update_gnss(gnss_at(0.0, 0, 0, status=FixStatus.NO_FIX)).accepted
    assert filt.update_gnss(gnss_at(5.0, 0, 0)).accepted
    assert filt.update_gnss(gnss_at(1.0, 0, 0)).reason == "out_of_order"
    assert filt.counters.out_of_order == 1 and filt.counters.gnss_rejected == 2


@pytest.mark.parametrize("mode", ["ekf", "particle"])
def test_zero_or_negative_gnss_covariance_is_rejected_and_counted(mode):
    filt = make_fusion(FusionConfig(mode=mode), ORIGIN)
    assert filt.update_gnss(gnss_at(0.0, 0.0, 0.0)).accepted
    broken = [(0.0,) * 9, (-4.0, 0, 0, 0, 4.0, 0, 0, 0, 9.0), (4.0, 5.0, 0, 5.0, 4.0, 0, 0, 0, 9.0)]
    for k, cov in enumerate(broken):  # zero, negative, not positive definite (NaN: GnssFix refuses to exist)
        fix = replace(gnss_at(1.0 + k, 8.0 * (1 + k), 0.0), position_covariance_m2=cov)
        assert filt.update_gnss(fix).reason == "bad_covariance"
    assert filt.counters.rejected_by_reason == {"gnss_bad_covariance": 3} and filt.counters.gnss_rejected == 3
    with pytest.raises(ValueError, match="finite"):
        replace(gnss_at(5.0, 0.0, 0.0), position_covariance_m2=(float("nan"),) + (0.0,) * 8)
    unknown = replace(gnss_at(6.0, 0.0, 0.0), position_covariance_m2=(0.0,) * 9,
                      covariance_type=CovarianceType.UNKNOWN, hdop=1.0)
    assert filt.update_gnss(unknown).accepted  # UNKNOWN: the covariance means nothing, HDOP is used instead
    assert np.all(np.isfinite(filt.state.x)) and np.all(np.isfinite(filt.state.P))


def test_recovers_when_consistent_data_keeps_being_rejected():
    """A filter that started from a wrong visual fix locks onto GNSS once GNSS proves self-consistent."""
    filt = FusionFilter(FusionConfig(recovery_rejections=5, recovery_quiet_s=1.0, init_visual_fixes=1), origin=ORIGIN)
    assert filt.update_visual(visual_at(0.0, 300.0, 0.0, sigma=1.0)).reason == "initialized"
    stamps = [1.0 + 0.2 * i for i in range(6)]
    reasons = [filt.update_gnss(gnss_at(t, 0.0, 10.0 * t)).reason for t in stamps]
    assert reasons[:4] == ["gated"] * 4 and reasons[4] == "recovered"
    assert filt.counters.filter_resets == 1
    assert filt.position_enu()[:2] == pytest.approx((0.0, 10.0 * stamps[-1]), abs=2.0)
    assert filt.state.x[3:5] == pytest.approx((0.0, 10.0), abs=1.0)  # velocity from the consistent track


@pytest.mark.parametrize("from_prior_patch", [False, True])
def test_visual_fixes_searched_around_the_estimate_do_not_block_gnss_recovery(from_prior_patch):
    """The filter sits 300 m off; visual fixes keep confirming it. Fixes found in a patch centred on the
    estimate are no independent evidence, so consistent GNSS still takes over; independent ones hold it off."""
    filt = FusionFilter(FusionConfig(recovery_rejections=5, recovery_quiet_s=1.0, init_visual_fixes=1), origin=ORIGIN)
    filt.update_visual(visual_at(0.0, 300.0, 0.0, sigma=1.0))
    for i in range(12):
        t = 0.5 + 0.5 * i
        fix = visual_at(t, 300.0 + 10.0 * t, 0.0, sigma=1.0)
        filt.update_visual(replace(fix, from_prior_patch=from_prior_patch))
        filt.update_gnss(gnss_at(t + 0.25, 10.0 * (t + 0.25), 0.0))
    assert filt.counters.filter_resets == (1 if from_prior_patch else 0)
    expected_east = 10.0 * 6.25 if from_prior_patch else 300.0 + 10.0 * 6.0
    assert filt.position_enu()[0] == pytest.approx(expected_east, abs=15.0)


@pytest.mark.parametrize("consistent", [False, True])
def test_only_self_consistent_rejections_trigger_recovery(consistent):
    """Four jumps in a row: scattered ones (multipath) stay rejected, a constant offset is adopted."""
    rng = np.random.default_rng(3)
    filt = FusionFilter(FusionConfig(recovery_rejections=4), origin=ORIGIN)
    for i in range(25):
        filt.update_gnss(gnss_at(0.2 * i, 0.0, 0.0))
    for i in range(25, 29):
        angle = rng.uniform(0, 2 * np.pi)
        offset = (150.0, 0.0) if consistent else (150.0 * np.cos(angle), 150.0 * np.sin(angle))
        filt.update_gnss(gnss_at(0.2 * i, *offset))
    assert filt.counters.filter_resets == (1 if consistent else 0)
    assert np.hypot(*filt.position_enu()[:2]) == pytest.approx(150.0 if consistent else 0.0, abs=5.0)


def test_denied_start_needs_consistent_confident_visual_fixes():
    filt = FusionFilter(FusionConfig(init_min_visual_confidence=0.5, init_visual_fixes=3), origin=ORIGIN)
    assert filt.update_visual(visual_at(0.0, 10, 20, confidence=0.2)).reason == "not_initialized"
    assert filt.update_visual(visual_at(0.2, 11, 20, confidence=0.9)).reason == "not_initialized"
    assert filt.update_visual(visual_at(0.4, 250, -90, confidence=0.9)).reason == "not_initialized"  # wrong tile
    assert filt.update_visual(visual_at(0.6, 13, 20, confidence=0.9)).reason == "not_initialized"  # outlier in run
    assert filt.update_visual(visual_at(0.8, 14, 20, confidence=0.9)).reason == "not_initialized"
    assert not filt.initialized
    assert filt.update_visual(visual_at(1.0, 15, 20, confidence=0.9)).reason == "initialized"
    east, north, _ = filt.position_enu()
    assert (east, north) == pytest.approx((15, 20), abs=0.01)
    assert filt.state.x[3:5] == pytest.approx((5.0, 0.0), abs=0.5)  # velocity from the three fixes


def test_prediction_through_outage_then_stale_after_max_prediction():
    filt = FusionFilter(FusionConfig(max_prediction_s=30.0), origin=ORIGIN)
    for i in range(50):  # 10 s flying east at 5 m/s
        filt.update_gnss(gnss_at(0.2 * i, 5.0 * 0.2 * i, 0.0, sigma=1.0))
    sigma_before = math.sqrt(filt.state.P[0, 0])
    filt.predict_to(19.8)  # 10 s outage
    assert filt.position_enu()[0] == pytest.approx(99.0, abs=5.0)
    assert math.sqrt(filt.state.P[0, 0]) > 5 * sigma_before
    filt.predict_to(60.0)
    assert not filt.initialized  # no update for > 30 s: the estimate is dropped rather than extrapolated


@pytest.fixture(scope="module")
def short_cfg() -> ScenarioConfig:
    return ScenarioConfig(duration_s=120.0, outage_start_s=30.0, outage_s=60.0)


def test_fused_beats_gnss_p95_under_multipath(short_cfg):
    scenario = make_scenario("multipath", seed=1, cfg=short_cfg)
    gnss = error_stats(gnss_only_track(scenario), scenario.truth_en_m)
    fused = error_stats(run_fusion(scenario), scenario.truth_en_m)
    assert fused["p95_m"] < 0.5 * gnss["p95_m"]


def test_fused_stays_bounded_through_a_60s_outage(short_cfg):
    scenario = make_scenario("outage", seed=2, cfg=short_cfg)
    fused = error_stats(run_fusion(scenario), scenario.truth_en_m)
    gnss = error_stats(gnss_only_track(scenario), scenario.truth_en_m)
    assert fused["max_m"] < 20.0 < gnss["max_m"]


def test_gnss_noise_adapts_to_unreported_multipath():
    """Fixes scattered 4x wider than their reported sigma get down-weighted; honest fixes keep their weight."""
    rng = np.random.default_rng(0)
    scales = {}
    for actual_sigma in (2.0, 8.0):
        filt = FusionFilter(FusionConfig(accel_sigma_mps2=0.3), origin=ORIGIN)
        history = []
        for i in range(100):
            east, north = rng.normal(0, actual_sigma, 2)
            filt.update_gnss(gnss_at(0.2 * i, east, north, sigma=2.0))
            history.append(filt._gnss_noise_scale)
        scales[actual_sigma] = float(np.mean(history[20:]))
    # horizontal variance 16x the reported one, vertical honest: NIS / 3 ~ (16 + 16 + 1) / 3
    assert scales[2.0] < 1.5 and scales[8.0] > 4.0
    off = FusionFilter(FusionConfig(gnss_noise_adaptation=0.0), origin=ORIGIN)
    for i in range(20):
        off.update_gnss(gnss_at(0.2 * i, *rng.normal(0, 8.0, 2), sigma=2.0))
    assert off._gnss_noise_scale == 1.0


def test_gauss_markov_velocity_prediction():
    """tau -> inf reproduces constant velocity; a finite tau decays the velocity and bounds the extrapolation."""
    np.testing.assert_allclose(process_noise(2.0, 1.0, 1.0, velocity_tau_s=1e6), process_noise(2.0, 1.0, 1.0),
                               rtol=1e-4, atol=1e-9)
    state = KalmanState(np.array([0, 0, 0, 10.0, 0, 0]), np.eye(6))
    state.predict(10.0, accel_sigma_mps2=1.0, vertical_accel_sigma_mps2=1.0, velocity_tau_s=10.0)
    assert state.x[3] == pytest.approx(10.0 / math.e)
    assert state.x[0] == pytest.approx(100.0 * (1 - 1 / math.e))  # tau (1 - phi) v0
    assert state.P[3, 3] == pytest.approx(math.exp(-2) + 5.0 * (1 - math.exp(-2)))  # phi^2 + q tau/2 (1 - phi^2)

"""Demo item: the particle hypotheses around the GNSS outage are captured per frame, saved, drawn over the map,
and the relocalization success is measured from the trajectory table with the benchmark's rule."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from test_demo_framework import _toy_trajectory

from edge_geoloc.demo.hypotheses import HypothesisTap, load_snapshots, relocalization_figures, snapshot_stamps
from edge_geoloc.demo.plots import plot_hypotheses
from edge_geoloc.fusion import FusionConfig, ParticleFilter
from edge_geoloc.geo import EnuFrame
from edge_geoloc.runtime.trajectory import read_trajectory
from edge_geoloc.types import CameraFrame, CovarianceType, FusedState, GnssFix, diagonal_covariance

ORIGIN = EnuFrame(52.0, 4.36, 0.0)


def test_snapshots_bracket_the_longest_outage():
    assert snapshot_stamps([(10.0, 14.0), (30.0, 70.0)], count=4) == [28.0, 40.0, 50.0, 72.0]
    assert snapshot_stamps([]) == []


def test_tap_keeps_the_particles_at_the_requested_frames_and_saves_them(tmp_path):
    filt = ParticleFilter(FusionConfig(mode="particle"), ORIGIN)
    pipeline = SimpleNamespace(fusion=filt)
    truth = {"stamp_s": np.array([0.0, 10.0]), "lat_deg": np.array([52.0, 52.001]), "lon_deg": np.array([4.36] * 2)}
    tap = HypothesisTap(pipeline, SimpleNamespace(truth=truth), [1.5, 2.0, 6.0])
    for k in range(8):
        lat, lon, alt = ORIGIN.from_enu(0.0, 10.0 * k, 50.0)
        filt.update_gnss(GnssFix(float(k), lat, lon, alt, diagonal_covariance(2, 2, 4), CovarianceType.DIAGONAL_KNOWN))
        state = FusedState(float(k), lat, lon, alt, 0, 0, 0, 0, (0.0,) * 9, True, True, False)
        tap(k, CameraFrame(float(k), np.zeros((4, 4, 3), np.uint8)), state)
    assert [float(s["stamp_s"]) for s in tap.snapshots] == [2.0, 6.0]  # 1.5 and 2.0 fall on the same frame
    saved = load_snapshots(tap.save(tmp_path / "not_yet" / "h.npz"))  # the folder is made when missing
    assert len(saved) == 2 and saved[1]["particles_latlon"].shape == (filt.pc.num_particles, 2)
    np.testing.assert_allclose(saved[1]["weights"].sum(), 1.0)
    np.testing.assert_allclose(saved[0]["truth_latlon"], [52.0002, 4.36])
    fix_lat = ORIGIN.from_enu(0.0, 60.0, 0.0)[0]  # the fix at t = 6 s
    assert abs(float(np.average(saved[1]["particles_latlon"][:, 0], weights=saved[1]["weights"])) - fix_lat) \
        < 5e-5  # the cloud sits near the fixes (5 m)
    png = plot_hypotheses(tmp_path / "h.png", np.zeros((200, 200, 3), np.uint8), saved,
                          lambda lat, lon: ((np.asarray(lat) - 52.0) * 1e5, (np.asarray(lon) - 4.36) * 1e5 + 100), 0.0)
    assert Path(png).stat().st_size > 1000
    assert HypothesisTap(SimpleNamespace(fusion=None), None, [1.0]).save(tmp_path / "none.npz") is None


def test_relocalization_success_follows_the_benchmark_rule(tmp_path):
    table = read_trajectory(_toy_trajectory(tmp_path / "t.csv", 3e-5))  # fused 3.3 m north of the truth
    ok = relocalization_figures(table, [(8.0, 12.0)])
    assert ok["success"] and ok["ttff_s"] == 0.0 and ok["outage_estimated_share"] == 1.0
    assert math.isclose(ok["outage_p95_m"], 3.336, rel_tol=1e-3)
    far = relocalization_figures(read_trajectory(_toy_trajectory(tmp_path / "f.csv", 2e-4)), [(8.0, 12.0)])
    assert not far["success"] and far["ttff_s"] is None
    assert relocalization_figures(table, []) == {}

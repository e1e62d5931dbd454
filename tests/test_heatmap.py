"""Heat map -> position, covariance (m^2), confidence, lat/lon: golden values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edge_geoloc.geo import PatchGeoref
from edge_geoloc.geo.heatmap import covariance_px, entropy_nats, estimate_from_heatmap, refine_subpixel
from edge_geoloc.models.localizer_blocks import heatmap_argmax_rowcol, orientation_at

GSD = 0.5
GEOREF = PatchGeoref(32631, (GSD, 0.0, 500000.0, 0.0, -GSD, 5760000.0), 64, 64)


def gaussian_map(row: float, col: float, sigma: float, size: int = 64) -> np.ndarray:
    r = np.arange(size)[:, None] + 0.5
    c = np.arange(size)[None, :] + 0.5
    p = np.exp(-((r - row) ** 2 + (c - col) ** 2) / (2 * sigma**2))
    return p / p.sum()


def test_subpixel_refinement_recovers_an_offset_gaussian_peak():
    p = gaussian_map(20.3, 40.8, sigma=2.0)
    row, col = refine_subpixel(p, 20, 40)
    assert row == pytest.approx(20.3, abs=1e-6)  # a log-parabola is exact for a Gaussian
    assert col == pytest.approx(40.8, abs=1e-6)


def test_covariance_of_a_gaussian_is_sigma_squared_plus_quantisation():
    p = gaussian_map(32.0, 32.0, sigma=3.0)
    cov = covariance_px(p, 32.0, 32.0, radius_px=30.0)
    assert cov[0, 0] == pytest.approx(9.0 + 1 / 12, rel=1e-3)
    assert cov[1, 1] == pytest.approx(9.0 + 1 / 12, rel=1e-3)
    assert cov[0, 1] == pytest.approx(0.0, abs=1e-9)


def test_estimate_lat_lon_covariance_and_confidence():
    p = gaussian_map(10.5, 50.5, sigma=2.0)
    est = estimate_from_heatmap(p, GEOREF, radius_m=15.0)
    lat, lon = GEOREF.pixel_to_latlon(10.5, 50.5)
    assert (est.row, est.col) == pytest.approx((10.5, 50.5), abs=1e-6)
    assert (est.lat_deg, est.lon_deg) == pytest.approx((lat, lon), abs=1e-9)
    var_m2 = (4.0 + 1 / 12) * GSD**2
    assert est.covariance_en_m2 == pytest.approx((var_m2, 0.0, 0.0, var_m2), rel=1e-3, abs=1e-9)
    assert est.peak_mass == pytest.approx(1.0, abs=1e-6)
    assert est.peak_probability == pytest.approx(p.max())
    assert est.sigma_m == pytest.approx(math.sqrt(var_m2), rel=1e-3)


def test_entropy_and_mass_tell_one_mode_from_two():
    one = gaussian_map(20.0, 20.0, 1.5)
    two = 0.5 * one + 0.5 * gaussian_map(50.0, 50.0, 1.5)
    uniform = np.full((64, 64), 1.0 / 64**2)
    assert entropy_nats(uniform) == pytest.approx(math.log(64 * 64))
    assert entropy_nats(two) == pytest.approx(entropy_nats(one) + math.log(2), rel=1e-6)
    est = estimate_from_heatmap(two, GEOREF, radius_m=5.0)
    assert est.peak_mass == pytest.approx(0.5, abs=0.01)


def test_correlated_covariance_rotates_into_east_north():
    # spread along the image diagonal down-right = south-east: east and north anti-correlated
    size = 64
    r = np.arange(size)[:, None] + 0.5 - 32
    c = np.arange(size)[None, :] + 0.5 - 32
    u, v = (r + c) / math.sqrt(2), (r - c) / math.sqrt(2)
    p = np.exp(-(u**2) / (2 * 16) - v**2 / (2 * 1))
    est = estimate_from_heatmap(p / p.sum(), GEOREF, radius_m=16.0)
    cov = np.array(est.covariance_en_m2).reshape(2, 2)
    assert cov[0, 1] < -0.5 * math.sqrt(cov[0, 0] * cov[1, 1])


def test_bad_heatmaps_are_rejected_with_a_hint():
    with pytest.raises(ValueError, match="index a batch"):
        estimate_from_heatmap(np.ones((2, 8, 8)), GEOREF)
    with pytest.raises(ValueError, match="non-negative"):
        estimate_from_heatmap(-np.ones((64, 64)), GEOREF)
    with pytest.raises(ValueError, match="resized"):
        estimate_from_heatmap(np.ones((32, 32)), GEOREF)


def test_torch_argmax_and_orientation_readout():
    maps = torch.zeros(2, 8, 16)
    maps[0, 3, 11] = 1.0
    maps[1, 7, 0] = 1.0
    rowcol = heatmap_argmax_rowcol(maps)
    assert rowcol.tolist() == [[3.5, 11.5], [7.5, 0.5]]
    ori = torch.zeros(2, 2, 8, 16)
    ori[0, :, 3, 11] = torch.tensor([0.0, 1.0])  # heading +90 deg (east)
    ori[1, :, 7, 0] = torch.tensor([-1.0, 0.0])  # heading 180 deg
    assert orientation_at(ori, rowcol).tolist() == pytest.approx([math.pi / 2, math.pi])

"""Learned BEV matcher for cars: the runtime heat map's geometry, the stored ground pairs and training on them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_geoloc.data.ground_bev_pairs import (
    GroundBevPairConfig,
    GroundBevPairSource,
    GroundBevViews,
    load_or_render_views,
)
from edge_geoloc.runtime.classical_ground import BevNccConfig, masked_bev_rgb
from edge_geoloc.runtime.learned_ground import LearnedBevConfig, LearnedBevLocalizer
from edge_geoloc.sim.area import generate_area
from edge_geoloc.train.map_matcher import MatcherOptimConfig, MatcherRunConfig, MatcherTrainConfig, train_map_matcher
from tests.test_map_matcher import pooled_pixels, texture


def test_heat_map_peaks_where_the_bev_was_cut_from_the_patch():
    aerial = texture(192, seed=3)  # 96 m at 0.5 m/px
    bev = aerial[40:104, 100:164]  # 32 m BEV, its camera (centre) at pixel (72, 132)
    localizer = LearnedBevLocalizer(pooled_pixels, LearnedBevConfig())
    heat = localizer.locate_bev(bev, aerial)
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert heat.shape == (192, 192) and heat.sum() == pytest.approx(1.0)
    assert abs(row + 0.5 - 72) <= 2 and abs(col + 0.5 - 132) <= 2  # within one feature cell (2 m)
    assert heat[:30].sum() == 0 and heat[:, 163:].sum() == 0  # no camera position whose BEV leaves the patch


def test_panorama_heat_map_follows_the_patch_size_given():
    pano = np.random.default_rng(0).integers(0, 255, (128, 256, 3), dtype=np.uint8)
    localizer = LearnedBevLocalizer(pooled_pixels, LearnedBevConfig(temperature=0.05))
    heat = localizer.locate(pano, texture(96, seed=1))  # the pipeline may hand a coarser patch
    assert heat.shape == (96, 96) and heat.sum() == pytest.approx(1.0) and np.isfinite(heat).all()
    assert localizer.alignment.north_up and localizer.alignment.query_kind == "ground_pano"


def test_config_from_the_checkpoint_block_and_bad_geometry():
    cfg = LearnedBevConfig.from_preprocessing({"query_ground_size_m": 24.0, "m_per_px": 0.5, "stride": 4},
                                              aerial_size_m=80.0)
    assert (cfg.bev_size_m, cfg.stride, cfg.aerial_size_m) == (24.0, 4, 80.0)
    with pytest.raises(ValueError, match="multiple of the stride"):
        LearnedBevConfig(bev_size_m=31.0)
    with pytest.raises(ValueError, match="aerial_size_m must exceed"):
        LearnedBevLocalizer(pooled_pixels, LearnedBevConfig(aerial_size_m=30.0))


def test_masked_bev_blanks_the_vehicle():
    pano = np.full((128, 256, 3), 200, np.uint8)
    bev = masked_bev_rgb(pano, BevNccConfig(bev_size_m=32.0, m_per_px=0.5, min_distance_m=2.0))
    assert bev.shape == (64, 64, 3) and bev.dtype == np.uint8
    assert (bev[32, 32] == 0).all() and (bev[2, 2] == 200).all()


def fake_views(points: list[tuple[float, float]], area: list[int]) -> GroundBevViews:
    bevs = np.zeros((len(points), 64, 64, 3), np.uint8)
    return GroundBevViews(bevs, np.asarray(area), np.asarray(points, float), (texture(400, seed=5),))


def test_tiles_are_cut_around_the_camera_and_close_views_never_share_a_batch():
    views = fake_views([(10.0, -20.0)], [0])
    source = GroundBevPairSource(views, GroundBevPairConfig(offset_m=0.0))
    tile, camera = source.cut_tile(0)
    assert np.array_equal(tile, views.maps[0][240 - 64:240 + 64, 220 - 64:220 + 64])
    assert np.allclose(camera, [64.0, 64.0])  # no offset: the camera at the tile's centre
    close = fake_views([(10.0, -20.0), (20.0, -20.0), (-60.0, 50.0)], [0, 0, 0])
    cfg = GroundBevPairConfig(offset_m=8.0)
    bevs, tiles = GroundBevPairSource(close, cfg, seed=1).batch(2)
    assert bevs.shape == (2, 64, 64, 3) and tiles.shape == (2, 128, 128, 3)
    with pytest.raises(ValueError, match="far enough apart"):
        GroundBevPairSource(close, cfg).batch(3)


def test_views_are_rendered_once_and_read_back(tmp_path):
    cfg = GroundBevPairConfig(n_areas=1, area_size_m=160.0, views_per_area=3)
    views = load_or_render_views(cfg, tmp_path)
    again = load_or_render_views(cfg, tmp_path)
    assert views.bevs.shape == (3, 64, 64, 3) and len(views.maps) == 1 and views.maps[0].shape == (320, 320, 3)
    assert np.array_equal(views.bevs, again.bevs) and np.array_equal(views.east_north, again.east_north)
    assert views.bevs.reshape(3, -1).std(axis=1).min() > 5  # the BEVs hold a scene, not a blank
    assert len(list(tmp_path.glob("ground_bev_*.npz"))) == 1


class CutOutPairs:
    """Easy pairs for the trainer: tiles of a synthetic orthophoto, the frame its centre window a few pixels off."""

    def __init__(self, frame_px: int, tile_px: int) -> None:
        self.rng, self.frame_px, self.tile_px = np.random.default_rng(0), frame_px, tile_px
        self.ortho = generate_area("source", 7, 160.0, 0.5).ortho

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        corners = self.rng.integers(0, self.ortho.shape[0] - self.tile_px, (size, 2))
        tiles = np.stack([self.ortho[r:r + self.tile_px, c:c + self.tile_px] for r, c in corners])
        o = (self.tile_px - self.frame_px) // 2 + self.rng.integers(-4, 5, (size, 2))
        frames = np.stack([t[r:r + self.frame_px, c:c + self.frame_px] for t, (r, c) in zip(tiles, o, strict=True)])
        return frames, tiles


def bev_matcher_cfg(out_dir, steps: int) -> MatcherTrainConfig:
    return MatcherTrainConfig(model_kwargs={"channels": [8, 16, 32], "m_per_px": 0.5, "query_ground_size_m": 16.0,
                                            "tile_size_m": 32.0, "search_radius_m": 8.0},
                              optim=MatcherOptimConfig(batch_size=8, steps=steps, warmup_steps=3, lr=2e-3),
                              run=MatcherRunConfig(out_dir=str(out_dir), seed=0, threads=1, log_every=1))


def test_the_trainer_learns_from_a_given_pair_source(tmp_path):
    train_map_matcher(bev_matcher_cfg(tmp_path, steps=40), pairs=CutOutPairs(32, 64))
    losses = np.loadtxt(tmp_path / "metrics.csv", delimiter=",", skiprows=1, usecols=1)
    assert losses[-5:].mean() < 0.5 * math.log(8) < losses[:2].mean()


def test_a_pair_source_cut_otherwise_than_the_model_stops_at_the_first_batch(tmp_path):
    with pytest.raises(ValueError, match="pair source gives"):
        train_map_matcher(bev_matcher_cfg(tmp_path, steps=5), pairs=CutOutPairs(40, 64))


def test_heading_search_finds_a_panorama_taken_without_heading():
    """A panorama as captured (forward at its centre) of a rendered street: searching 36 headings recovers the
    vehicle's heading at the heat-map mode and the position, with raw pooled pixels as features."""
    from edge_geoloc.data.ground_pairs import road_poses
    from edge_geoloc.sim.ground import render_ground_panorama

    area = generate_area("source", 7, 200.0, 0.5)
    (east, north), heading = (v[0] for v in road_poses(area, 1, np.random.default_rng(3), 60.0))  # 119 deg
    pano = render_ground_panorama(area, float(east), float(north), float(heading), 1.7, 256, 128)
    centre = np.array([area.ortho.shape[0] / 2 - north / 0.5, area.ortho.shape[1] / 2 + east / 0.5])
    top, left = (centre + [10.0, -16.0]).round().astype(int) - 96  # a 96 m patch, the camera off its centre
    aerial = area.ortho[top:top + 192, left:left + 192]
    localizer = LearnedBevLocalizer(pooled_pixels, LearnedBevConfig(heading_bins=36))
    heat = localizer.locate(pano, aerial)
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert not localizer.alignment.north_up
    assert math.hypot(row + 0.5 - (centre[0] - top), col + 0.5 - (centre[1] - left)) * 0.5 < 3.0
    found = localizer.orientation_at(row, col)
    assert abs((found - heading + math.pi) % (2 * math.pi) - math.pi) < math.radians(15)


def test_a_pinhole_view_resampled_into_its_panorama_matches_the_rendered_panorama():
    from edge_geoloc.geo.view_alignment import pinhole_to_panorama
    from edge_geoloc.sim.camera import PinholeCamera
    from edge_geoloc.sim.ground import render_ground_panorama, render_ground_pinhole

    area = generate_area("source", 7, 200.0, 0.5)
    pano = render_ground_panorama(area, 3.0, -11.7, 1.0, 1.7, 512, 256).astype(float)
    pinhole = render_ground_pinhole(area, 3.0, -11.7, 1.0, PinholeCamera(512, 256, 90.0))
    inside = pinhole_to_panorama(pinhole, 90.0, (512, 256)).astype(float)
    seen = inside.sum(axis=2) > 0
    assert 0.06 < seen.mean() < 0.08  # 90 deg of 360 by the 53 deg vertical field of view of 180
    assert np.abs(inside[seen] - pano[seen]).mean() < 5.0  # same scene pixels (JPEG-free, bilinear)
    assert np.abs(inside[seen] - np.roll(pano, 20, axis=1)[seen]).mean() > 15.0  # a 14 deg turn does not match
    with pytest.raises(ValueError, match="hfov_deg"):
        pinhole_to_panorama(pinhole.astype(np.uint8), 180.0, (512, 256))


def test_wedge_mask_keeps_the_ground_ahead_of_a_front_camera():
    from edge_geoloc.data.ground_bev_pairs import wedge_mask

    east = wedge_mask(64, 90.0, 90.0)  # looking east: the right half's middle
    assert east[32, 60] == 1 and east[32, 4] == 0 and east[4, 32] == 0 and east[60, 32] == 0
    assert abs(east.mean() - 0.25) < 0.02  # a quarter of the square
    assert wedge_mask(64, 360.0, 0.0).all()


def test_a_pinhole_frame_reaches_the_bev_matcher_as_its_wedge_of_a_north_up_panorama():
    from edge_geoloc.runtime.query_alignment import MissingSensorError, align_query
    from edge_geoloc.types import CameraFrame

    alignment = LearnedBevLocalizer(pooled_pixels, LearnedBevConfig(camera="pinhole")).alignment
    east = CameraFrame(0.0, np.full((96, 160, 3), 200, np.uint8), heading_rad=math.radians(90.0))  # looks east
    with pytest.raises(MissingSensorError) as no_info:
        align_query(east, alignment, 0.0)  # no camera_info: no field of view
    assert no_info.value.counter == "missing_camera_info"
    pano = align_query(east, alignment, 90.0)
    seen = np.flatnonzero(pano.sum(axis=(0, 2)) > 0)
    azimuth = (seen + 0.5) / 256 * 360.0 - 180.0  # north is the centre column, east to the right
    assert pano.shape == (128, 256, 3) and abs(azimuth.min() - 45.0) < 2.0 and abs(azimuth.max() - 135.0) < 2.0
    with pytest.raises(ValueError, match="camera must be one of"):
        LearnedBevConfig(camera="fisheye")


def test_a_rendered_front_pinhole_view_becomes_the_ground_ahead_in_the_matchers_bev():
    """The runtime's pinhole path on a rendered street: align_query puts the 90 deg view into its wedge and rolls
    it north-up by the heading; the BEV the matcher sees is then the panorama's BEV over that wedge (what the
    matcher was trained on), and it matches the map at the camera only when turned the right way."""
    from edge_geoloc.data.ground_pairs import road_poses
    from edge_geoloc.geo.view_alignment import align_query_north_up
    from edge_geoloc.runtime.query_alignment import align_query
    from edge_geoloc.sim.camera import PinholeCamera
    from edge_geoloc.sim.ground import render_ground_panorama, render_ground_pinhole
    from edge_geoloc.types import CameraFrame

    area = generate_area("source", 7, 200.0, 0.5)
    points, headings = road_poses(area, 1, np.random.default_rng(3), 60.0)
    (east, north), heading = points[0].tolist(), float(headings[0])  # 119 deg
    view = render_ground_pinhole(area, east, north, heading, PinholeCamera(256, 128, 90.0))
    pano = render_ground_panorama(area, east, north, heading, 1.7, 256, 128)
    cfg = LearnedBevConfig(camera="pinhole")
    query = align_query(CameraFrame(0.0, view, heading_rad=heading), LearnedBevLocalizer(pooled_pixels, cfg).alignment,
                        90.0)
    bev = masked_bev_rgb(query, cfg.bev()).astype(float)
    wedge = bev.sum(axis=2) > 0
    pano_bev = masked_bev_rgb(align_query_north_up(pano, heading, "ground_pano"), cfg.bev()).astype(float)
    assert 0.2 < wedge.mean() < 0.3 and np.abs(bev[wedge] - pano_bev[wedge]).mean() < 5.0
    row, col = (int(round(v)) for v in (area.ortho.shape[0] / 2 - north / 0.5, area.ortho.shape[1] / 2 + east / 0.5))
    ground = area.ortho[row - 32:row + 32, col - 32:col + 32].astype(float)
    misfit = [np.abs(np.rot90(bev, k)[np.rot90(wedge, k)] - ground[np.rot90(wedge, k)]).mean() for k in range(4)]
    assert np.argmin(misfit) == 0 and misfit[0] < 0.75 * min(misfit[1:])

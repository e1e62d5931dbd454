"""Cars through the on-board pipeline: the prior patch without retrieval, the camera kind the artifact declares,
bad ground frames counted, the model's heading when the vehicle gives none, and the classical BEV matcher."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_pipeline import ORIGIN, gnss, horizontal_error, runtime_cfg, world  # noqa: F401 (fixture)

from edge_geoloc.runtime.classical_ground import BevNccConfig, BevNccLocalizer, panorama_to_bev
from edge_geoloc.runtime.config import CameraConfig, RuntimeConfig
from edge_geoloc.runtime.pipeline import Pipeline, orientation_at
from edge_geoloc.runtime.query_alignment import QueryAlignment
from edge_geoloc.types import CameraFrame

PANO = np.zeros((64, 128, 3), np.uint8)


class TruthLocalizer:
    """A ground localizer that knows where the car is: a sharp heat map at ``truth`` (local east/north),
    and an orientation field that says ``heading_rad`` everywhere; records what it is given."""

    aerial_px = 64
    aerial_size_m = 64.0

    def __init__(self, alignment: QueryAlignment, truth: tuple[float, float], heading_rad: float = 1.0) -> None:
        self.alignment, self.truth, self.heading_rad = alignment, truth, heading_rad
        self.queries, self.centres = [], []

    def locate(self, query_rgb, aerial_rgb):
        self.queries.append(query_rgb.shape)
        return self._heat

    def orientation_at(self, row, col):
        return self.heading_rad


def frame(stamp: float, image: np.ndarray = PANO, heading: float | None = 0.0) -> CameraFrame:
    return CameraFrame(stamp, image, heading_rad=heading)


def truth_pipeline(index, alignment, truth, cfg=None, **pipeline) -> tuple[Pipeline, TruthLocalizer]:
    """Pipeline without retrieval whose localizer puts its mode at ``truth`` in whatever prior patch it gets."""
    localizer = TruthLocalizer(alignment, truth)
    pipe = Pipeline(None, localizer, index, cfg or runtime_cfg(**pipeline), origin=ORIGIN)
    original = index.read_patch_around

    def read_and_aim(lat, lon, size_m, out_px=None):
        around = original(lat, lon, size_m, out_px)
        if around is not None:
            e0, n0, _ = ORIGIN.to_enu(lat, lon, 0.0)
            m = size_m / out_px
            row, col = (size_m / 2 - (truth[1] - n0)) / m, (truth[0] - e0 + size_m / 2) / m
            heat = np.full((out_px, out_px), 1e-9)
            heat[int(row), int(col)] = 1.0
            localizer._heat = heat / heat.sum()
        return around

    pipe.index = type("Index", (), {"read_patch_around": staticmethod(read_and_aim), "covers": index.covers,
                                    "tile_size_m": index.tile_size_m, "manifest": index.manifest})()
    return pipe, localizer


def test_car_without_retrieval_localizes_in_the_patch_around_the_gnss_prior(world):  # noqa: F811
    _, index = world
    truth = (30.0, -20.0)
    pano = QueryAlignment(north_up=True, query_kind="ground_pano")
    pipe, localizer = truth_pipeline(index, pano, truth, min_confidence=0.0)
    state = pipe.process(frame(0.0), None)  # no GNSS, no fused estimate: nowhere to cut a patch
    assert state.visual_fix is None and pipe.counters.no_prior_frames == 1 and localizer.queries == []
    for i in range(1, 6):  # GNSS 15 m off (multipath) with a large sigma: the patch is still cut around it
        state = pipe.process(frame(float(i)), gnss(truth[0] + 15.0, truth[1], float(i), sigma=12.0))
        assert state.visual_fix is not None
        fe, fn, _ = ORIGIN.to_enu(state.visual_fix.lat_deg, state.visual_fix.lon_deg, 0.0)
        assert math.hypot(fe - truth[0], fn - truth[1]) < 1.5
    assert pipe.counters.extra["prior_patches"] == 5 and pipe.counters.visual_fixes >= 3
    assert horizontal_error(state, *truth) < 8.0  # pulled from 15 m GNSS error towards the visual fixes


def test_panorama_of_the_wrong_aspect_ratio_is_a_counted_skip(world):  # noqa: F811
    _, index = world
    pipe, localizer = truth_pipeline(index, QueryAlignment(north_up=True, query_kind="ground_pano"), (0.0, 0.0))
    state = pipe.process(frame(0.0, np.zeros((64, 64, 3), np.uint8)), gnss(0.0, 0.0, 0.0))
    assert state.visual_fix is None and state.gnss_used and localizer.queries == []
    assert pipe.counters.extra["bad_panorama_aspect"] == 1
    pipe.process(frame(1.0, np.zeros((64, 130, 3), np.uint8)), gnss(0.0, 0.0, 1.0))  # within tolerance
    assert len(localizer.queries) == 1 and pipe.counters.extra["bad_panorama_aspect"] == 1


def test_pinhole_frame_without_camera_info_is_a_counted_skip(world):  # noqa: F811
    _, index = world
    pinhole = QueryAlignment(query_kind="ground_pinhole")
    pipe, localizer = truth_pipeline(index, pinhole, (0.0, 0.0))
    pipe.process(frame(0.0, np.zeros((64, 200, 3), np.uint8)), gnss(0.0, 0.0, 0.0))
    assert pipe.counters.extra["missing_camera_info"] == 1 and localizer.queries == []
    cfg = RuntimeConfig(pipeline=runtime_cfg().pipeline, camera=CameraConfig(hfov_deg=90.0))
    calibrated, localizer = truth_pipeline(index, pinhole, (0.0, 0.0), cfg=cfg)
    calibrated.process(frame(0.0, np.zeros((64, 200, 3), np.uint8)), gnss(0.0, 0.0, 0.0))
    assert localizer.queries == [(64, 200, 3)] and "missing_camera_info" not in calibrated.counters.extra


def test_drive_without_heading_for_a_north_up_model_is_a_counted_skip_and_unknown_orientation_uses_the_model(
        world):  # noqa: F811
    _, index = world
    pipe, _ = truth_pipeline(index, QueryAlignment(north_up=True, query_kind="ground_pano"), (0.0, 0.0))
    state = pipe.process(frame(0.0, heading=None), gnss(0.0, 0.0, 0.0))
    assert state.visual_fix is None and pipe.counters.extra["missing_heading"] == 1
    unknown, localizer = truth_pipeline(index, QueryAlignment(query_kind="ground_pano"), (0.0, 0.0))
    state = unknown.process(frame(0.0, heading=None), gnss(0.0, 0.0, 0.0))
    assert state.visual_fix.heading_rad == pytest.approx(localizer.heading_rad)
    assert unknown.counters.extra["model_headings"] == 1
    state = unknown.process(frame(1.0, heading=0.25), gnss(0.0, 0.0, 1.0))
    assert state.visual_fix.heading_rad == pytest.approx(0.25)  # a measured heading wins


def test_sidecar_declares_the_camera_and_the_runtime_follows_it():
    def sidecar(camera, alignment="none"):
        return {"preprocessing": {"query": {"size_hw": [64, 128], "alignment": alignment, "camera": camera}}}

    assert QueryAlignment.from_sidecar(sidecar("panorama", "north_up")).query_kind == "ground_pano"
    assert QueryAlignment.from_sidecar(sidecar("pinhole")).query_kind == "ground_pinhole"
    assert QueryAlignment.from_sidecar(sidecar("nadir")).query_kind == "drone"
    with pytest.raises(ValueError, match="pinhole"):
        QueryAlignment.from_sidecar(sidecar("pinhole", "north_up"))
    with pytest.raises(ValueError, match="fisheye"):
        QueryAlignment.from_sidecar(sidecar("fisheye"))


def test_exported_car_models_declare_their_camera():
    from edge_geoloc.models import create_model

    assert create_model("ccvpe_pano_micro").preprocessing()["query"]["camera"] == "panorama"
    assert create_model("ccvpe_pinhole_micro").preprocessing()["query"]["camera"] == "pinhole"


def test_orientation_at_reads_the_heading_at_the_mode_pixel():
    field = np.zeros((2, 4, 4))
    field[0], field[1, 2, 3], field[0, 2, 3] = 1.0, 1.0, 0.0  # east (90 deg) at pixel (2, 3), north elsewhere
    assert orientation_at(field, 2.5, 3.5) == pytest.approx(math.pi / 2)
    assert orientation_at(field, 0.5, 0.5) == pytest.approx(0.0)
    assert orientation_at(None, 1.0, 1.0) is None


def test_bev_of_a_panorama_puts_the_east_ground_east():
    pano = np.zeros((64, 128, 3), np.uint8)
    pano[32:, 64:96] = 255  # azimuth 0..90 deg (north-east quadrant) below the horizon
    bev, mask = panorama_to_bev(pano, BevNccConfig(bev_size_m=20.0, m_per_px=0.5))
    side = bev.shape[0]
    assert bev[side // 4, 3 * side // 4].mean() > 200  # north-east of the camera
    assert bev[3 * side // 4, side // 4].mean() < 50 and bev[side // 4, side // 4].mean() < 50
    assert mask[side // 2, side // 2] == 0 and mask[0, 0] == 1  # the vehicle itself is left out


def test_bev_ncc_finds_a_car_on_the_map_under_the_map_condition():
    from edge_geoloc.geo.view_alignment import align_query_north_up
    from edge_geoloc.sim.area import generate_area
    from edge_geoloc.sim.flight import car_path, sample_path
    from edge_geoloc.sim.ground import render_ground_panorama

    area = generate_area("source", 3001, 300.0, 0.5, condition="summer_map")
    points, headings = sample_path(car_path(area, 300.0, np.random.default_rng(1)), np.array([60.0, 150.0, 240.0]))
    localizer = BevNccLocalizer(BevNccConfig())
    errors, centre = [], []
    for (east, north), heading in zip(points, headings, strict=True):
        query = align_query_north_up(render_ground_panorama(area, east, north, heading, width_px=512,
                                                            height_px=256), heading, "ground_pano")
        c_east, c_north = east + 12.0, north - 9.0  # the prior is 15 m off
        aerial, georef = area.aerial_patch(c_east, c_north, localizer.aerial_size_m, localizer.aerial_px)
        row, col = np.unravel_index(int(np.argmax(localizer.locate(query, aerial))), aerial.shape[:2])
        gt_row, gt_col = georef.latlon_to_pixel(*area.local_to_latlon(east, north))
        errors.append(math.hypot(row + 0.5 - gt_row, col + 0.5 - gt_col) * georef.m_per_px)
        centre.append(15.0)
    assert np.median(errors) < 3.0 < np.median(centre)

"""Global search is one interface with implementations chosen by ``global_search.kind``: the learned
retrieval and the classical NCC search both give the filter its candidate tiles (same stand-ins as
test_pipeline: a 60 m nadir crop at heading 0 is what a 90-degree camera sees from 30 m)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_pipeline import ORIGIN, QUERY_M, QUERY_PX, TemplateLocalizer, camera, horizontal_error
from test_pipeline import world as pipeline_world
from test_tile_index import ThumbnailEncoder, make_ortho

from edge_geoloc.fusion import FusionConfig
from edge_geoloc.geo import latlon_to_utm
from edge_geoloc.runtime.config import (
    CameraConfig,
    GlobalSearchConfig,
    PipelineConfig,
    RuntimeConfig,
    TileIndexConfig,
)
from edge_geoloc.runtime.global_search import MapSearch, RetrievalSearch, make_global_search
from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.tile_build import build_tile_index
from edge_geoloc.runtime.tile_index import TileIndexError
from edge_geoloc.types import CameraFrame

world = pipeline_world  # test_pipeline's module-scoped 400 m area and its tile index
HFOV_DEG, ALT_M = 90.0, QUERY_M / 2  # footprint 2 * alt * tan(45 deg) = QUERY_M


def nadir_frame(ortho, east: float, north: float, stamp: float, seed: int = 0) -> CameraFrame:
    frame = camera(ortho, east, north, stamp, seed)
    return CameraFrame(frame.stamp_s, frame.image_rgb, frame.frame_id, heading_rad=0.0, altitude_agl_m=ALT_M)


def tile_centre_enu(index, tile_id: int) -> tuple[float, float]:
    georef = index.read_patch(tile_id, QUERY_M, QUERY_PX).georef
    lat, lon = georef.pixel_to_latlon(QUERY_PX / 2, QUERY_PX / 2)
    east, north, _ = ORIGIN.to_enu(lat, lon, 0.0)
    return float(east), float(north)


def tile_distance_m(index, tile_id: int, east: float, north: float) -> float:
    lat, lon, _ = ORIGIN.from_enu(east, north, 0.0)
    x, y, _ = latlon_to_utm(lat, lon, index.zone)
    return math.hypot(index.tiles["utm_east_m"][tile_id] - x, index.tiles["utm_north_m"][tile_id] - y)


def test_the_config_key_chooses_the_implementation(world):
    _, index = world
    retrieval, ncc = GlobalSearchConfig(kind="retrieval"), GlobalSearchConfig(kind="ncc")
    assert isinstance(make_global_search(retrieval, ThumbnailEncoder(), index, 0.0), RetrievalSearch)
    assert isinstance(make_global_search(ncc, None, index, HFOV_DEG), MapSearch)
    assert make_global_search(retrieval, None, index, 0.0) is None  # a car: no retrieval, prior patch only
    with pytest.raises(ValueError, match="global_search"):
        GlobalSearchConfig(kind="faiss")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["retrieval", "ncc"])
def test_both_searches_put_the_true_tile_first(world, kind):
    ortho, index = world
    search = make_global_search(GlobalSearchConfig(kind=kind), ThumbnailEncoder(), index, HFOV_DEG)
    for k, tile_id in enumerate([40, 81, 120]):  # near tile centres, where the thumbnail stand-in retrieves
        east, north = np.add(tile_centre_enu(index, tile_id), (2.0, -1.0))
        frame = nadir_frame(ortho, east, north, float(k), seed=k)
        result = search.search(frame, frame.image_rgb, 5)
        assert result.ids.size == 5 and len(set(result.ids.tolist())) == 5
        assert tile_distance_m(index, int(result.ids[0]), east, north) < QUERY_M / 2
    if kind == "ncc":
        match = search.last_match  # the baseline's own fix, kept for the benchmark
        lat, lon, _ = ORIGIN.from_enu(east, north, 0.0)
        x, y, _ = latlon_to_utm(lat, lon, index.zone)
        assert math.hypot(match.east_m - x, match.north_m - y) < 3.0


def test_ncc_search_needs_heading_height_and_field_of_view(world):
    ortho, index = world
    search = make_global_search(GlobalSearchConfig(kind="ncc"), None, index, 0.0)
    frame = nadir_frame(ortho, 10.0, 10.0, 0.0)
    with pytest.raises(ValueError, match="hfov_deg"):
        search.search(frame, frame.image_rgb, 5)
    search.hfov_deg = HFOV_DEG
    no_heading = CameraFrame(0.0, frame.image_rgb, "f", heading_rad=None, altitude_agl_m=ALT_M)
    assert search.search(no_heading, no_heading.image_rgb, 5).ids.size == 0 and search.last_match is None


def test_ncc_needs_an_index_over_one_orthophoto(tmp_path):
    make_ortho(tmp_path / "a.tif", size_m=200.0)
    make_ortho(tmp_path / "b.tif", size_m=200.0, seed=1, east_offset_m=300.0)
    cfg = TileIndexConfig(tile_size_m=QUERY_M, stride_m=60.0, tile_px=QUERY_PX)
    index = build_tile_index([tmp_path / "a.tif", tmp_path / "b.tif"], ThumbnailEncoder(), cfg,
                             out_dir=tmp_path / "index")
    with pytest.raises(TileIndexError, match="one orthophoto"):
        make_global_search(GlobalSearchConfig(kind="ncc"), None, index, HFOV_DEG)


def test_particle_pipeline_relocalizes_from_a_gnss_denied_start_with_ncc_search(world):
    ortho, index = world
    cfg = RuntimeConfig(pipeline=PipelineConfig(aerial_size_m=120.0, localize_top=3),
                        global_search=GlobalSearchConfig(kind="ncc"), fusion=FusionConfig(mode="particle"),
                        camera=CameraConfig(hfov_deg=HFOV_DEG))
    pipe = Pipeline(None, TemplateLocalizer(), index, cfg, origin=ORIGIN)  # no retrieval model at all
    assert isinstance(pipe.global_search, MapSearch)
    errors = []
    for i in range(8):
        east, north = -70.0, 40.0 + 2.0 * i  # flying north: the measured heading (0) is the course
        state = pipe.process(nadir_frame(ortho, east, north, 0.5 * i, seed=i), None)
        errors.append(horizontal_error(state, east, north))
    assert max(errors[-3:]) < 3.0 and not state.ambiguous
    assert np.isfinite(state.latency.search_ms) and state.latency.search_ms > 0


def test_map_search_normalises_its_scores_against_the_map_and_geo_references_them(world):
    ortho, index = world
    search = make_global_search(GlobalSearchConfig(kind="ncc"), None, index, HFOV_DEG)
    raw = make_global_search(GlobalSearchConfig(kind="ncc", background_frames=0), None, index, HFOV_DEG)
    assert search.background is not None and raw.background is None
    east, north = np.add(tile_centre_enu(index, 81), (2.0, -1.0))
    frame = nadir_frame(ortho, east, north, 0.0)
    search.search(frame, frame.image_rgb, 5)
    raw.search(frame, frame.image_rgb, 5)
    z, georef = search.last_scores
    raw_scores, _ = raw.last_scores
    np.testing.assert_allclose(z, (raw_scores - search.background.mean) / search.background.std, atol=1e-4)
    assert z.max() > 4.0  # the true place stands far out of what frames from elsewhere on the map score there
    row, col = np.unravel_index(int(np.argmax(z)), z.shape)
    lat, lon = georef.pixel_to_latlon(row + 0.5, col + 0.5)  # the score grid's pixel centre is the window centre
    e, n, _ = ORIGIN.to_enu(lat, lon, 0.0)
    assert math.hypot(e - east, n - north) < 3.0
    with pytest.raises(ValueError, match="background_frames"):
        GlobalSearchConfig(kind="ncc", background_frames=4)

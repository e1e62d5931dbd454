"""Pipeline: GNSS-denied start, GNSS-bounded search, low confidence, map edges, counters and latencies.

The models are deterministic stand-ins: a thumbnail encoder and a template-matching localizer whose heat map
is a softmax of normalised cross-correlation, so the pipeline's own logic is what is tested.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from test_tile_index import LAT0, LON0, ThumbnailEncoder, make_ortho

from edge_geoloc.geo import EnuFrame, GeoRaster
from edge_geoloc.runtime.config import PipelineConfig, RuntimeConfig, TileIndexConfig
from edge_geoloc.runtime.pipeline import BackendEncoder, BackendLocalizer, Pipeline
from edge_geoloc.runtime.tile_build import build_tile_index
from edge_geoloc.types import CameraFrame, CovarianceType, GnssFix, diagonal_covariance

QUERY_M, QUERY_PX, AERIAL_M, AERIAL_PX = 60.0, 64, 120.0, 128
ORIGIN = EnuFrame(LAT0, LON0, 0.0)


class TemplateLocalizer:
    """Heat map = softmax(NCC / temperature) of the query slid over the aerial patch (same ground scale)."""

    aerial_px = AERIAL_PX

    def __init__(self, temperature: float = 0.03) -> None:
        self.temperature = temperature

    def locate(self, query_rgb, aerial_rgb):
        q = cv2.cvtColor(query_rgb, cv2.COLOR_RGB2GRAY)
        a = cv2.cvtColor(aerial_rgb, cv2.COLOR_RGB2GRAY)
        scale = (QUERY_M / AERIAL_M) * a.shape[0] / q.shape[0]
        q = cv2.resize(q, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ncc = cv2.matchTemplate(a, q, cv2.TM_CCOEFF_NORMED)  # (Ha - h + 1, Wa - w + 1)
        logits = np.full(a.shape, -np.inf)
        h, w = q.shape
        logits[h // 2: h // 2 + ncc.shape[0], w // 2: w // 2 + ncc.shape[1]] = ncc / self.temperature
        p = np.exp(logits - logits.max())
        return p / p.sum()


class FlatLocalizer:
    """A localizer that cannot decide: a nearly uniform heat map."""

    aerial_px = AERIAL_PX

    def locate(self, query_rgb, aerial_rgb):
        p = np.ones((32, 32)) + 0.01 * np.random.default_rng(0).random((32, 32))
        return p / p.sum()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    make_ortho(root / "area.tif", size_m=400.0)
    cfg = TileIndexConfig(tile_size_m=QUERY_M, stride_m=30.0, tile_px=QUERY_PX)
    index = build_tile_index([root / "area.tif"], ThumbnailEncoder(), cfg, out_dir=root / "index")
    return root / "area.tif", index


def runtime_cfg(**pipeline) -> RuntimeConfig:
    base = dict(aerial_size_m=AERIAL_M, localize_top=3, min_search_radius_m=40.0, search_margin_m=20.0)
    return RuntimeConfig(pipeline=PipelineConfig(**{**base, **pipeline}))


def camera(ortho, east, north, stamp, seed=0) -> CameraFrame:
    lat, lon, _ = ORIGIN.from_enu(east, north, 0.0)
    with GeoRaster(ortho) as raster:
        image = raster.read_around_latlon(lat, lon, QUERY_M, QUERY_PX).image
    noise = np.random.default_rng(seed).normal(0, 6, image.shape)
    return CameraFrame(stamp, np.clip(image + noise, 0, 255).astype(np.uint8))


def gnss(east, north, stamp, sigma=3.0) -> GnssFix:
    lat, lon, alt = ORIGIN.from_enu(east, north, 50.0)
    return GnssFix(stamp, lat, lon, alt, diagonal_covariance(sigma, sigma, 2 * sigma), CovarianceType.DIAGONAL_KNOWN)


def horizontal_error(state, east, north) -> float:
    e, n, _ = ORIGIN.to_enu(state.lat_deg, state.lon_deg, 0.0)
    return math.hypot(e - east, n - north)


def test_gnss_denied_start_searches_all_tiles_and_initialises_from_vision(world):
    ortho, index = world
    pipe = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, runtime_cfg(), origin=ORIGIN)
    track = [(10.0, 10.0), (12.0, 11.0), (14.0, 12.0)]  # near a tile centre, so global retrieval can find it
    for i, (east, north) in enumerate(track):
        state = pipe.process(camera(ortho, east, north, 0.5 * i, seed=i), None)
        assert state.initialized == (i == 2)  # three agreeing visual fixes start the filter
    assert pipe.counters.no_prior_frames == 3 and pipe.counters.visual_fixes == 1
    assert state.visual_used and not state.gnss_used and horizontal_error(state, 14.0, 12.0) < 2.0
    assert state.visual_fix.confidence > 0.3 and state.visual_fix.tile_id >= 0
    state = pipe.process(camera(ortho, 20.0, 15.0, 1.5, seed=5), None)  # now searched around the estimate
    assert pipe.counters.no_prior_frames == 3 and horizontal_error(state, 20.0, 15.0) < 3.0


def fly_straight_with_gnss(pipe, ortho, frames: int = 12):
    """A straight 4 m/s track with 3 m GNSS noise, one fix per frame; the last state and the per-frame errors."""
    rng = np.random.default_rng(4)
    errors = []
    for i in range(frames):
        t, east, north = 0.5 * i, -60.0 + 8.0 * i, 20.0 - 3.0 * i
        fix = gnss(east + rng.normal(0, 3), north + rng.normal(0, 3), t)
        state = pipe.process(camera(ortho, east, north, t, seed=i), fix)
        errors.append(horizontal_error(state, east, north))
    return state, errors


def test_flight_with_gnss_tracks_truth_and_reports_latency(world):
    ortho, index = world
    pipe = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, runtime_cfg(), origin=ORIGIN)
    state, errors = fly_straight_with_gnss(pipe, ortho)
    assert pipe.counters.frames == 12 and pipe.counters.gnss_fixes == 12
    assert pipe.counters.no_prior_frames == 0 and pipe.counters.visual_fixes >= 10
    assert np.median(errors[3:]) < 2.5  # vision sharpens 3 m GNSS
    lat = state.latency
    assert lat.total_ms >= lat.retrieval_ms + lat.search_ms + lat.localizer_ms > 0
    assert state.position_covariance_m2[0] > 0 and state.horizontal_sigma_m < 3.0


def test_low_confidence_frames_are_reported_but_not_fused(world):
    ortho, index = world
    pipe = Pipeline(ThumbnailEncoder(), FlatLocalizer(), index, runtime_cfg(min_confidence=0.3), origin=ORIGIN)
    state = pipe.process(camera(ortho, 0.0, 0.0, 0.0), gnss(0.0, 0.0, 0.0))
    assert state.visual_fix is not None and state.visual_fix.confidence < 0.3
    assert not state.visual_used and state.gnss_used
    assert pipe.counters.low_confidence == 1 and pipe.counters.visual_fixes == 0


def test_counters_are_a_snapshot_of_the_pipeline_and_the_filter(world):
    ortho, index = world
    pipe = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, runtime_cfg(), origin=ORIGIN)
    pipe.process(camera(ortho, 0.0, 0.0, 10.0), gnss(0.0, 0.0, 10.0))
    assert not pipe.add_gnss(gnss(0.0, 0.0, 1.0))  # far older than the filter: rejected by the filter
    pipe.drop_frame()
    counters, fusion = pipe.counters, pipe.fusion.counters
    assert (counters.gnss_fixes, counters.gnss_rejected) == (fusion.gnss_accepted, fusion.gnss_rejected) == (1, 1)
    assert counters.visual_fixes == fusion.visual_accepted and counters.extra["gnss_out_of_order"] == 1
    assert (counters.frames, counters.dropped_frames) == (1, 1) and "gnss_received" not in counters.extra
    counters.frames += 5  # a snapshot: changing it changes nothing inside the pipeline
    assert pipe.counters.frames == 1


def test_tiles_at_the_map_edge(world):
    """Near the border the aerial patch is partly black: still localised when enough is inside, skipped when
    not, and a heat-map mode on the black outside is never fused."""
    ortho, index = world
    pipe = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, runtime_cfg(min_valid_fraction=0.6),
                    origin=ORIGIN)
    state = pipe.process(camera(ortho, 160.0, 0.0, 0.0), gnss(160.0, 0.0, 0.0))
    assert state.visual_used and horizontal_error(state, 160.0, 0.0) < 3.0
    strict = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, runtime_cfg(min_valid_fraction=0.99),
                      origin=ORIGIN)
    state = strict.process(camera(ortho, 170.0, 170.0, 0.0), gnss(170.0, 170.0, 0.0))  # near the corner
    assert state.visual_fix is None and strict.counters.extra["edge_tiles_skipped"] >= 1

    class OutsideLocalizer(TemplateLocalizer):
        def locate(self, query_rgb, aerial_rgb):
            p = np.full(aerial_rgb.shape[:2], 1e-9)
            p[2, -3] = 1.0  # top-right corner of an edge patch lies off the map
            return p / p.sum()

    pipe = Pipeline(ThumbnailEncoder(), OutsideLocalizer(), index, runtime_cfg(), origin=ORIGIN)
    state = pipe.process(camera(ortho, 170.0, 170.0, 0.0), gnss(170.0, 170.0, 0.0))
    assert state.visual_fix is None and pipe.counters.extra["mode_outside_map"] >= 1


def test_prior_off_the_map_keeps_fusing_gnss(world):
    ortho, index = world
    pipe = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, runtime_cfg(), origin=ORIGIN)
    state = pipe.process(camera(ortho, 0.0, 0.0, 0.0), gnss(5000.0, 0.0, 0.0))
    assert state.initialized and state.gnss_used and state.visual_fix is None
    assert pipe.counters.extra["outside_map"] == 1


class FakeBackend:
    """Just enough of ``Backend`` for the adapters: sidecar, inputs, preprocess, run."""

    def __init__(self, kind: str, batch) -> None:
        self.calls = []
        spec = type("Spec", (), {"shape": (batch, 3, 8, 8)})
        self.inputs = (spec,)
        self.input_names = ["image"] if kind == "retrieval" else ["query", "aerial"]
        self.sidecar = {"preprocessing": {"aerial": {"size_hw": [16, 16]}}}

    def preprocess(self, name, image):
        return np.full((1, 3, 8, 8), float(image.mean()), np.float32)

    def run(self, feeds):
        self.calls.append({k: v.shape for k, v in feeds.items()})
        if "image" in feeds:
            return {"embedding": feeds["image"].reshape(len(feeds["image"]), -1)[:, :4]}
        return {"heatmap": np.ones((1, 16, 16)) / 256.0}


@pytest.mark.parametrize("batch", ["batch", 1])
def test_backend_adapters(batch):
    backend = FakeBackend("retrieval", batch)
    images = [np.full((10, 10, 3), v, np.uint8) for v in (10, 20, 30)]
    emb = BackendEncoder(backend).embed(images)
    assert emb.shape == (3, 4) and emb[2, 0] == pytest.approx(30.0)
    assert len(backend.calls) == (1 if batch == "batch" else 3)  # a static batch of 1 runs frame by frame
    loc = BackendLocalizer(FakeBackend("localizer", 1))
    assert loc.aerial_px == 16 and loc.locate(images[0], images[1]).shape == (16, 16)


def test_runtime_yaml_loads_and_rejects_unknown_keys():
    from pathlib import Path

    from edge_geoloc.config import ConfigError, load_config

    path = Path(__file__).resolve().parents[1] / "configs" / "runtime.yaml"
    cfg = load_config(RuntimeConfig, path, ["pipeline.top_k=7"])
    assert cfg.pipeline.top_k == 7 and cfg.fusion.world_frame == "map"
    with pytest.raises(ConfigError, match="valid keys"):
        load_config(RuntimeConfig, path, ["pipeline.topk=7"])
    with pytest.raises(ConfigError, match="localize_top"):
        load_config(RuntimeConfig, path, ["pipeline.localize_top=9"])


def test_raw_gnss_bounds_the_search_only_when_valid_and_recent(world):
    from edge_geoloc.fusion import FusionConfig
    from edge_geoloc.types import FixStatus

    ortho, index = world
    cfg = RuntimeConfig(pipeline=runtime_cfg().pipeline, fusion=FusionConfig(init_gnss_fixes=2))
    pipe = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, cfg, origin=ORIGIN)
    lat, lon, alt = ORIGIN.from_enu(0.0, 0.0, 50.0)
    no_fix = GnssFix(0.0, lat, lon, alt, status=FixStatus.NO_FIX, fix_quality=0)
    pipe.process(camera(ortho, 0.0, 0.0, 0.0), no_fix)
    assert pipe.counters.no_prior_frames == 1 and pipe.counters.extra["gnss_invalid"] == 1
    pipe.process(camera(ortho, 0.0, 0.0, 1.0), gnss(0.0, 0.0, 1.0))  # valid, not enough to start the filter
    assert pipe.counters.no_prior_frames == 1 and not pipe.fusion.initialized
    pipe.process(camera(ortho, 0.0, 0.0, 30.0), None)  # the raw fix is 29 s old now
    assert pipe.counters.no_prior_frames == 2


class RecordingLocalizer(TemplateLocalizer):
    """Template matching that records every query it receives and declares the artifact's query alignment."""

    def __init__(self, alignment) -> None:
        super().__init__()
        self.alignment, self.queries = alignment, []

    def locate(self, query_rgb, aerial_rgb):
        self.queries.append(query_rgb.copy())
        return super().locate(query_rgb, aerial_rgb)


def drone_view(north_up: np.ndarray) -> np.ndarray:
    """What a camera flying east (heading pi/2) sees: image "up" points east, i.e. the north-up view turned
    90 degrees counter-clockwise (exact, no corners lost)."""
    return np.ascontiguousarray(np.rot90(north_up, k=1))


def test_north_up_artifact_receives_the_query_rotated_by_the_frame_heading(world):
    from edge_geoloc.runtime.query_alignment import QueryAlignment

    ortho, index = world
    localizer = RecordingLocalizer(QueryAlignment(north_up=True))
    pipe = Pipeline(ThumbnailEncoder(), localizer, index, runtime_cfg(localize_top=1), origin=ORIGIN)
    north_up = camera(ortho, 10.0, 10.0, 0.0)
    frame = CameraFrame(0.0, drone_view(north_up.image_rgb), heading_rad=math.pi / 2)
    pipe.process(frame, gnss(10.0, 10.0, 0.0))
    assert len(localizer.queries) == 1
    received = localizer.queries[0].astype(int)
    assert np.abs(received - north_up.image_rgb.astype(int)).max() <= 1  # rotated back to north-up
    assert np.abs(received - frame.image_rgb.astype(int)).mean() > 10  # not the frame as captured
    plain = RecordingLocalizer(QueryAlignment())  # alignment "none": the frame as captured
    Pipeline(ThumbnailEncoder(), plain, index, runtime_cfg(localize_top=1), origin=ORIGIN).process(frame, None)
    assert np.array_equal(plain.queries[0], frame.image_rgb)


def test_frames_without_the_heading_the_artifact_needs_get_no_visual_fix(world, caplog):
    from edge_geoloc.runtime.query_alignment import QueryAlignment

    ortho, index = world
    localizer = RecordingLocalizer(QueryAlignment(north_up=True))
    pipe = Pipeline(ThumbnailEncoder(), localizer, index, runtime_cfg(), origin=ORIGIN)
    with caplog.at_level("WARNING", logger="edge_geoloc.runtime.pipeline"):
        for i in range(3):
            state = pipe.process(camera(ortho, 10.0, 10.0, 0.5 * i, seed=i), gnss(10.0, 10.0, 0.5 * i))
            assert state.visual_fix is None and state.gnss_used
    assert pipe.counters.extra["missing_heading"] == 3 and pipe.counters.frames == 3
    assert localizer.queries == [] and pipe.counters.visual_fixes == 0
    assert sum("missing_heading" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_scale_aligned_artifact_gets_the_ground_square_from_altitude_and_fov(world):
    from edge_geoloc.data.pairs import align_query_north_up, align_query_scale
    from edge_geoloc.runtime.config import CameraConfig
    from edge_geoloc.runtime.query_alignment import QueryAlignment

    ortho, index = world
    alignment = QueryAlignment(north_up=True, ground_size_m=40.0, out_px=48)
    cfg = RuntimeConfig(pipeline=runtime_cfg(localize_top=1).pipeline, camera=CameraConfig(hfov_deg=60.0))
    localizer = RecordingLocalizer(alignment)
    pipe = Pipeline(ThumbnailEncoder(), localizer, index, cfg, origin=ORIGIN)
    image = camera(ortho, 10.0, 10.0, 0.0).image_rgb
    pipe.process(CameraFrame(0.0, image, heading_rad=0.3, altitude_agl_m=50.0), gnss(10.0, 10.0, 0.0))
    expected = align_query_scale(align_query_north_up(image, 0.3, "drone"), 50.0, 60.0, 40.0, 48)
    assert localizer.queries[0].shape == (48, 48, 3) and np.array_equal(localizer.queries[0], expected)
    pipe.process(CameraFrame(1.0, image, heading_rad=0.3), gnss(10.0, 10.0, 1.0))  # no height above ground
    no_fov = Pipeline(ThumbnailEncoder(), RecordingLocalizer(alignment), index, runtime_cfg(), origin=ORIGIN)
    no_fov.process(CameraFrame(0.0, image, heading_rad=0.3, altitude_agl_m=50.0), None)
    assert pipe.counters.extra["missing_altitude"] == 1 and no_fov.counters.extra["missing_hfov"] == 1


def test_backend_localizer_reads_the_alignment_its_artifact_declares():
    backend = FakeBackend("localizer", 1)
    backend.sidecar = {"model": {"kwargs": {}},
                       "preprocessing": {"aerial": {"size_hw": [16, 16], "ground_size_m": 64.0},
                                         "query": {"size_hw": [32, 32], "alignment": "north_up",
                                                   "ground_size_m": 32.0}}}
    loc = BackendLocalizer(backend)
    assert loc.alignment.north_up and loc.alignment.ground_size_m == 32.0 and loc.alignment.out_px == 32
    assert loc.aerial_size_m == 64.0
    assert not BackendLocalizer(FakeBackend("localizer", 1)).alignment.north_up  # no query block: none
    backend.sidecar["preprocessing"]["query"]["alignment"] = "gravity_up"
    with pytest.raises(ValueError, match="north_up"):
        BackendLocalizer(backend)


class RecordingEncoder(ThumbnailEncoder):
    """The thumbnail encoder that declares an on-board retrieval artifact's alignment and records its inputs."""

    def __init__(self, alignment) -> None:
        super().__init__()
        self.alignment, self.images = alignment, []

    def embed(self, images):
        self.images += [img.copy() for img in images]
        return super().embed(images)


def test_onboard_retrieval_artifact_embeds_the_frame_aligned_as_it_declares(world):
    from edge_geoloc.geo.view_alignment import align_query_north_up, align_query_scale
    from edge_geoloc.runtime.config import CameraConfig
    from edge_geoloc.runtime.query_alignment import QueryAlignment

    ortho, index = world
    encoder = RecordingEncoder(QueryAlignment(north_up=True, ground_size_m=40.0, out_px=48))
    localizer = RecordingLocalizer(QueryAlignment())  # the localizer wants the frame as captured
    cfg = RuntimeConfig(pipeline=runtime_cfg(localize_top=1).pipeline, camera=CameraConfig(hfov_deg=60.0))
    pipe = Pipeline(encoder, localizer, index, cfg, origin=ORIGIN)
    image = camera(ortho, 10.0, 10.0, 0.0).image_rgb
    pipe.process(CameraFrame(0.0, image, heading_rad=0.3, altitude_agl_m=50.0), gnss(10.0, 10.0, 0.0))
    expected = align_query_scale(align_query_north_up(image, 0.3, "drone"), 50.0, 60.0, 40.0, 48)
    assert np.array_equal(encoder.images[0], expected) and np.array_equal(localizer.queries[0], image)
    pipe.process(CameraFrame(1.0, image, altitude_agl_m=50.0), gnss(10.0, 10.0, 1.0))  # no heading: no retrieval
    assert len(encoder.images) == 1 and pipe.counters.extra["missing_heading"] == 1


def test_backend_encoder_reads_the_alignment_its_artifact_declares():
    backend = FakeBackend("retrieval", 1)
    assert not BackendEncoder(backend).alignment.north_up  # paper-protocol artifact: the frame as captured
    backend.sidecar = {"preprocessing": {"image": {"size_hw": [8, 8], "alignment": "north_up", "ground_size_m": 80.0}}}
    encoder = BackendEncoder(backend)
    assert encoder.alignment.north_up and encoder.alignment.ground_size_m == 80.0 and encoder.alignment.out_px == 8

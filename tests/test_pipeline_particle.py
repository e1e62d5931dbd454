"""Pipeline with ``fusion.mode: particle``: heat maps of all candidates are fused, the belief relocalizes from a
GNSS-denied start and the ambiguity flag reaches ``FusedState`` (same stand-in models as test_pipeline)."""

from __future__ import annotations

import numpy as np
from test_pipeline import (
    ORIGIN,
    TemplateLocalizer,
    camera,
    fly_straight_with_gnss,
    horizontal_error,
    runtime_cfg,
)
from test_pipeline import world as pipeline_world
from test_tile_index import ThumbnailEncoder

from edge_geoloc.fusion import FusionConfig, ParticleFilter
from edge_geoloc.runtime.config import RuntimeConfig
from edge_geoloc.runtime.heatmap_measurement import enu_to_pixel_affine
from edge_geoloc.runtime.pipeline import Pipeline

world = pipeline_world  # test_pipeline's module-scoped 400 m area and its tile index


def particle_cfg(**pipeline) -> RuntimeConfig:
    base = runtime_cfg(**pipeline)
    return RuntimeConfig(index=base.index, pipeline=base.pipeline, fusion=FusionConfig(mode="particle"))


def test_enu_to_pixel_affine_maps_the_patch_centre_to_the_centre_pixel(world):
    ortho, index = world
    patch = index.read_patch(0, 120.0, 128)
    A = enu_to_pixel_affine(patch.georef, ORIGIN)
    lat, lon = patch.georef.pixel_to_latlon(64.0, 64.0)
    e, n, _ = ORIGIN.to_enu(lat, lon, 0.0)
    np.testing.assert_allclose(A @ [e, n, 1.0], [64.0, 64.0], atol=0.05)
    assert abs(A[0, 1] + 128 / 120.0) < 0.01  # north is up: rows decrease with northing, at the patch's scale


def test_particle_mode_relocalizes_from_a_gnss_denied_start(world):
    ortho, index = world
    pipe = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, particle_cfg(localize_top=3), origin=ORIGIN)
    assert isinstance(pipe.fusion, ParticleFilter)
    errors, states = [], []
    for i in range(8):
        east, north = 10.0 + 2.0 * i, 10.0 + 1.0 * i
        state = pipe.process(camera(ortho, east, north, 0.5 * i, seed=i), None)
        states.append(state)
        errors.append(horizontal_error(state, east, north))
    assert states[0].initialized and pipe.fusion.counters.heatmap_updates == 8
    assert max(errors[-3:]) < 3.0 and not states[-1].ambiguous
    assert pipe.counters.visual_fixes == 8


def test_particle_mode_with_gnss_tracks_truth(world):
    ortho, index = world
    pipe = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, particle_cfg(), origin=ORIGIN)
    state, errors = fly_straight_with_gnss(pipe, ortho)
    assert pipe.counters.gnss_fixes >= 10
    assert np.median(errors[3:]) < 2.5 and state.horizontal_sigma_m < 5.0


class NanEveryOtherLocalizer(TemplateLocalizer):
    """The stand-in localizer, but every other heat map is corrupted with NaNs (a broken engine output)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def locate(self, query_rgb, aerial_rgb):
        self.calls += 1
        heatmap = np.array(super().locate(query_rgb, aerial_rgb), dtype=np.float64)
        if self.calls % 2 == 0:
            heatmap[::7, ::5] = np.nan
        return heatmap


def test_nan_heat_maps_are_rejected_counted_and_never_reach_the_state(world):
    ortho, index = world
    localizer = NanEveryOtherLocalizer()
    pipe = Pipeline(ThumbnailEncoder(), localizer, index, particle_cfg(), origin=ORIGIN)
    state, errors = fly_straight_with_gnss(pipe, ortho)
    assert pipe.counters.extra["bad_heatmap"] == localizer.calls // 2 > 0
    assert np.median(errors[3:]) < 2.5
    assert np.all(np.isfinite(pipe.fusion.particles)) and np.all(np.isfinite(state.position_covariance_m2))

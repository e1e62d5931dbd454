"""The on-board pipeline: retrieval (with the fused estimate as prior) -> localizer -> visual fix -> fusion.

``Pipeline.process(frame, gnss) -> FusedState`` runs once per camera frame; the GNSS fix received with it (if
any) is fused first. The models are reached through two small protocols, so any backend (TensorRT, ONNX
Runtime, PyTorch) or a test double fits:

- :class:`~edge_geoloc.runtime.tile_index.Encoder`: ``embed(images) -> (N, D)``; an optional ``alignment`` (an
  on-board-protocol retrieval artifact's ``preprocessing.image``) makes the frame north-up / scale-aligned first;
- :class:`Localizer`: ``locate(query_rgb, aerial_rgb) -> (Ha, Wa)`` heat map over the aerial patch; an optional
  ``alignment`` attribute (:class:`~edge_geoloc.runtime.query_alignment.QueryAlignment`, read from the
  artifact) says how the frame must be prepared first (north-up from ``heading_rad``, scale from
  ``altitude_agl_m`` and ``camera.hfov_deg``). A frame lacking a measurement the artifact needs gets no visual
  fix (counted in ``extra``: ``missing_heading``, ``missing_altitude``, ``missing_hfov``).

:class:`BackendEncoder` / :class:`BackendLocalizer` adapt a loaded ``Backend`` (sidecar preprocessing).

Per frame: the search is bounded by the fused estimate (radius ``search_sigma_factor * sigma + margin``),
or by the raw GNSS fix before the filter starts; with neither (GNSS-denied start) all tiles compete. The
localizer runs on the best ``localize_top`` tiles in retrieval order until one is confident; aerial patches
mostly outside the map are skipped, and a heat map whose mode falls on the black outside of the map is not
trusted. A fix whose confidence (heat-map peak mass) is under ``min_confidence`` is reported but not fused,
and counted in ``low_confidence``.

With ``fusion.mode: particle`` the fusion is the multi-hypothesis :class:`~edge_geoloc.fusion.ParticleFilter`:
retrieval always searches the whole map (its tiles seed the filter's recovery), the localizer runs on all
``localize_top`` candidates (plus the patch around the belief) and every usable heat map is fused as a
likelihood, the measured heading steers the motion, and a multi-modal belief is published with
``FusedState.ambiguous`` set (and no prior for the next search).

Cars (ground cameras): without a retrieval encoder (``encoder=None``) the localizer runs only on the aerial
patch centred on the prior (fused estimate, else the raw GNSS fix), whatever its sigma; a frame with no prior
gets no visual fix (``no_prior_frames``). When the frame has no heading and the localizer reports one
(``orientation_at(row, col)``, CCVPE's orientation output), the visual fix carries the model's heading.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_geoloc.fusion import HeatmapMeasurement, MapScores, ParticleFilter, make_fusion
from edge_geoloc.geo import EnuFrame, Patch
from edge_geoloc.geo.heatmap import HeatmapEstimate, estimate_from_heatmap
from edge_geoloc.runtime.config import PipelineConfig, RuntimeConfig
from edge_geoloc.runtime.global_search import GlobalSearch, MapSearch, make_global_search
from edge_geoloc.runtime.heatmap_measurement import enu_to_pixel_affine, heatmap_measurement
from edge_geoloc.runtime.learned_ground import learned_bev_localizer
from edge_geoloc.runtime.query_alignment import FrameRejectedError, QueryAlignment, align_query
from edge_geoloc.runtime.tile_index import Encoder, SearchResult, TileIndex
from edge_geoloc.types import (
    CameraFrame,
    FixStatus,
    FusedState,
    GnssFix,
    PipelineCounters,
    StageLatency,
    VisualFix,
)

log = logging.getLogger(__name__)


class Localizer(Protocol):
    """Fine localization: a heat map ``(Ha, Wa)`` of where the query camera is over the aerial patch."""

    def locate(self, query_rgb: np.ndarray, aerial_rgb: np.ndarray) -> np.ndarray: ...


class BackendEncoder:
    """:class:`Encoder` over a retrieval ``Backend`` (ONNX input ``image``, output ``embedding``)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.input_name, self.output_name = backend.input_names[0], "embedding"
        self.dynamic_batch = isinstance(backend.inputs[0].shape[0], str)
        self.preprocess_ms = 0.0
        self.alignment = QueryAlignment.from_sidecar(backend.sidecar, self.input_name)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        start = time.perf_counter()
        batch = [self.backend.preprocess(self.input_name, img) for img in images]  # each (1, 3, H, W)
        self.preprocess_ms = (time.perf_counter() - start) * 1e3
        if self.dynamic_batch:
            return self.backend.run({self.input_name: np.concatenate(batch)})[self.output_name]
        return np.concatenate([self.backend.run({self.input_name: x})[self.output_name] for x in batch])


class BackendLocalizer:
    """:class:`Localizer` over a localizer ``Backend`` (inputs ``query``, ``aerial``; outputs ``heatmap`` and,
    when exported, ``orientation``)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.preprocess_ms = 0.0
        self._orientation: np.ndarray | None = None  # (2, Ha, Wa) unit (cos, sin) of the last call
        aerial = backend.sidecar["preprocessing"]["aerial"]
        self.aerial_px = int(aerial["size_hw"][0])
        self.aerial_size_m = float(aerial["ground_size_m"]) if aerial.get("ground_size_m") else None
        self.alignment = QueryAlignment.from_sidecar(backend.sidecar)

    def locate(self, query_rgb: np.ndarray, aerial_rgb: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        feeds = {"query": self.backend.preprocess("query", query_rgb),
                 "aerial": self.backend.preprocess("aerial", aerial_rgb)}
        self.preprocess_ms = (time.perf_counter() - start) * 1e3
        outputs = self.backend.run(feeds)
        self._orientation = outputs["orientation"][0] if "orientation" in outputs else None
        return outputs["heatmap"][0]  # (Ha, Wa)

    def orientation_at(self, row: float, col: float) -> float | None:
        """Heading (rad, clockwise from north) the last call's orientation field gives at a heat-map pixel."""
        return orientation_at(self._orientation, row, col)


def localizer_for(backend, cfg: PipelineConfig) -> Localizer:
    """The localizer a loaded artifact is: a heat-map localizer, or a car's learned BEV matcher (kind ``matcher``,
    panorama queries; :func:`~edge_geoloc.runtime.learned_ground.learned_bev_localizer`)."""
    if backend.sidecar.get("kind") != "matcher":
        return BackendLocalizer(backend)
    size = {"aerial_size_m": cfg.aerial_size_m} if cfg.aerial_size_m > 0 else {}
    return learned_bev_localizer(backend, heading_bins=cfg.ground_heading_bins,
                                 camera_height_m=cfg.ground_camera_height_m, camera=cfg.ground_camera, **size)


def orientation_at(field: np.ndarray | None, row: float, col: float) -> float | None:
    """Heading in [0, 2 pi) of a ``(2, H, W)`` (cos, sin) field at the pixel nearest ``(row, col)``."""
    if field is None:
        return None
    r = int(np.clip(math.floor(row), 0, field.shape[1] - 1))
    c = int(np.clip(math.floor(col), 0, field.shape[2] - 1))
    return float(math.atan2(field[1, r, c], field[0, r, c]) % (2 * math.pi))


@dataclass(frozen=True)
class _Prior:
    lat_deg: float
    lon_deg: float
    radius_m: float
    sigma_m: float


class Pipeline:
    """One camera frame (+ GNSS fix) in, one :class:`FusedState` out; see the module doc."""

    def __init__(self, encoder: Encoder | None, localizer: Localizer, index: TileIndex,
                 cfg: RuntimeConfig | None = None, origin: EnuFrame | None = None,
                 global_search: GlobalSearch | None = None) -> None:
        self.cfg = cfg or RuntimeConfig()
        self.encoder, self.localizer, self.index = encoder, localizer, index
        self.global_search = global_search or make_global_search(self.cfg.global_search, encoder, index,
                                                                 self.cfg.camera.hfov_deg, self.cfg.backend)
        if origin is None and "centre_lat_deg" in index.manifest:
            origin = EnuFrame(index.manifest["centre_lat_deg"], index.manifest["centre_lon_deg"], 0.0)
        self.fusion = make_fusion(self.cfg.fusion, origin)
        self._heatmaps: list[HeatmapMeasurement] | None = [] if isinstance(self.fusion, ParticleFilter) else None
        self._own = PipelineCounters()  # what only the pipeline sees; fix counts are the filter's
        self._last_gnss: GnssFix | None = None
        self.alignment: QueryAlignment = getattr(localizer, "alignment", None) or QueryAlignment()
        self.retrieval_alignment: QueryAlignment = getattr(encoder, "alignment", None) or QueryAlignment()
        self.aerial_size_m = _aerial_size_m(self.cfg.pipeline.aerial_size_m, getattr(localizer, "aerial_size_m", None))
        self._warned: set[str] = set()

    @classmethod
    def from_config(cls, retrieval_model: str | Path | None, localizer_model: str | Path, index_dir: str | Path,
                    cfg: RuntimeConfig | None = None) -> Pipeline:
        """Load the models with :func:`load_backend` and the tile index folder; ``retrieval_model=None`` (a car's
        ground camera) localizes in the patch around the prior only."""
        from edge_geoloc.runtime.backends import load_backend

        cfg = cfg or RuntimeConfig()
        paths = [localizer_model] + ([retrieval_model] if retrieval_model is not None else [])
        backends = [load_backend(path, kind=cfg.backend.kind, device=cfg.backend.device) for path in paths]
        for backend in backends:
            if cfg.backend.warmup:
                backend.warmup(cfg.backend.warmup)
        index = TileIndex.load(index_dir, cfg.index)
        encoder = None
        if retrieval_model is not None:
            _check_index_model(index, backends[1])
            encoder = BackendEncoder(backends[1])
        return cls(encoder, localizer_for(backends[0], cfg.pipeline), index, cfg)

    def set_camera_hfov(self, hfov_deg: float) -> None:
        """The camera's calibrated horizontal field of view (e.g. from a ``CameraInfo``), replacing the config's."""
        if not 0 < hfov_deg < 180:
            raise ValueError(f"hfov_deg must be in (0, 180), got {hfov_deg}")
        self.cfg = replace(self.cfg, camera=replace(self.cfg.camera, hfov_deg=float(hfov_deg)))
        if isinstance(self.global_search, MapSearch):
            self.global_search.hfov_deg = float(hfov_deg)

    @property
    def counters(self) -> PipelineCounters:
        """A snapshot: the pipeline's own counts (frames, low confidence, no prior, dropped, search and
        alignment events) with the filter's accepted / rejected fixes, rejection reasons and resets."""
        fusion = self.fusion.counters
        return replace(self._own, gnss_fixes=fusion.gnss_accepted, gnss_rejected=fusion.gnss_rejected,
                       visual_fixes=fusion.visual_accepted, visual_rejected=fusion.visual_rejected,
                       filter_resets=fusion.filter_resets, extra={**self._own.extra, **fusion.rejected_by_reason})

    def drop_frame(self) -> None:
        """Count a camera frame the caller could not hand over in time (a paced replay falling behind)."""
        self._own.dropped_frames += 1

    def process(self, frame: CameraFrame, gnss: GnssFix | None = None) -> FusedState:
        """Fuse ``gnss`` (if given), then localize ``frame`` against the map and fuse the visual fix."""
        t0 = time.perf_counter()
        self._own.frames += 1
        gnss_used = self._fuse_gnss(gnss) if gnss is not None else False
        if self._heatmaps is not None:
            self._heatmaps.clear()
            self.fusion.set_heading(frame.stamp_s, frame.heading_rad)
        self.fusion.predict_to(frame.stamp_s)
        prior = self._prior(frame.stamp_s)
        if prior is None:
            self._own.no_prior_frames += 1
        times: dict[str, float] = {}
        fix = self._visual_fix(frame, prior, times)
        t_fusion = time.perf_counter()
        self._fuse_map_scores(frame.stamp_s)
        visual_used = self._fuse_heatmaps(frame.stamp_s) if self._heatmaps is not None else (
            self._fuse_visual(fix) if fix is not None else False)
        times["fusion_ms"] = (time.perf_counter() - t_fusion) * 1e3
        latency = StageLatency(total_ms=(time.perf_counter() - t0) * 1e3, **times)
        return self._fused_state(frame.stamp_s, gnss_used, visual_used, fix, latency)

    def add_gnss(self, gnss: GnssFix) -> bool:
        """Fuse a GNSS fix that arrived between camera frames (receivers often run faster than the camera);
        returns whether it was accepted."""
        return self._fuse_gnss(gnss)

    def _fuse_gnss(self, gnss: GnssFix) -> bool:
        if gnss.status != FixStatus.NO_FIX and gnss.fix_quality != 0:
            self._last_gnss = gnss  # a bound for the search before the filter starts
        return self.fusion.update_gnss(gnss).accepted

    def _fuse_visual(self, fix: VisualFix) -> bool:
        if fix.confidence < self.cfg.pipeline.min_confidence:
            self._own.low_confidence += 1
            return False
        return self.fusion.update_visual(fix).accepted

    def _fuse_map_scores(self, stamp_s: float) -> None:
        """Particle mode with a map-matcher global search: the frame's whole-map scores feed the map grid."""
        scores = getattr(self.global_search, "last_scores", None)
        if self._heatmaps is None or scores is None:
            return
        self.global_search.last_scores = None  # each frame's scores are used once
        z, georef = scores
        if self.fusion.origin is None:
            self.fusion.origin = EnuFrame(*georef.pixel_to_latlon(georef.height_px / 2, georef.width_px / 2), 0.0)
        self.fusion.update_map_scores(stamp_s, MapScores(z, enu_to_pixel_affine(georef, self.fusion.origin)))

    def _fuse_heatmaps(self, stamp_s: float) -> bool:
        """Particle mode: every usable heat map of this frame is one likelihood of a single update (the filter
        counts accepted and rejected updates and their reasons)."""
        if not self._heatmaps:
            return False
        return self.fusion.update_heatmaps(stamp_s, self._heatmaps).accepted

    def _prior(self, stamp_s: float) -> _Prior | None:
        """Where to search: the fused estimate, else a recent raw GNSS fix, else nowhere (all tiles); an
        ambiguous particle belief is no prior."""
        pc = self.cfg.pipeline
        gnss = self._last_gnss
        if self._heatmaps is not None and (not self.fusion.initialized or self.fusion.ambiguous):
            return None
        if self.fusion.initialized:
            lat, lon, _ = self.fusion.position_latlon()
            cov = self.fusion.state.P[:2, :2]
            sigma = math.sqrt(max(float(np.linalg.eigvalsh(cov).max()), 0.0))
        elif pc.use_gnss_prior and gnss is not None and abs(stamp_s - gnss.stamp_s) <= pc.gnss_prior_max_age_s:
            lat, lon, sigma = gnss.lat_deg, gnss.lon_deg, gnss.horizontal_sigma_m
        else:
            return None
        radius = max(pc.min_search_radius_m, pc.search_sigma_factor * sigma + pc.search_margin_m)
        return None if radius > pc.max_search_radius_m else _Prior(lat, lon, radius, sigma)

    def _aligned_query(self, frame: CameraFrame, alignment: QueryAlignment) -> np.ndarray | None:
        """The frame as a model (localizer or retrieval encoder) expects it (see the module doc); None (counted,
        logged once) when a measurement the artifact needs is missing."""
        try:
            return align_query(frame, alignment, self.cfg.camera.hfov_deg)
        except FrameRejectedError as err:
            self._bump(err.counter)
            if err.counter not in self._warned:
                self._warned.add(err.counter)
                log.warning("%s: no visual fix for such frames (counted in counters.extra[%r])", err, err.counter)
            return None

    def _visual_fix(self, frame: CameraFrame, prior: _Prior | None, times: dict[str, float]) -> VisualFix | None:
        t = time.perf_counter()
        query = self._aligned_query(frame, self.alignment)
        same = self.global_search is None or self.retrieval_alignment == self.alignment  # nothing to align
        retrieval_query = query if same else self._aligned_query(frame, self.retrieval_alignment)
        if query is None or retrieval_query is None:
            return None
        align_ms = (time.perf_counter() - t) * 1e3
        if self.global_search is None:
            return self._visual_fix_in_prior_patch(frame, query, prior, times, align_ms)
        t = time.perf_counter()
        bounded = prior is not None and self._heatmaps is None  # particle mode: retrieval is global
        result = self.global_search.search(frame, retrieval_query, self.cfg.pipeline.top_k,
                                           (prior.lat_deg, prior.lon_deg) if bounded else None,
                                           prior.radius_m if bounded else None)
        times["retrieval_ms"] = self.global_search.embed_ms
        times["search_ms"] = (time.perf_counter() - t) * 1e3 - self.global_search.embed_ms
        enc_pre_ms = self.global_search.preprocess_ms
        if result.ids.size == 0:
            self._bump("outside_map")
            times.update(preprocess_ms=align_ms + enc_pre_ms, retrieval_ms=times["retrieval_ms"] - enc_pre_ms)
            return None
        t = time.perf_counter()
        best, loc_pre_ms = self._localize(query, self._candidate_patches(prior, result))
        times["localizer_ms"] = (time.perf_counter() - t) * 1e3 - loc_pre_ms
        times.update(preprocess_ms=align_ms + enc_pre_ms + loc_pre_ms, retrieval_ms=times["retrieval_ms"] - enc_pre_ms)
        return None if best is None else self._to_visual_fix(frame, *best)

    def _visual_fix_in_prior_patch(self, frame: CameraFrame, query: np.ndarray, prior: _Prior | None,
                                   times: dict[str, float], align_ms: float) -> VisualFix | None:
        """No retrieval (a car's ground camera): localize in the patch centred on the prior only."""
        if prior is None:
            return None
        t = time.perf_counter()
        best, pre_ms = self._localize(query, self._prior_patch(prior))
        times["localizer_ms"] = (time.perf_counter() - t) * 1e3 - pre_ms
        times["preprocess_ms"] = align_ms + pre_ms
        return None if best is None else self._to_visual_fix(frame, *best)

    def _prior_patch(self, prior: _Prior) -> Iterator[tuple[int, float, Patch, bool]]:
        around = self.index.read_patch_around(prior.lat_deg, prior.lon_deg,
                                              self.aerial_size_m or self.index.tile_size_m, self._aerial_px())
        if around is None:
            self._bump("outside_map")
            return
        self._bump("prior_patches")
        yield around[0], float("nan"), around[1], self.fusion.initialized

    def _candidate_patches(self, prior: _Prior | None, result: SearchResult
                           ) -> Iterator[tuple[int, float, Patch, bool]]:
        """(tile id, retrieval score, aerial patch, centred on the fused estimate?) to localize in, best first.

        With a tight prior (1-sigma <= ``prior_patch_max_sigma_m``) the first candidate is the patch centred on
        the prior, the way the localizer is trained (a patch around the coarse fix); then the retrieved tiles.
        Patches are read lazily, only as far as the search goes."""
        pc = self.cfg.pipeline
        if prior is not None and prior.sigma_m <= pc.prior_patch_max_sigma_m:
            around = self.index.read_patch_around(prior.lat_deg, prior.lon_deg,
                                                  self.aerial_size_m or self.index.tile_size_m, self._aerial_px())
            if around is not None:
                self._bump("prior_patches")
                yield around[0], float("nan"), around[1], self.fusion.initialized
        for rank in range(min(pc.localize_top, result.ids.size)):
            tile_id = int(result.ids[rank])
            patch = self.index.read_patch(tile_id, self.aerial_size_m, self._aerial_px())
            yield tile_id, float(result.scores[rank]), patch, False

    def _localize(self, query_rgb: np.ndarray, candidates: Iterator[tuple[int, float, Patch, bool]]
                  ) -> tuple[tuple[int, float, HeatmapEstimate, bool] | None, float]:
        """Run the localizer (on the aligned query) on the candidate patches in order; the first confident
        estimate wins (else the most confident one, to be reported as low confidence).

        Returns ((tile id, retrieval score, estimate, from the prior patch) or None, milliseconds spent reading
        patches and preprocessing)."""
        pc = self.cfg.pipeline
        best: tuple[int, float, HeatmapEstimate, bool] | None = None
        pre_ms = 0.0
        t = time.perf_counter()
        for tile_id, score, patch, from_prior in candidates:
            pre_ms += (time.perf_counter() - t) * 1e3
            if patch.valid_fraction < pc.min_valid_fraction:
                self._bump("edge_tiles_skipped")
                t = time.perf_counter()
                continue
            heatmap = np.asarray(self.localizer.locate(query_rgb, patch.image), dtype=np.float64)
            pre_ms += getattr(self.localizer, "preprocess_ms", 0.0)
            estimate = self._estimate(heatmap, patch, tile_id)
            if estimate is not None and (best is None or estimate.peak_mass > best[2].peak_mass):
                best = (tile_id, score, estimate, from_prior)
            if estimate is not None and self._heatmaps is not None:
                self._keep_heatmap(heatmap, patch, from_prior, estimate.peak_mass)
            elif best is not None and best[2].peak_mass >= pc.min_confidence:
                break
            t = time.perf_counter()
        return best, pre_ms

    def _keep_heatmap(self, heatmap: np.ndarray, patch: Patch, around_belief: bool, confidence: float) -> None:
        """Particle mode: keep the heat map as a likelihood (the belief's own patch is no global candidate)."""
        if self.fusion.origin is None:
            self.fusion.origin = EnuFrame(*patch.georef.pixel_to_latlon(patch.georef.height_px / 2,
                                                                        patch.georef.width_px / 2), 0.0)
        georef = patch.georef.resized(*heatmap.shape)
        self._heatmaps.append(heatmap_measurement(heatmap, georef, self.fusion.origin,
                                                  not around_belief, confidence))

    def _aerial_px(self) -> int | None:
        return getattr(self.localizer, "aerial_px", None)

    def _estimate(self, heatmap: np.ndarray, patch: Patch, tile_id: int) -> HeatmapEstimate | None:
        georef = patch.georef.resized(*heatmap.shape)
        try:
            estimate = estimate_from_heatmap(heatmap, georef, self.cfg.pipeline.heatmap_radius_m)
        except ValueError as err:
            log.warning("unusable heat map (%s); no visual fix for this tile", err)
            self._bump("bad_heatmap")
            return None
        x, y = georef.pixel_to_crs(estimate.row, estimate.col)
        if not self.index.covers(tile_id, float(x), float(y)):  # the mode lies on the black outside of the map
            self._bump("mode_outside_map")
            return None
        return estimate

    def _to_visual_fix(self, frame: CameraFrame, tile_id: int, score: float, est: HeatmapEstimate,
                       from_prior_patch: bool) -> VisualFix:
        floor = self.cfg.pipeline.sigma_floor_m**2
        c = est.covariance_en_m2
        cov = (c[0] + floor, c[1], c[2], c[3] + floor)
        if self.fusion.origin is None:
            self.fusion.origin = EnuFrame(est.lat_deg, est.lon_deg, 0.0)
        east, north, _ = self.fusion.origin.to_enu(est.lat_deg, est.lon_deg, self.fusion.origin.alt0_m)
        return VisualFix(frame.stamp_s, est.lat_deg, est.lon_deg, float(east), float(north), cov,
                         float(est.peak_mass), float(est.entropy_nats), tile_id, score, self._heading(frame, est),
                         from_prior_patch)

    def _heading(self, frame: CameraFrame, est: HeatmapEstimate) -> float | None:
        """The frame's measured heading, else the localizer's estimate at the heat-map mode (if it gives one)."""
        if frame.heading_rad is not None and math.isfinite(frame.heading_rad):
            return frame.heading_rad
        orientation_at_mode = getattr(self.localizer, "orientation_at", None)
        heading = orientation_at_mode(est.row, est.col) if orientation_at_mode else None
        if heading is not None:
            self._bump("model_headings")
        return heading

    def _fused_state(self, stamp_s: float, gnss_used: bool, visual_used: bool, fix: VisualFix | None,
                     latency: StageLatency) -> FusedState:
        if not self.fusion.initialized:
            nan = float("nan")
            return FusedState(stamp_s, nan, nan, nan, nan, nan, nan, nan, (nan,) * 9, False, gnss_used,
                              visual_used, fix, latency)
        x, P = self.fusion.state.x, self.fusion.state.P
        lat, lon, alt = self.fusion.origin.from_enu(x[0], x[1], x[2])
        return FusedState(stamp_s, lat, lon, alt, float(x[0]), float(x[1]), float(x[3]), float(x[4]),
                          tuple(float(v) for v in P[:3, :3].ravel()), True, gnss_used, visual_used, fix, latency,
                          ambiguous=bool(getattr(self.fusion, "ambiguous", False)))

    def _bump(self, name: str) -> None:
        self._own.extra[name] = self._own.extra.get(name, 0) + 1


def _aerial_size_m(configured_m: float, declared_m: float | None) -> float | None:
    """Ground size of the aerial patches: the artifact's (scale-aligned localizers), else the config's, else
    None (the tile size)."""
    if declared_m and configured_m and abs(configured_m - declared_m) > 1e-6:
        log.warning("pipeline.aerial_size_m=%.1f m ignored: the localizer was trained on %.1f m aerial patches",
                    configured_m, declared_m)
    return declared_m or configured_m or None


def _check_index_model(index: TileIndex, backend) -> None:
    """Warn when the index was embedded with another retrieval model than the one loaded."""
    recorded = index.manifest.get("model", {}).get("sha256")
    loaded = backend.sidecar.get("sha256", {}).get("artifact")
    if recorded and loaded and recorded != loaded:
        log.warning("the tile index was built with model sha256 %s... but %s... is loaded: rebuild the index "
                    "(`edge-geoloc build-index`) or retrieval scores mean little", recorded[:12], loaded[:12])

"""Configuration of the on-board runtime (``configs/runtime*.yaml``): tile index, pipeline, fusion, backends,
camera, global search.

``RuntimeConfig`` nests one frozen section per component; each component receives only its own section::

    cfg = load_config(RuntimeConfig, "configs/runtime.yaml", ["pipeline.top_k=5", "fusion.uere_m=5"])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from edge_geoloc.fusion.config import FusionConfig
from edge_geoloc.runtime.classical import NccConfig

SearchMethod = Literal["auto", "exact", "faiss"]


@dataclass(frozen=True)
class TileIndexConfig:
    """How tiles are cut from the orthophotos and searched."""

    tile_size_m: float = 120.0  # ground footprint of one tile (square, north-up)
    stride_m: float = 60.0  # distance between neighbouring tile centres
    tile_px: int = 256  # pixels read per tile before the encoder's own resize
    min_valid_fraction: float = 0.5  # tiles at the map edge keep at least this fraction inside the raster
    batch_size: int = 16
    bucket_m: float = 250.0  # spatial grid cell used to find the tiles inside a prior's radius
    search: SearchMethod = "auto"  # "auto": exact inside a prior radius or below faiss_min_tiles, faiss above
    faiss_min_tiles: int = 50_000
    faiss_nlist: int = 0  # inverted lists of the IVF index; 0 = sqrt(N) (1000 lists for 1M tiles)
    faiss_nprobe: int = 256  # of sqrt(N) lists: ~25 % of the codes at 1M tiles, cheap with fast scan
    faiss_store: Literal["fastscan", "fp16", "flat", "pq"] = "fastscan"  # codes inside the IVF lists
    faiss_rerank: int = 300  # approximate top-N re-scored exactly against the fp16 embeddings; 0 = off
    exact_max_candidates: int = 200_000  # above this many tiles in the radius, faiss with an ID selector
    patch_cache: int = 16  # aerial patches kept in memory (read back from the GeoTIFF otherwise)

    def __post_init__(self) -> None:
        if not (self.tile_size_m > 0 and self.stride_m > 0 and self.bucket_m > 0):
            raise ValueError("index.tile_size_m, index.stride_m and index.bucket_m must be > 0 (metres)")
        if self.tile_px < 16 or self.batch_size < 1:
            raise ValueError(f"index.tile_px must be >= 16 and batch_size >= 1, got {self.tile_px}, "
                             f"{self.batch_size}")
        if not 0.0 < self.min_valid_fraction <= 1.0:
            raise ValueError(f"index.min_valid_fraction must be in (0, 1], got {self.min_valid_fraction}")
        if self.faiss_nprobe < 1 or self.faiss_nlist < 0 or self.patch_cache < 0 or self.faiss_rerank < 0:
            raise ValueError("index.faiss_nprobe must be >= 1, index.faiss_nlist >= 0 (0 = automatic), "
                             "index.faiss_rerank >= 0 and index.patch_cache >= 0")


@dataclass(frozen=True)
class PipelineConfig:
    """Retrieval -> localizer -> visual fix -> fusion, per camera frame."""

    top_k: int = 5  # tiles returned by retrieval
    localize_top: int = 1  # of those, how many the localizer runs on (best confidence wins)
    search_sigma_factor: float = 3.0  # prior search radius = factor * fused horizontal sigma + margin
    search_margin_m: float = 60.0
    min_search_radius_m: float = 100.0
    max_search_radius_m: float = 2000.0  # a larger prior sigma searches all tiles (as with no prior)
    aerial_size_m: float = 0.0  # ground size of the patch given to the localizer; 0 = the tile size
    min_confidence: float = 0.3  # visual fixes below this peak mass are not fused (counted low_confidence)
    min_valid_fraction: float = 0.6  # aerial patches at the map edge must be at least this much inside
    heatmap_radius_m: float = 10.0  # neighbourhood of the heat-map mode used for covariance and peak mass
    sigma_floor_m: float = 2.0  # added in quadrature to the heat map's spread (model error it cannot see)
    prior_patch_max_sigma_m: float = 12.0  # a prior this tight (1-sigma) is localized around first; 0 = never
    use_gnss_prior: bool = True  # before the filter starts, a raw GNSS fix bounds the search ...
    gnss_prior_max_age_s: float = 10.0  # ... if it is at most this old
    # a car's learned BEV matcher (a localizer file whose sidecar is a panorama matcher): > 0 searches that many
    # headings in every frame (a vehicle without heading; the model's heading feeds the filter); 0 needs a heading
    ground_heading_bins: int = 0
    ground_camera_height_m: float = 1.7  # the panorama camera's height above the road (its BEV projection)
    ground_camera: Literal["panorama", "pinhole"] = "panorama"  # the vehicle's camera; pinhole: a front camera

    def __post_init__(self) -> None:
        if self.top_k < 1 or not 1 <= self.localize_top <= self.top_k:
            raise ValueError(f"pipeline.top_k must be >= 1 and 1 <= localize_top <= top_k, got {self.top_k}, "
                             f"{self.localize_top}")
        if not 0.0 <= self.min_confidence <= 1.0 or not 0.0 < self.min_valid_fraction <= 1.0:
            raise ValueError("pipeline.min_confidence must be in [0, 1] and min_valid_fraction in (0, 1]")
        if self.min_search_radius_m <= 0 or self.max_search_radius_m < self.min_search_radius_m:
            raise ValueError("pipeline: need 0 < min_search_radius_m <= max_search_radius_m")


@dataclass(frozen=True)
class BackendConfig:
    """Which inference backend runs the models (see ``edge_geoloc.runtime.backends.load_backend``)."""

    kind: Literal["auto", "tensorrt", "onnxruntime", "torch"] = "auto"
    device: str = "cpu"
    warmup: int = 2


@dataclass(frozen=True)
class CameraConfig:
    """The on-board camera, as far as query alignment needs it (scale-aligned localizers)."""

    hfov_deg: float = 0.0  # horizontal field of view; 0 = unknown (a replayed flight's flight.json fills it)

    def __post_init__(self) -> None:
        if not 0.0 <= self.hfov_deg < 180.0:
            raise ValueError(f"camera.hfov_deg must be in (0, 180) degrees, or 0 for unknown, got {self.hfov_deg}")


GLOBAL_SEARCH_KINDS = ("retrieval", "ncc", "matcher")


@dataclass(frozen=True)
class GlobalSearchConfig:
    """Which tiles a frame may show when there is no prior (``runtime.global_search.make_global_search``).

    ``retrieval``: the retrieval encoder's embedding against the tile index (none for a pipeline without an
    encoder, e.g. a car); ``ncc``: the classical template matcher over the index's orthophoto (``ncc`` section);
    ``matcher``: the learned map matcher over that orthophoto, the exported model at ``model`` (.onnx with its
    sidecar, or a TensorRT engine with its manifest), run by the ``backend`` section's kind and device, with the
    geometry its sidecar declares (``runtime.map_search.build_map_matcher``).
    """

    kind: Literal["retrieval", "ncc", "matcher"] = "retrieval"
    model: str = ""  # matcher: path of the exported map matcher
    exclusion_m: float = 20.0  # matcher: the runner-up peak is searched outside this radius of the best
    background_frames: int = 64  # ncc/matcher: frames cut from the map to normalise its scores (0: raw scores)
    disc_m: float = 0.0  # matcher: > 0 scores the frame's disc of this diameter (<= the nadir footprint), not the
    #                      sidecar's square (runtime.learned_matcher.disc_mask)
    ncc: NccConfig = field(default_factory=NccConfig)

    def __post_init__(self) -> None:
        if self.kind not in GLOBAL_SEARCH_KINDS:
            raise ValueError(f"global_search.kind must be one of {GLOBAL_SEARCH_KINDS}, got {self.kind!r}")
        if self.kind == "matcher" and not self.model:
            raise ValueError("global_search.kind=matcher needs global_search.model: the exported map matcher "
                             "(edge-geoloc export of a map_matcher checkpoint)")
        if not self.exclusion_m > 0:
            raise ValueError(f"global_search.exclusion_m must be > 0 metres, got {self.exclusion_m}")
        if not (math.isfinite(self.disc_m) and self.disc_m >= 0):
            raise ValueError(f"global_search.disc_m must be 0 (the sidecar's square) or a diameter > 0 m, got "
                             f"{self.disc_m}")
        if self.background_frames != 0 and self.background_frames < 8:
            raise ValueError(f"global_search.background_frames must be 0 (off) or >= 8, got {self.background_frames}")


@dataclass(frozen=True)
class RuntimeConfig:
    """Everything the on-board runtime needs besides the model and index files."""

    index: TileIndexConfig = field(default_factory=TileIndexConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    global_search: GlobalSearchConfig = field(default_factory=GlobalSearchConfig)

"""Global search with the learned map matcher: where on the whole map (or in which tile) a camera frame is.

The same job as the classical :class:`~edge_geoloc.runtime.classical.NccMatcher`, on learned features instead of
grey levels (:mod:`edge_geoloc.models.map_matcher`): the map's feature map is computed once, the aligned frame's
features each time, and the score of a position is the cosine similarity of the frame's features with the map's
window there (numpy and OpenCV; per channel ``TM_CCORR``, normalised by the window's energy). The network runs
behind a plain callable, so the vehicle uses the exported ONNX/TensorRT graph and a benchmark may pass the
PyTorch model; this module never imports torch.

``features(image_rgb (H, W, 3) uint8) -> (C, H / stride, W / stride) float32``, image north-up at ``m_per_px``.
On board that callable is :class:`BackendFeatures` over the exported matcher (``edge-geoloc export`` of a
``matcher`` checkpoint; :func:`load_matcher_features`), and :meth:`LearnedMatcherConfig.from_sidecar` takes the
geometry (resolution, stride, frame size) from the artifact's sidecar, so the runtime follows what the model
declares.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_geoloc.artifacts import ArtifactError
from edge_geoloc.export.sidecar import InputPreprocessing, input_preprocessing
from edge_geoloc.geo.view_alignment import align_query_north_up, align_query_scale
from edge_geoloc.runtime.backends import Backend, load_backend
from edge_geoloc.runtime.backends.base import normalise_image
from edge_geoloc.runtime.classical import NccMatch, best_match

FeatureFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LearnedMatcherConfig:
    ground_size_m: float = 80.0  # the frame is cut to this much ground (the model's query_ground_size_m)
    m_per_px: float = 1.0  # the model's input resolution
    stride: int = 4  # pixels per feature cell
    exclusion_m: float = 20.0  # the runner-up peak is searched outside this radius of the best
    disc: bool = False  # the frame's cells inside the disc of diameter ground_size_m only (module doc of disc_mask)

    def __post_init__(self) -> None:
        if not (self.ground_size_m > 0 and self.m_per_px > 0 and self.stride >= 1):
            raise ValueError("learned matcher needs ground_size_m > 0, m_per_px > 0, stride >= 1")
        if self.ground_size_m / self.m_per_px / self.stride < 2:
            raise ValueError(f"a {self.ground_size_m} m frame at {self.m_per_px} m/px gives under 2 feature cells")

    @classmethod
    def from_sidecar(cls, sidecar: Mapping[str, Any], exclusion_m: float = 20.0,
                     disc_m: float = 0.0) -> LearnedMatcherConfig:
        """The geometry an exported matcher declares (its ``image`` preprocessing): resolution, stride, frame.
        ``disc_m > 0`` replaces the declared square frame by a disc of that diameter (:func:`disc_mask`)."""
        prep = matcher_preprocessing(sidecar)
        ground = float(disc_m) if disc_m > 0 else float(prep.ground_size_m)
        return cls(ground_size_m=ground, m_per_px=float(prep.m_per_px), stride=int(prep.stride),
                   exclusion_m=exclusion_m, disc=disc_m > 0)

    @property
    def cell_m(self) -> float:
        return self.m_per_px * self.stride

    @property
    def frame_px(self) -> int:
        """Frame side in model pixels, a multiple of the stride."""
        return int(round(self.ground_size_m / self.m_per_px / self.stride)) * self.stride


class LearnedMatcher:
    """Learned-feature matching of aligned frames against one north-up map image."""

    def __init__(self, map_rgb: np.ndarray, west_m: float, north_m: float, map_m_per_px: float,
                 features: FeatureFn, config: LearnedMatcherConfig | None = None) -> None:
        if map_rgb.ndim != 3 or map_rgb.shape[2] != 3:
            raise ValueError(f"map must be an (H, W, 3) RGB image, got {map_rgb.shape}")
        if not (math.isfinite(map_m_per_px) and map_m_per_px > 0):
            raise ValueError(f"map_m_per_px must be > 0, got {map_m_per_px}")
        self.config, self.features = config or LearnedMatcherConfig(), features
        c = self.config
        scale = map_m_per_px / c.m_per_px
        h, w = (int(round(n * scale)) // c.stride * c.stride for n in map_rgb.shape[:2])
        if min(h, w) < c.frame_px:
            raise ValueError(f"map of {map_rgb.shape[:2]} px at {map_m_per_px} m/px is smaller than one frame")
        resized = cv2.resize(map_rgb, (w, h), interpolation=cv2.INTER_AREA)
        self.map_features = self._checked(features(resized), (h // c.stride, w // c.stride))
        self.west_m, self.north_m = float(west_m), float(north_m)
        self._energy: dict[int, np.ndarray] = {}
        k = c.frame_px // c.stride
        self.query_mask = disc_mask(k) if c.disc else np.ones((k, k), np.float32)

    @staticmethod
    def _checked(feats: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 3 or feats.shape[1:] != hw:
            raise ValueError(f"features must be (C, {hw[0]}, {hw[1]}) for this image, got {feats.shape}")
        if not np.isfinite(feats).all():
            raise ValueError("features contain NaN or inf")
        return feats

    def prepare(self, frame_rgb: np.ndarray, heading_rad: float, altitude_agl_m: float, hfov_deg: float) -> np.ndarray:
        """The frame's unit-norm feature map: north-up by the heading, cut to ``ground_size_m`` of ground."""
        c = self.config
        north_up = align_query_north_up(frame_rgb, heading_rad, "drone")
        cut = align_query_scale(north_up, altitude_agl_m, hfov_deg, c.ground_size_m, c.frame_px)
        return self.prepare_aligned(cut)

    def prepare_aligned(self, aligned_rgb: np.ndarray) -> np.ndarray:
        """Features of a frame already north-up and cut to ``ground_size_m`` (resized to the model's pixels)."""
        c = self.config
        if aligned_rgb.shape[:2] != (c.frame_px, c.frame_px):
            aligned_rgb = cv2.resize(aligned_rgb, (c.frame_px, c.frame_px), interpolation=cv2.INTER_AREA)
        k = c.frame_px // c.stride
        feats = self._checked(self.features(aligned_rgb), (k, k)) * self.query_mask
        return feats / (np.linalg.norm(feats) + 1e-6)

    def score_map(self, query: np.ndarray) -> np.ndarray:
        """(H - k + 1, W - k + 1) cosine similarity of the frame with each map window (top-left cell indexing),
        over the query's cells (the disc's, with ``disc``)."""
        k = query.shape[-1]
        if self.config.disc and query.shape[-2:] != self.query_mask.shape:
            raise ValueError(f"a disc matcher scores {self.query_mask.shape} queries (prepare), got {query.shape}")
        if k not in self._energy:
            self._energy[k] = window_energy(self.map_features, k, self.query_mask if self.config.disc else None)
        return cosine_score_map(self.map_features, query, self._energy[k])

    @property
    def score_step_m(self) -> float:
        """Ground distance between neighbouring cells of :meth:`score_map`."""
        return self.config.cell_m

    def window_centre_en(self, row: float, col: float, k: int) -> tuple[float, float]:
        """Map east/north of the centre of the window whose top-left feature cell is ``(row, col)``."""
        cell = self.config.cell_m
        return self.west_m + (col + k / 2) * cell, self.north_m - (row + k / 2) * cell

    def locate(self, query: np.ndarray, prior_en: tuple[float, float] | None = None,
               radius_m: float | None = None) -> NccMatch:
        """Best position over the whole map, or within ``radius_m`` of ``prior_en``."""
        scores = self.score_map(query)
        k = query.shape[-1]
        if prior_en is not None and radius_m is not None:
            scores = np.where(self._near(scores.shape, k, prior_en, radius_m), scores, -1.0)
        return best_match(scores, self.window_centre_en, k, self.config.exclusion_m / self.score_step_m)

    def _near(self, shape: tuple[int, int], k: int, centre_en: tuple[float, float], radius_m: float) -> np.ndarray:
        rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
        east, north = self.window_centre_en(rows, cols, k)
        return np.maximum(np.abs(east - centre_en[0]), np.abs(north - centre_en[1])) <= radius_m


def disc_mask(k: int) -> np.ndarray:
    """(k, k) float32: 1 for the feature cells whose centre lies inside the disc inscribed in a k x k frame.

    Why a disc: a nadir frame turned north-up by any heading still covers the disc inscribed in its footprint
    (rotation leaves it in place), while the largest north-up square it always covers is 1/sqrt(2) as wide. A
    disc of the footprint's width gives the matcher 1.6 times the cells of that square (pi / 2): more evidence per
    frame for the same network (``global_search.disc_m``)."""
    centre = (k - 1) / 2
    rows, cols = np.mgrid[0:k, 0:k]
    return ((rows - centre) ** 2 + (cols - centre) ** 2 <= (k / 2) ** 2).astype(np.float32)


def window_energy(map_features: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """(H - k + 1, W - k + 1) sum of squares of ``map_features (C, H, W)`` over each k x k window (over the
    window's cells where ``mask (k, k)`` is 1, when given)."""
    squares = np.ascontiguousarray((map_features**2).sum(axis=0), dtype=np.float32)
    if mask is not None:
        return cv2.matchTemplate(squares, np.ascontiguousarray(mask, np.float32), cv2.TM_CCORR)
    return cv2.boxFilter(squares, -1, (k, k), anchor=(0, 0), normalize=False,
                         borderType=cv2.BORDER_CONSTANT)[: squares.shape[0] - k + 1, : squares.shape[1] - k + 1]


def cosine_score_map(map_features: np.ndarray, query: np.ndarray, energy: np.ndarray | None = None) -> np.ndarray:
    """Dot product of ``query (C, k, k)`` with every k x k window of ``map_features (C, H, W)``, divided by the
    window's norm (top-left cell indexing): the cosine similarity when ``query`` has unit norm."""
    k = query.shape[-1]
    map_features = np.asarray(map_features, np.float32)
    dot = np.zeros((map_features.shape[1] - k + 1, map_features.shape[2] - k + 1), np.float32)
    for channel, template in zip(map_features, np.asarray(query, np.float32), strict=True):
        dot += cv2.matchTemplate(channel, np.ascontiguousarray(template), cv2.TM_CCORR)
    energy = window_energy(map_features, k) if energy is None else energy
    return dot / np.sqrt(energy + 1e-6)


MATCHER_FIELDS = ("m_per_px", "stride", "ground_size_m")  # what the runtime needs of a matcher's sidecar


def matcher_preprocessing(sidecar: Mapping[str, Any], source: str | Path = "the model") -> InputPreprocessing:
    """The ``image`` preprocessing of an exported map matcher; a clear error for another kind of model or a
    sidecar without the matcher's geometry."""
    kind = sidecar.get("kind")
    if kind != "matcher":
        raise ArtifactError(f"{source} is a {kind!r} model; global search with kind 'matcher' needs a map matcher "
                            "(kind 'matcher'): export a map_matcher checkpoint with `edge-geoloc export`")
    try:
        prep = input_preprocessing(sidecar, "image")
    except (KeyError, ValueError, TypeError) as err:
        raise ArtifactError(f"the sidecar of {source} has no usable 'image' preprocessing ({err}); re-export it with "
                            "`edge-geoloc export`") from err
    missing = [name for name in MATCHER_FIELDS if getattr(prep, name) is None]
    if missing:
        raise ArtifactError(f"the sidecar of {source} lacks {', '.join(missing)} in its 'image' preprocessing; "
                            "re-export the matcher with `edge-geoloc export`")
    return prep


class BackendFeatures:
    """The ``features`` callable of :class:`LearnedMatcher` over an exported matcher in any backend.

    The image is normalised with the sidecar's mean/std and never resized (it is already north-up at the
    model's ``m_per_px``); its sides must be multiples of the stride. An image larger than ``max_block_hw`` (by
    default a TensorRT engine's ``--max-hw`` profile; no limit for ONNX Runtime) is processed in overlapping
    blocks of that size whose borders are cut back by the model's measured receptive field
    (``receptive_field_px`` in the sidecar), so the stitched features equal one pass over the whole image.
    """

    def __init__(self, backend: Backend, max_block_hw: tuple[int, int] | None = None) -> None:
        source = getattr(backend, "path", repr(backend))
        self.prep = matcher_preprocessing(backend.sidecar, source)
        if backend.output_names != ["features"]:
            raise ArtifactError(f"{source}: a matcher has one output 'features', this one has {backend.output_names}")
        self.backend, self.stride = backend, int(self.prep.stride)
        profile = backend.sidecar.get("engine", {}).get("profiles", {}).get("image")
        self.max_hw = tuple(max_block_hw or (profile[2][2:] if profile else ())) or None
        reach = self.prep.receptive_field_px
        self.margin_px = None if reach is None else (-(-int(reach) // self.stride) + 1) * self.stride

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        h, w = np.shape(image_rgb)[:2]
        if h % self.stride or w % self.stride:
            raise ValueError(f"matcher input of {h} x {w} px: both sides must be multiples of its stride "
                             f"{self.stride}")
        if self.max_hw is None or (h <= self.max_hw[0] and w <= self.max_hw[1]):
            return self._run(image_rgb)
        return self._blockwise(image_rgb)

    def _run(self, image_rgb: np.ndarray) -> np.ndarray:
        return self.backend.run({"image": normalise_image(image_rgb, self.prep)})["features"][0]  # (C, h, w)

    def _blockwise(self, image_rgb: np.ndarray) -> np.ndarray:
        h, w = image_rgb.shape[:2]
        margin, s = self.margin_px, self.stride
        if margin is None or min(self.max_hw) <= 2 * margin:
            raise ValueError(f"matcher input of {h} x {w} px exceeds the engine's profile ({self.max_hw[0]} x "
                             f"{self.max_hw[1]}) and cannot be split into blocks (receptive field "
                             f"{self.prep.receptive_field_px} px); rebuild with `edge-geoloc build-engine --max-hw "
                             f"{h},{w}`")
        rows, cols = block_windows(h, self.max_hw[0], margin), block_windows(w, self.max_hw[1], margin)
        out: np.ndarray | None = None
        for (r0, r1, a0, a1) in rows:
            for (c0, c1, b0, b1) in cols:
                feats = self._run(image_rgb[a0:a1, b0:b1])
                if out is None:
                    out = np.empty((feats.shape[0], h // s, w // s), np.float32)
                out[:, r0 // s:r1 // s, c0 // s:c1 // s] = feats[:, (r0 - a0) // s:(r1 - a0) // s,
                                                                 (c0 - b0) // s:(c1 - b0) // s]
        return out


def block_windows(size: int, block: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Cover ``[0, size)`` with windows of ``block`` px (fewer if the image is smaller): ``(core_start, core_end,
    window_start, window_end)``, each core at least ``margin`` px inside its window unless at the image's edge."""
    if size <= block:
        return [(0, size, 0, size)]
    core = block - 2 * margin
    out = []
    for start in range(0, size, core):
        end = min(size, start + core)
        window = min(max(0, start - margin), size - block)
        out.append((start, end, window, window + block))
    return out


def load_matcher_features(path: str | Path, backend_kind: str = "auto", device: str = "cpu") -> BackendFeatures:
    """The :class:`BackendFeatures` of an exported matcher (``.onnx`` + sidecar, ``.engine`` + manifest)."""
    return BackendFeatures(load_backend(path, kind=backend_kind, device=device))


def learned_matcher_for(path: str | Path, map_rgb: np.ndarray, west_m: float, north_m: float, map_m_per_px: float,
                        backend_kind: str = "auto", device: str = "cpu", exclusion_m: float = 20.0,
                        disc_m: float = 0.0) -> LearnedMatcher:
    """A :class:`LearnedMatcher` over ``map_rgb`` with the exported matcher at ``path`` and its declared geometry
    (a disc frame of ``disc_m`` when > 0)."""
    features = load_matcher_features(path, backend_kind, device)
    config = LearnedMatcherConfig.from_sidecar(features.backend.sidecar, exclusion_m, disc_m)
    return LearnedMatcher(map_rgb, west_m, north_m, map_m_per_px, features, config)

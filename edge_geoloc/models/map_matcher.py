"""Learned map matcher: dense features whose normalised cross-correlation finds a north-up frame on the map.

The learned counterpart of the classical NCC matcher (:mod:`edge_geoloc.runtime.classical`). One fully
convolutional network maps any north-up image at ``m_per_px`` to a feature map at ``stride`` pixels per cell;
the aligned camera frame (``query_ground_size_m`` of ground) and the map (or a tile of it) go through the same
network, and the score of a position is the cosine similarity of the frame's feature map with the map's window
there (:func:`dense_scores`). Trained contrastively over many areas and conditions
(:mod:`edge_geoloc.train.map_matcher`), it matches layout rather than colour, so it survives the map-vs-flight
gap where raw-pixel NCC fails, and it needs no global descriptor: retrieval over tiles is the best score inside
each tile's window, and a GNSS-denied relocalization is the best score over the whole map
(:class:`edge_geoloc.runtime.learned_matcher.LearnedMatcher`, torch-free over the exported network).

Export contract: ``forward(image (B, 3, H, W)) -> features (B, C, H / stride, W / stride)`` for any H, W that are
multiples of ``stride``; attributes ``m_per_px``, ``stride``, ``query_ground_size_m``, ``search_radius_m``,
``mean``, ``std``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_geoloc.artifacts import IMAGENET_MEAN, IMAGENET_STD
from edge_geoloc.models.backbone import load_pretrained_into
from edge_geoloc.models.localizer_xcorr import SiameseFeatures
from edge_geoloc.models.registry import register_model

QUERY_CAMERAS = ("nadir", "panorama")  # panorama: its queries are BEVs of north-up ground panoramas (cars)


class MapMatcher(nn.Module):
    """Shared-weight dense features for north-up frames and map imagery; see the module docstring."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 64), stage: int = 2, m_per_px: float = 1.0,
                 query_ground_size_m: float = 80.0, tile_size_m: float = 120.0, search_radius_m: float = 30.0,
                 query_camera: str = "nadir") -> None:
        super().__init__()
        if query_camera not in QUERY_CAMERAS:
            raise ValueError(f"query_camera must be one of {QUERY_CAMERAS}, got {query_camera!r}")
        if not 0 <= stage < len(channels):
            raise ValueError(f"stage must index one of the {len(channels)} feature stages, got {stage}")
        if not (m_per_px > 0 and query_ground_size_m > 0 and tile_size_m >= query_ground_size_m):
            raise ValueError("map matcher needs m_per_px > 0 and tile_size_m >= query_ground_size_m > 0, got "
                             f"{m_per_px}, {tile_size_m}, {query_ground_size_m}")
        self.features = SiameseFeatures(tuple(channels)).stages[: stage + 1]
        self.proj = nn.Conv2d(channels[stage], channels[stage], 1)
        self.stage, self.stride = int(stage), 2 ** int(stage)
        self.m_per_px, self.query_ground_size_m = float(m_per_px), float(query_ground_size_m)
        self.tile_size_m, self.search_radius_m = float(tile_size_m), float(search_radius_m)
        self.query_camera = query_camera
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.logit_scale = nn.Parameter(torch.tensor(math.log(20.0)))  # InfoNCE temperature (training only)

    @property
    def query_px(self) -> int:
        return int(round(self.query_ground_size_m / self.m_per_px))

    @property
    def tile_px(self) -> int:
        return int(round(self.tile_size_m / self.m_per_px))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for stage in self.features:
            x = stage(x)
        return self.proj(x)

    def preprocessing(self) -> dict[str, Any]:
        """Checkpoint/export block: one input ``image``, north-up at ``m_per_px``, any size (multiple of stride)."""
        return {"image": {"mean": list(self.mean), "std": list(self.std), "color_order": "RGB",
                          "interpolation": "area", "alignment": "north_up", "camera": self.query_camera,
                          "m_per_px": self.m_per_px, "stride": self.stride,
                          "query_ground_size_m": self.query_ground_size_m, "tile_size_m": self.tile_size_m,
                          "search_radius_m": self.search_radius_m}}


class MatcherFeatureBody(nn.Module):
    """The matcher's convolutional stages (the same keys as :class:`MapMatcher`'s ``features``), returning every
    stage's post-ReLU map (strides 1, 2, 4, ...), so GeM pooling applies; the matcher's 1x1 ``proj`` is not used."""

    def __init__(self, channels: tuple[int, ...], stage: int) -> None:
        super().__init__()
        self.features = SiameseFeatures(tuple(channels)).stages[: stage + 1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for stage in self.features:
            x = stage(x)
            maps.append(x)
        return maps

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            raise ValueError("the map matcher backbone is small: gradient checkpointing is not supported")


class MatcherBackbone(nn.Module):
    """The learned map matcher's feature network behind the retrieval backbone contract (``channels``,
    ``reductions``, ``mean``, ``std``, ``forward -> list of maps``), so a CSP-HD descriptor can start from a matcher
    trained on on-board pairs (``edge-geoloc pretrain model=cspdh_matcher``). ``pretrained`` is False or a local
    file whose metadata names backbone ``name``; a file for another backbone is an error naming the file."""

    def __init__(self, name: str = "map_matcher_micro", pretrained: bool | str = False,
                 out_indices: tuple[int, ...] | None = None, channels: tuple[int, ...] = (16, 32, 64, 64),
                 stage: int = 2) -> None:
        super().__init__()
        if pretrained is True:
            raise ValueError("the map matcher backbone has no hub weights: pass the file `edge-geoloc pretrain "
                             "model=cspdh_matcher` prints")
        self.body = MatcherFeatureBody(channels, stage)
        self.name = name
        levels = list(range(stage + 1))
        wanted = out_indices if out_indices is not None else levels
        if any(not -len(levels) <= i < len(levels) for i in wanted):
            raise ValueError(f"the map matcher backbone has {len(levels)} stages, asked for {tuple(wanted)}: set "
                             f"num_stages <= {len(levels)}")
        self.out_indices = [levels[i] for i in wanted]
        self.channels: list[int] = [channels[i] for i in self.out_indices]
        self.reductions: list[int] = [2**i for i in self.out_indices]
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        if pretrained:
            load_pretrained_into(self.body, self.name, Path(pretrained))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.body(x)
        return [maps[i] for i in self.out_indices]


def matcher_backbone_state(model: MapMatcher) -> dict[str, torch.Tensor]:
    """A trained matcher's convolutional stages keyed as :class:`MatcherFeatureBody` expects them."""
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k.startswith("features.")}


def dense_scores(tile_features: torch.Tensor, query_features: torch.Tensor, radius_cells: int) -> torch.Tensor:
    """(Q, T) best cosine similarity of each query's feature map with each tile's windows whose centre lies within
    ``radius_cells`` of the tile centre (zero padding outside the tile).

    ``tile_features (T, C, n, n)``, ``query_features (Q, C, k, k)``; one grouped convolution for all pairs.
    """
    return window_cosines(tile_features, query_features, radius_cells).amax((2, 3)).T


def window_cosines(tile_features: torch.Tensor, query_features: torch.Tensor, radius_cells: int) -> torch.Tensor:
    """(T, Q, 2r + 1, 2r + 1) cosine of each query's feature map with each tile's window; index ``(r, r)`` is the
    window centred on the tile centre and one index is one feature cell (``stride`` pixels) of displacement."""
    k, n = query_features.shape[-1], tile_features.shape[-1]
    q = query_features / (query_features.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-6)
    pad = max(0, (k + 2 * radius_cells - n + 1) // 2 + 1)
    tiles = F.pad(tile_features, (pad, pad, pad, pad))
    dot = F.conv2d(tiles, q)  # (T, Q, m, m)
    ones = torch.ones(1, 1, k, k, dtype=tiles.dtype, device=tiles.device)
    energy = F.conv2d((tiles * tiles).sum(1, keepdim=True), ones)
    cos = dot / torch.sqrt(energy + 1e-6)
    c = cos.shape[-1] // 2
    return cos[:, :, c - radius_cells:c + radius_cells + 1, c - radius_cells:c + radius_cells + 1]


def radius_cells(model: MapMatcher) -> int:
    return int(round(model.search_radius_m / (model.m_per_px * model.stride)))


@register_model("map_matcher_micro", kind="matcher")
def map_matcher_micro(**kwargs) -> MapMatcher:
    """CPU learned map matcher: 1 m/px, features every 4 m (16-32-64 channels), 80 m frames in 120 m tiles."""
    return MapMatcher(**kwargs)

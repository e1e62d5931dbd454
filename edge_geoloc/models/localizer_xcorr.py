"""Siamese cross-correlation localizer for nadir drone views aligned to the aerial patch (template matching).

When the drone's heading and altitude are known, the query can be rotated north-up
(:func:`edge_geoloc.geo.view_alignment.align_query_north_up`) and cut/resized to the aerial patch's ground sample
distance (:func:`edge_geoloc.geo.view_alignment.align_query_scale`): the query is then a template of the patch's
content, up to appearance. One shared fully-convolutional feature net (strides 1, 2, 4, 8) encodes both. At
each level, coarse (stride ``aerial_size / coarse_grid``) to fine (stride 2; CCVPE's geometry: the heat map
is twice the finest level), the query feature map is the correlation kernel over the aerial feature map: a
normalised cross-correlation (cosine of the template with every window), ``(B, 1, n_k, n_k)`` at cell
centres. A small decoder up-samples and merges the volumes coarse to fine, then joins the aerial stride-1
features for the last x2 step, into logits at the patch's resolution (plus a learned multiple of the summed,
up-sampled volumes, so a plain correlation peak is a heat map from the first step); a softmax over all
pixels gives the heat map.

The orientation output is the constant heading 0 (the query is north-up by construction). Static shapes and
no data-dependent loops: per-sample kernels are one grouped convolution (batch folded into channels), so
the traced ONNX graph has the batch size it was exported with (batch 1 for the runtime).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_geoloc.artifacts import IMAGENET_MEAN, IMAGENET_STD
from edge_geoloc.models.localizer import LocalizerOutput, localizer_preprocessing
from edge_geoloc.models.localizer_blocks import spatial_softmax
from edge_geoloc.models.registry import register_model


def conv_stage(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """3x3 conv (with ``stride``) - ReLU - 3x3 conv - ReLU."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True))


class SiameseFeatures(nn.Module):
    """Feature maps at strides 1, 2, 4, 8 (``channels`` per stage), each projected by a 1x1 conv for matching."""

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32, 64)) -> None:
        super().__init__()
        ins = (3, *channels[:-1])
        self.stages = nn.ModuleList(conv_stage(i, o, 1 if k == 0 else 2)
                                    for k, (i, o) in enumerate(zip(ins, channels, strict=True)))
        self.proj = nn.ModuleList(nn.Conv2d(c, c, 1) for c in channels)
        self.reductions = tuple(2**k for k in range(len(channels)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage, proj in zip(self.stages, self.proj, strict=True):
            x = stage(x)
            feats.append(proj(x))
        return feats


def normalized_xcorr(aerial: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each sample's template with every window of its aerial map, at cell centres.

    ``aerial (B, C, n, n)``, ``template (B, C, k, k)`` -> ``(B, 1, n, n)``:
    ``s(i, j) = <t, a_window(i, j)> / (|t| |a_window(i, j)|)``, zero padding outside the map. For an even ``k``
    the windows centred on cell corners are averaged 2x2 so that output ``(i, j)`` is centred on cell ``(i, j)``.
    """
    b, c, n, _ = aerial.shape
    k = template.shape[-1]
    pad = k // 2 if k % 2 == 0 else (k - 1) // 2
    padded = F.pad(aerial, (pad, pad, pad, pad))
    t = template / (torch.linalg.vector_norm(template.reshape(b, -1), dim=1).reshape(b, 1, 1, 1) + 1e-6)
    size = n + 2 * pad
    dot = F.conv2d(padded.reshape(1, b * c, size, size), t, groups=b).reshape(b, 1, size - k + 1, size - k + 1)
    ones = torch.ones(1, 1, k, k, dtype=aerial.dtype, device=aerial.device)
    energy = F.conv2d((padded * padded).sum(dim=1, keepdim=True), ones)
    score = dot / torch.sqrt(energy + 1e-6)
    if k % 2 == 0:
        score = F.avg_pool2d(score, 2, stride=1)
    return score


class XCorrLocalizer(nn.Module):
    """Coarse-to-fine normalised cross-correlation of a scale- and north-aligned drone view over an aerial patch.

    ``aerial_m_per_px``: ground sample distance the aerial patch must be fed at; the query must be cut to
    ``query_size * aerial_m_per_px`` metres of ground (``query_ground_size_m``, recorded in the checkpoint).
    """

    def __init__(self, query_size: tuple[int, int] = (32, 32), aerial_size: int = 64, coarse_grid: int = 8,
                 channels: tuple[int, ...] = (8, 16, 32, 64), decoder_channels: int = 8,
                 aerial_m_per_px: float = 1.0, query_kind: str = "drone") -> None:
        super().__init__()
        _check_args(tuple(query_size), int(aerial_size), int(coarse_grid), len(channels), query_kind)
        self.query_kind, self.query_size, self.aerial_size = query_kind, tuple(query_size), int(aerial_size)
        self.num_orientations, self.coarse_grid = 1, int(coarse_grid)
        self.query_alignment = "north_up"
        self.aerial_m_per_px = float(aerial_m_per_px)
        self.query_ground_size_m = float(self.query_size[0]) * self.aerial_m_per_px
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        n_levels = int(round(math.log2(self.aerial_size // self.coarse_grid)))
        self.level_sizes = tuple(self.coarse_grid * 2**k for k in range(n_levels))
        self.level_stages = tuple(n_levels - k for k in range(n_levels))  # feature stage (stride 2^s) per level
        self.features = SiameseFeatures(tuple(channels))
        d = decoder_channels
        self.dec_in = nn.Sequential(nn.Conv2d(1, d, 3, padding=1), nn.ReLU(inplace=True))
        self.dec = nn.ModuleList(conv_stage(d + 1, d, 1) for _ in self.level_sizes[1:])
        self.dec_final = conv_stage(d + channels[0], d, 1)
        self.dec_out = nn.Conv2d(d, 1, 3, padding=1)
        self.volume_scale = nn.Parameter(torch.tensor(10.0))

    def preprocessing(self) -> dict[str, Any]:
        """Preprocessing block for checkpoints and export sidecars (with the query's ground size)."""
        return localizer_preprocessing(self)

    def forward(self, query: torch.Tensor, aerial: torch.Tensor) -> LocalizerOutput:
        q_feats, a_feats = self.features(query), self.features(aerial)  # strides 1, 2, 4, 8
        levels = tuple(normalized_xcorr(a_feats[s], q_feats[s]) for s in self.level_stages)  # (B, 1, n_k, n_k)
        x = self.dec_in(levels[0])
        for volume, block in zip(levels[1:], self.dec, strict=True):
            x = F.interpolate(x, size=volume.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, volume], dim=1))
        size = (self.aerial_size, self.aerial_size)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        logits = self.dec_out(self.dec_final(torch.cat([x, a_feats[0]], dim=1)))
        prior = sum(F.interpolate(v, size=size, mode="bilinear", align_corners=False) for v in levels)
        heatmap = spatial_softmax(logits + self.volume_scale * prior)
        return LocalizerOutput(heatmap, levels, north_up_orientation(heatmap))


def north_up_orientation(heatmap: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) unit field (cos 0, sin 0): the aligned query's heading is 0 everywhere."""
    ones = torch.ones_like(heatmap)[:, None]
    return torch.cat([ones, torch.zeros_like(ones)], dim=1)


def _check_args(query_size: tuple[int, int], aerial_size: int, coarse_grid: int, n_stages: int,
                query_kind: str) -> None:
    if query_kind != "drone":
        raise ValueError("the cross-correlation localizer takes aligned nadir drone views (query_kind='drone'); "
                         "use a ccvpe_* model for ground views")
    if len(query_size) != 2 or query_size[0] != query_size[1]:
        raise ValueError(f"query_size must be square (H, H) at the aerial patch's m/px, got {query_size}")
    ratio = aerial_size // max(coarse_grid, 1)
    if coarse_grid < 1 or ratio * coarse_grid != aerial_size or ratio & (ratio - 1) or not 2 <= ratio <= 2 ** (
            n_stages - 1):
        raise ValueError(f"aerial_size {aerial_size} / coarse_grid {coarse_grid} must be a power of two in 2.."
                         f"{2 ** (n_stages - 1)} (the deepest feature stride)")
    if query_size[0] % ratio:
        raise ValueError(f"query_size {query_size[0]} must be a multiple of the coarse stride {ratio}")


@register_model("xcorr_drone_micro", kind="localizer")
def xcorr_drone_micro(**kwargs) -> XCorrLocalizer:
    """CPU drone localizer: siamese cross-correlation, 32 px query (32 m), 64 px aerial (64 m), levels 8->32."""
    defaults = dict(query_size=(32, 32), aerial_size=64, coarse_grid=8, channels=(8, 16, 32, 64))
    return XCorrLocalizer(**{**defaults, **kwargs})


@register_model("xcorr_drone_tiny", kind="localizer")
def xcorr_drone_tiny(**kwargs) -> XCorrLocalizer:
    """Wider siamese cross-correlation localizer: 64 px query (32 m at 0.5 m/px), 128 px aerial, levels 16->64."""
    defaults = dict(query_size=(64, 64), aerial_size=128, coarse_grid=16, channels=(12, 24, 48, 96),
                    aerial_m_per_px=0.5)
    return XCorrLocalizer(**{**defaults, **kwargs})

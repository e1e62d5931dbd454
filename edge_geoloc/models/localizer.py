"""Coarse-to-fine heat-map localizer (CCVPE-style): where inside a geo-referenced aerial patch a query was taken.

Query branch (drone view, ground panorama with circular padding, or ground pinhole image) -> one global
descriptor per level; aerial branch -> a descriptor map at the coarsest grid (e.g. 8x8). At each of the ``K``
levels the query descriptor is matched with every aerial cell at every orientation shift (a ``(O, n, n)``
matching volume of cosine similarities); the maximum over orientations, concatenated with the L2-normalised
aerial descriptors, is up-sampled x2, joined with the aerial backbone's skip feature of that size and decoded
into the next level's descriptor map. After the finest level one more x2 step gives logits at the aerial
patch's resolution and a softmax over all pixels gives the heat map. An orientation decoder (U-Net over the
coarsest full volume + descriptors) predicts a ``(cos, sin)`` field of the query heading.

Orientation bin ``i`` means heading ``i * 2*pi / O`` (clockwise from north). With a known heading the query
is rotated to north-up before the model (``query_alignment="north_up"``, see ``edge_geoloc.data.pairs``) and
``O`` can be 1. Output contract: ``LocalizerOutput`` (docs/interfaces.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edge_geoloc.models.backbone import Backbone
from edge_geoloc.models.localizer_blocks import (
    AerialDescriptor,
    OrientationMatcher,
    QueryDescriptorHead,
    UpBlock,
    circular_pad_width,
    double_conv,
    spatial_softmax,
)
from edge_geoloc.models.registry import register_model

QUERY_KINDS = ("drone", "ground_pano", "ground_pinhole")


class LocalizerOutput(NamedTuple):
    """``heatmap (B, Ha, Wa)`` sums to 1; ``levels`` coarse -> fine ``(B, O, n_k, n_k)`` cosine similarities;
    ``orientation (B, 2, Ha, Wa)`` unit (cos, sin) of the query heading."""

    heatmap: torch.Tensor
    levels: tuple[torch.Tensor, ...]
    orientation: torch.Tensor


def localizer_preprocessing(model: nn.Module) -> dict[str, Any]:
    """Per input (``query``, ``aerial``): size, mean/std, RGB order, the query's camera kind (``nadir``,
    ``panorama``, ``pinhole``; the runtime checks frames against it) and alignment.

    Scale-aligned models (``query_ground_size_m``) also record the query's and the aerial patch's ground size
    in metres: cut the north-up query to ``query.ground_size_m`` with ``align_query_scale`` and feed aerial
    patches of ``aerial.ground_size_m``.
    """
    common = {"mean": list(model.mean), "std": list(model.std), "color_order": "RGB", "interpolation": "area"}
    camera = {"drone": "nadir", "ground_pano": "panorama", "ground_pinhole": "pinhole"}[model.query_kind]
    prep = {"query": {"size_hw": list(model.query_size), "alignment": model.query_alignment, "camera": camera,
                      **common},
            "aerial": {"size_hw": [model.aerial_size, model.aerial_size], **common}}
    if getattr(model, "query_ground_size_m", None):
        prep["query"]["ground_size_m"] = float(model.query_ground_size_m)
        prep["aerial"]["ground_size_m"] = float(model.aerial_size * model.aerial_m_per_px)
    return prep


class CoarseToFineLocalizer(nn.Module):
    """CCVPE-style localizer; sizes of every head come from the backbones' feature contract."""

    def __init__(self, backbone: str = "mobilenetv3_small_050", query_kind: str = "drone",
                 query_size: tuple[int, int] = (128, 128), aerial_size: int = 128, num_orientations: int = 1,
                 coarse_grid: int = 8, level_channels: tuple[int, ...] = (16, 8, 4, 2), final_channels: int = 16,
                 orientation_channels: int = 16, query_pool: str | None = None, circular_pad_px: int = 32,
                 pretrained: bool | str = False, query_alignment: str = "north_up",
                 shared_backbone: bool = False) -> None:
        super().__init__()
        _check_args(query_kind, query_size, aerial_size, coarse_grid, len(level_channels))
        self.query_kind, self.query_size, self.aerial_size = query_kind, tuple(query_size), int(aerial_size)
        self.num_orientations, self.coarse_grid = int(num_orientations), int(coarse_grid)
        self.query_alignment = query_alignment
        self.circular_pad_px = circular_pad_px if query_kind == "ground_pano" else 0
        self.aerial_backbone = Backbone(backbone, pretrained=pretrained)
        # nadir drone views and aerial patches are one modality: one backbone can serve both (not registered
        # twice, so checkpoints hold each tensor once)
        self.query_backbone = None if shared_backbone else Backbone(backbone, pretrained=pretrained)
        self.mean, self.std = self.aerial_backbone.mean, self.aerial_backbone.std
        self.level_sizes = tuple(coarse_grid * 2**k for k in range(len(level_channels)))
        self._build_query_heads(level_channels, query_pool or ("none" if query_kind == "drone" else "height"))
        self._build_aerial_heads(level_channels, final_channels)
        self._build_orientation_decoder(orientation_channels)

    @property
    def query_encoder(self) -> Backbone:
        return self.aerial_backbone if self.query_backbone is None else self.query_backbone

    def preprocessing(self) -> dict[str, Any]:
        """Preprocessing block for checkpoints and export sidecars (see :func:`localizer_preprocessing`)."""
        return localizer_preprocessing(self)

    def _build_query_heads(self, level_channels: tuple[int, ...], pool: str) -> None:
        stride = self.query_encoder.reductions[-1]
        h, w = self.query_size[0] // stride, self.query_size[1] // stride
        in_ch = self.query_encoder.channels[-1]
        self.query_heads = nn.ModuleList(QueryDescriptorHead(in_ch, c, h, w, pool) for c in level_channels)
        self.query_lengths = [head.length for head in self.query_heads]
        o = self.num_orientations
        self.aerial_channels = [max(length, o * c) for length, c in zip(self.query_lengths, level_channels,
                                                                        strict=True)]
        self.aerial_channels = [-(-a // o) * o for a in self.aerial_channels]  # a multiple of O
        self.matchers = nn.ModuleList(OrientationMatcher(q, a, o) for q, a in zip(self.query_lengths,
                                                                                   self.aerial_channels,
                                                                                   strict=True))

    def _skip_channels(self, size: int) -> int:
        return dict(self._skip_sizes()).get(size, 0)

    def _skip_sizes(self) -> list[tuple[int, int]]:
        bb = self.aerial_backbone
        return [(self.aerial_size // r, c) for r, c in zip(bb.reductions, bb.channels, strict=True)]

    def _coarse_stage(self) -> int:
        """Index of the deepest aerial feature map at least as large as the coarse grid."""
        sizes = [s for s, _ in self._skip_sizes()]
        ok = [i for i, s in enumerate(sizes) if s >= self.coarse_grid and s % self.coarse_grid == 0]
        if not ok:
            raise ValueError(f"no aerial feature map is a multiple of coarse_grid={self.coarse_grid} "
                             f"(sizes {sizes}); lower coarse_grid or raise aerial_size")
        return ok[-1]

    def _build_aerial_heads(self, level_channels: tuple[int, ...], final_channels: int) -> None:
        stage = self._coarse_stage()
        self.coarse_stage = stage
        size = self._skip_sizes()[stage][0]
        ch = self.aerial_backbone.channels[stage]
        self.aerial_descriptor = AerialDescriptor(ch, self.aerial_channels[0], size // self.coarse_grid)
        o = self.num_orientations
        ups = []
        for k, n in enumerate(self.level_sizes):
            out_ch = self.aerial_channels[k + 1] if k + 1 < len(self.level_sizes) else final_channels
            ups.append(UpBlock(self.aerial_channels[k] + 1, self._skip_channels(2 * n), out_ch))
        self.loc_ups = nn.ModuleList(ups)
        self.loc_out = nn.Conv2d(final_channels, 1, 3, padding=1)
        self._check_final_size(o)

    def _check_final_size(self, o: int) -> None:
        if 2 * self.level_sizes[-1] != self.aerial_size:
            raise ValueError(f"coarse_grid {self.coarse_grid} x 2^{len(self.level_sizes)} must equal aerial_size "
                             f"{self.aerial_size}; change level_channels' length or coarse_grid")

    def _build_orientation_decoder(self, ch: int) -> None:
        in_ch = self.num_orientations + self.aerial_channels[0]
        self.ori_in = double_conv(in_ch, ch)
        self.ori_ups = nn.ModuleList(UpBlock(ch, self._skip_channels(2 * n), ch) for n in self.level_sizes)
        self.ori_out = nn.Conv2d(ch, 2, 3, padding=1)

    def aerial_features(self, aerial: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        feats = self.aerial_backbone(aerial)
        skips = {int(f.shape[-1]): f for f in feats}
        return self.aerial_descriptor(feats[self.coarse_stage]), skips

    def query_features(self, query: torch.Tensor) -> torch.Tensor:
        if self.circular_pad_px:
            query = circular_pad_width(query, self.circular_pad_px)
        feat = self.query_encoder(query)[-1]
        if self.circular_pad_px:
            cut = self.circular_pad_px // self.query_encoder.reductions[-1]
            feat = feat[..., cut:feat.shape[-1] - cut]
        return feat

    def forward(self, query: torch.Tensor, aerial: torch.Tensor) -> LocalizerOutput:
        q_feat = self.query_features(query)
        x, skips = self.aerial_features(aerial)
        coarse_desc, levels = x, []
        for k, (head, matcher, up) in enumerate(zip(self.query_heads, self.matchers, self.loc_ups, strict=True)):
            volume = matcher(head(q_feat), x)  # (B, O, n_k, n_k)
            levels.append(volume)
            if k == 0:
                coarse_volume = volume
            x = torch.cat([volume.amax(dim=1, keepdim=True), F.normalize(x, dim=1)], dim=1)
            x = up(x, skips.get(2 * self.level_sizes[k]))
        heatmap = spatial_softmax(self.loc_out(x))
        orientation = self._decode_orientation(coarse_volume, coarse_desc, skips)
        return LocalizerOutput(heatmap, tuple(levels), orientation)

    def _decode_orientation(self, volume: torch.Tensor, desc: torch.Tensor,
                            skips: dict[int, torch.Tensor]) -> torch.Tensor:
        y = self.ori_in(torch.cat([volume, F.normalize(desc, dim=1)], dim=1))
        for n, up in zip(self.level_sizes, self.ori_ups, strict=True):
            y = up(y, skips.get(2 * n))
        return F.normalize(self.ori_out(y), dim=1)


def _check_args(query_kind: str, query_size: tuple[int, int], aerial_size: int, coarse_grid: int,
                levels: int) -> None:
    if query_kind not in QUERY_KINDS:
        raise ValueError(f"query_kind must be one of {QUERY_KINDS}, got {query_kind!r}")
    if len(query_size) != 2 or min(query_size) < 32:
        raise ValueError(f"query_size must be (H, W) of at least 32 px each, got {query_size}")
    if levels < 1 or coarse_grid < 1 or aerial_size < 32:
        raise ValueError("need at least one level, coarse_grid >= 1 and aerial_size >= 32")


class LocalizerExportWrapper(nn.Module):
    """Flat-tuple forward for ONNX: inputs ``query``, ``aerial``; outputs ``heatmap``, ``orientation`` and,
    unless ``finest_only``, ``level_0`` ... ``level_{K-1}``."""

    def __init__(self, model: CoarseToFineLocalizer, finest_only: bool = False) -> None:
        super().__init__()
        self.model = model
        self.finest_only = finest_only
        n_levels = len(model.level_sizes)
        self.output_names = ["heatmap", "orientation"] + ([] if finest_only else
                                                          [f"level_{k}" for k in range(n_levels)])
        self.eval()  # inference only; also keeps torch.onnx.export from restoring the wrapped model to training

    def forward(self, query: torch.Tensor, aerial: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(query, aerial)
        return (out.heatmap, out.orientation) if self.finest_only else (out.heatmap, out.orientation, *out.levels)


@register_model("ccvpe_drone_tiny", kind="localizer")
def ccvpe_drone_tiny(**kwargs) -> CoarseToFineLocalizer:
    """CPU-sized drone localizer: MobileNetV3-small-0.5, 128 px drone view and aerial patch, 8->64 levels."""
    defaults = dict(backbone="mobilenetv3_small_050", query_kind="drone", query_size=(128, 128),
                    aerial_size=128, num_orientations=1, coarse_grid=8, level_channels=(16, 8, 4, 2))
    return CoarseToFineLocalizer(**{**defaults, **kwargs})


@register_model("ccvpe_drone_small", kind="localizer")
def ccvpe_drone_small(**kwargs) -> CoarseToFineLocalizer:
    """Jetson-sized drone localizer: MobileNetV3-large, 128 px drone view, 256 px aerial patch, 8->128 levels."""
    defaults = dict(backbone="mobilenetv3_large_100", query_kind="drone", query_size=(128, 128),
                    aerial_size=256, num_orientations=1, coarse_grid=8, level_channels=(32, 16, 8, 4, 2))
    return CoarseToFineLocalizer(**{**defaults, **kwargs})


@register_model("ccvpe_vigor_b0", kind="localizer")
def ccvpe_vigor_b0(**kwargs) -> CoarseToFineLocalizer:
    """CCVPE for VIGOR: EfficientNet-B0, 320x640 panorama (circular padding), 512 px aerial, 20 bins, 6 levels."""
    defaults = dict(backbone="efficientnet_b0", query_kind="ground_pano", query_size=(320, 640), aerial_size=512,
                    num_orientations=20, coarse_grid=8, level_channels=(64, 32, 16, 8, 4, 2), final_channels=16,
                    orientation_channels=32, query_alignment="none")
    return CoarseToFineLocalizer(**{**defaults, **kwargs})


@register_model("ccvpe_kitti_b0", kind="localizer")
def ccvpe_kitti_b0(**kwargs) -> CoarseToFineLocalizer:
    """CCVPE for KITTI: EfficientNet-B0, 256x1024 pinhole image, 512 px aerial, 16 bins of 22.5 deg, 6 levels."""
    defaults = dict(backbone="efficientnet_b0", query_kind="ground_pinhole", query_size=(256, 1024),
                    aerial_size=512, num_orientations=16, coarse_grid=8, level_channels=(16, 8, 4, 2, 1, 1),
                    final_channels=16, orientation_channels=32, query_alignment="none")
    return CoarseToFineLocalizer(**{**defaults, **kwargs})


@register_model("ccvpe_drone_micro", kind="localizer")
def ccvpe_drone_micro(**kwargs) -> CoarseToFineLocalizer:
    """Test/benchmark-sized drone localizer: MobileNetV3-small-0.5, 64 px drone view and aerial patch, 4->32."""
    defaults = dict(backbone="mobilenetv3_small_050", query_kind="drone", query_size=(64, 64), aerial_size=64,
                    num_orientations=1, coarse_grid=4, level_channels=(8, 4, 2, 1), final_channels=8,
                    orientation_channels=8)
    return CoarseToFineLocalizer(**{**defaults, **kwargs})


@register_model("ccvpe_pano_micro", kind="localizer")
def ccvpe_pano_micro(**kwargs) -> CoarseToFineLocalizer:
    """CPU-sized car panorama localizer: MobileNetV3-small-0.5, 64x128 north-up panorama (circular padding),
    64 px aerial patch, 4->32 levels. Unknown orientation: ``num_orientations=8, query_alignment="none"``."""
    defaults = dict(backbone="mobilenetv3_small_050", query_kind="ground_pano", query_size=(64, 128),
                    aerial_size=64, num_orientations=1, coarse_grid=4, level_channels=(8, 4, 2, 1), final_channels=8,
                    orientation_channels=8, circular_pad_px=32, query_alignment="north_up")
    return CoarseToFineLocalizer(**{**defaults, **kwargs})


@register_model("ccvpe_pinhole_micro", kind="localizer")
def ccvpe_pinhole_micro(**kwargs) -> CoarseToFineLocalizer:
    """CPU-sized car front-camera localizer: MobileNetV3-small-0.5, 64x128 pinhole view, 64 px aerial patch,
    8 orientation bins of 45 deg (a pinhole view cannot be rotated north-up)."""
    defaults = dict(backbone="mobilenetv3_small_050", query_kind="ground_pinhole", query_size=(64, 128),
                    aerial_size=64, num_orientations=8, coarse_grid=4, level_channels=(8, 4, 2, 1), final_channels=8,
                    orientation_channels=8, query_alignment="none")
    return CoarseToFineLocalizer(**{**defaults, **kwargs})


# the siamese cross-correlation drone localizers register themselves on import (after LocalizerOutput exists)

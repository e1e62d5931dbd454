"""CSP-HD drone <-> satellite retrieval model over timm backbones, registered as ``kind="retrieval"``.

One branch = backbone (last ``num_stages`` feature levels) + embedding head on the deepest level + one
``StageHead`` per earlier level (used by HCD in training only). Both views share one branch by default
(Sample4Geo); ``shared_weights=False`` gives each view its own. The learnable temperature is CLIP's
``logit_scale`` (init ``log(1/0.07)``, used as ``exp``). Export contract (docs/interfaces.md):
``encode(images, view) -> (B, D)`` L2-normalised, ``forward(images)`` = drone view, attributes
``input_size``, ``mean``, ``std``, ``embed_dim``, ``shared_weights``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from edge_geoloc.models.backbone import Backbone
from edge_geoloc.models.heads import EmbeddingHead, StageHead
from edge_geoloc.models.map_matcher import MatcherBackbone
from edge_geoloc.models.registry import register_model

VIEWS = ("drone", "satellite")
# backbones built here rather than by timm (same feature contract as ``Backbone``)
LOCAL_BACKBONES = {"map_matcher_micro": MatcherBackbone}


class StageOutputs(NamedTuple):
    """What the training losses need from one view."""

    embedding: torch.Tensor  # (B, D) L2-normalised, deepest stage
    stage_embeddings: list[torch.Tensor]  # earlier stages, shallow -> deep, each (B, D)
    feature_maps: list[torch.Tensor]  # all used stages, shallow -> deep, each (B, C_i, H_i, W_i)


class RetrievalBranch(nn.Module):
    """Backbone + heads for one view (or for both when weights are shared)."""

    def __init__(self, backbone: str, pretrained: bool | str, num_stages: int, embed_dim: int | None,
                 pool: str, stage_heads: bool, backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        indices = tuple(range(-num_stages, 0))
        build = LOCAL_BACKBONES.get(backbone, Backbone)
        self.backbone = build(backbone, pretrained=pretrained, out_indices=indices, **(backbone_kwargs or {}))
        channels = self.backbone.channels
        self.head = EmbeddingHead(channels[-1], embed_dim, pool)
        dim = self.head.embed_dim
        heads = [StageHead(c, dim, pool) for c in channels[:-1]] if stage_heads else []
        self.stage_heads = nn.ModuleList(heads)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)[-1])

    def forward_stages(self, images: torch.Tensor) -> StageOutputs:
        maps = self.backbone(images)
        stages = [head(m) for head, m in zip(self.stage_heads, maps[:-1], strict=False)]
        return StageOutputs(self.head(maps[-1]), stages, list(maps))


class RetrievalModel(nn.Module):
    """Drone/satellite encoder with a learnable temperature; see the module docstring."""

    def __init__(self, backbone: str = "convnext_atto", pretrained: bool | str = False, img_size: int = 384,
                 pool: str = "gem", embed_dim: int | None = None, shared_weights: bool = True,
                 num_stages: int = 4, stage_heads: bool = True, grad_checkpointing: bool = False,
                 temperature_init: float = 0.07, query_alignment: str = "none",
                 query_ground_size_m: float | None = None, backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        if query_alignment not in ("none", "north_up"):
            raise ValueError(f"query_alignment must be 'none' or 'north_up', got {query_alignment!r}")
        args = (backbone, pretrained, num_stages, embed_dim, pool, stage_heads, backbone_kwargs)
        names = ("shared",) if shared_weights else VIEWS
        self.branches = nn.ModuleDict({n: RetrievalBranch(*args) for n in names})
        first = self.branches[names[0]]
        self.shared_weights = shared_weights
        self.embed_dim: int = first.head.embed_dim
        self.input_size: tuple[int, int] = (img_size, img_size)
        self.mean: tuple[float, float, float] = first.backbone.mean
        self.std: tuple[float, float, float] = first.backbone.std
        self.stage_channels: list[int] = list(first.backbone.channels)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)))
        self.query_alignment, self.query_ground_size_m = query_alignment, query_ground_size_m
        if grad_checkpointing:
            self.set_grad_checkpointing(True)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory inside the timm backbones."""
        for branch in self.branches.values():
            branch.backbone.body.set_grad_checkpointing(enable)

    def branch(self, view: str) -> RetrievalBranch:
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        return self.branches["shared" if self.shared_weights else view]

    def encode(self, images: torch.Tensor, view: str = "drone") -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, D) L2-normalised embeddings."""
        return self.branch(view)(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images, "drone")

    def forward_stages(self, images: torch.Tensor, view: str) -> StageOutputs:
        """Embedding plus the per-stage embeddings and feature maps HCD needs."""
        return self.branch(view).forward_stages(images)

    def preprocessing(self) -> dict[str, Any]:
        """Preprocessing block for checkpoints and export sidecars. ``alignment`` / ``ground_size_m`` declare the
        on-board protocol (drone frame rotated north-up by the measured heading and cut to ``ground_size_m``
        of ground from the height above ground and FOV); the runtime applies them before the encoder."""
        prep = {"size_hw": list(self.input_size), "mean": list(self.mean), "std": list(self.std),
                "color_order": "RGB", "interpolation": "bilinear", "scale": 1.0 / 255.0,
                "alignment": self.query_alignment}
        if self.query_ground_size_m:
            prep["ground_size_m"] = float(self.query_ground_size_m)
        return prep


def _factory(backbone: str, img_size: int, pool: str, **defaults: Any):
    def build(**kwargs: Any) -> RetrievalModel:
        return RetrievalModel(**{"backbone": backbone, "img_size": img_size, "pool": pool, **defaults, **kwargs})

    return build


# name: (timm backbone, default input size, default pooling, description). ConvNeXt stages end without an
# activation, so they pool by average (as Sample4Geo); the ReLU-like nets use GeM.
_BUILTIN = {
    "cspdh_convnext_base": ("convnext_base", 384, "avg", "ConvNeXt-B at 384 px: the Sample4Geo setting"),
    "cspdh_convnext_tiny": ("convnext_tiny", 384, "avg", "ConvNeXt-T at 384 px: the MEAN/MobileGeo student size"),
    "cspdh_convnext_atto": ("convnext_atto", 128, "avg", "ConvNeXt-atto: synthetic world, CPU tests, Jetson"),
    "cspdh_mobilenetv3": ("mobilenetv3_large_100", 224, "gem", "MobileNetV3-L: Jetson-sized"),
    "cspdh_mobilenetv3_small": ("mobilenetv3_small_100", 128, "gem", "MobileNetV3-S: the smallest"),
    "cspdh_efficientnet_b0": ("efficientnet_b0", 224, "gem", "EfficientNet-B0: Jetson-sized"),
    "cspdh_resnet18": ("resnet18", 128, "gem", "ResNet-18: small and simple"),
    "cspdh_regnetx_002": ("regnetx_002", 64, "gem", "RegNetX-200MF (BatchNorm): trains from scratch on a CPU"),
    "cspdh_matcher": ("map_matcher_micro", 96, "gem", "the learned map matcher's features (strides 1-4), pretrained on "
                      "on-board pairs: the CPU on-board descriptor"),
}

_DEFAULTS = {"cspdh_matcher": {"num_stages": 3}}  # further constructor defaults of some entries

for _name, (_backbone, _size, _pool, _doc) in _BUILTIN.items():
    register_model(_name, kind="retrieval", description=_doc)(_factory(_backbone, _size, _pool,
                                                                       **_DEFAULTS.get(_name, {})))

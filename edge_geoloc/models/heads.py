"""Embedding heads of the retrieval model, sized from the backbone's feature contract.

``EmbeddingHead`` turns the deepest feature map into the exported, L2-normalised embedding. ``StageHead``
turns an earlier stage into an embedding of the same size; HCD (hierarchical consistency distillation)
uses these per-stage embeddings as teachers of the deepest stage during training only.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_geoloc.models.pooling import l2_normalize, make_pool


class EmbeddingHead(nn.Module):
    """Pool -> LayerNorm -> optional linear projection -> L2 normalisation (``embed_dim=None`` keeps
    ``in_channels``). Pool + LayerNorm is timm's ConvNeXt head without classifier, i.e. Sample4Geo's embedding."""

    def __init__(self, in_channels: int, embed_dim: int | None = None, pool: str = "gem") -> None:
        super().__init__()
        self.pool = make_pool(pool)
        self.norm = nn.LayerNorm(in_channels)
        self.proj = nn.Identity() if embed_dim in (None, in_channels) else nn.Linear(in_channels, embed_dim)
        self.embed_dim = in_channels if embed_dim is None else embed_dim

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D)
        return l2_normalize(self.proj(self.norm(self.pool(feature_map))))


class StageHead(nn.Module):
    """Pool -> LayerNorm -> linear to ``embed_dim`` -> L2 normalisation, for one earlier stage."""

    def __init__(self, in_channels: int, embed_dim: int, pool: str = "gem") -> None:
        super().__init__()
        self.pool = make_pool(pool)
        self.norm = nn.LayerNorm(in_channels)
        self.proj = nn.Linear(in_channels, embed_dim)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:  # (B, C_i, H_i, W_i) -> (B, D)
        return l2_normalize(self.proj(self.norm(self.pool(feature_map))))

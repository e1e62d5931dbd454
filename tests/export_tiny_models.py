"""Tiny models that follow the retrieval / localizer contracts (docs/interfaces.md), for export tests.

They are deliberately not registered: tests of the registry's own models live in test_export_registry.py.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class TinyRetrieval(nn.Module):
    """conv -> GeM-like mean pool -> linear -> L2 norm, with a separate satellite branch."""

    def __init__(self, size: int = 32, dim: int = 16) -> None:
        super().__init__()
        self.input_size = (size, size)
        self.mean, self.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
        self.embed_dim, self.shared_weights = dim, False
        self.drone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1))
        self.satellite = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                       nn.Conv2d(8, 16, 3, padding=1))
        self.head = nn.Linear(16, dim)

    def encode(self, images: torch.Tensor, view: str = "drone") -> torch.Tensor:
        feats = (self.drone if view == "drone" else self.satellite)(images)  # (B, 16, h, w)
        return F.normalize(self.head(feats.mean(dim=(2, 3))), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images, "drone")


class TinyOutput(NamedTuple):
    heatmap: torch.Tensor
    levels: tuple[torch.Tensor, ...]
    orientation: torch.Tensor


class TinyLocalizer(nn.Module):
    """Correlates a pooled query descriptor with aerial features at two scales; softmax heat map."""

    def __init__(self, query: int = 32, aerial: int = 32) -> None:
        super().__init__()
        self.query_size, self.aerial_size, self.num_orientations = (query, query), aerial, 1
        self.mean, self.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        self.q = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.ori = nn.Conv2d(8, 2, 1)

    def forward(self, query: torch.Tensor, aerial: torch.Tensor) -> TinyOutput:
        qd = self.q(query).mean(dim=(2, 3))  # (B, 8)
        fa = self.a(aerial)  # (B, 8, H, W)
        fine = torch.einsum("bc,bchw->bhw", qd, fa)
        coarse = F.avg_pool2d(fine[:, None], 4)  # (B, 1, H/4, W/4)
        b, h, w = fine.shape
        heat = torch.softmax(fine.reshape(b, -1), dim=1).reshape(b, h, w)
        ori = F.normalize(self.ori(fa), dim=1)
        return TinyOutput(heat, (coarse, fine[:, None]), ori)

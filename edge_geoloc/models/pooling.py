"""Global pooling of a feature map into a vector: GeM and average pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeM(nn.Module):
    """Generalised-mean pooling: ``f_c = (mean_{h,w} max(x_chw, eps)^p)^(1/p)``.

    ``p = 1`` is average pooling and ``p -> inf`` max pooling; ``p`` is learnable (init 3), as in
    Radenovic et al. (2018). It keeps strong local responses (roofs, crossings) that averaging dilutes.
    Meant for non-negative (post-ReLU) features: negative activations are clamped to ``eps``, so on ConvNeXt
    stage outputs (no activation at the end) use average pooling.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C)
        p = self.p.clamp(min=1.0)
        return x.clamp(min=self.eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class AvgPool(nn.Module):
    """Global average pooling ``(B, C, H, W) -> (B, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


def make_pool(kind: str) -> nn.Module:
    """``"gem"`` or ``"avg"``."""
    if kind == "gem":
        return GeM()
    if kind == "avg":
        return AvgPool()
    raise ValueError(f"unknown pooling {kind!r}; use 'gem' or 'avg'")


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, p=2.0, dim=-1, eps=1e-12)

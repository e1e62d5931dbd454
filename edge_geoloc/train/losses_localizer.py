"""Losses and labels of the coarse-to-fine localizer (CCVPE), shared by supervised training and adaptation.

Labels: a Gaussian ``g(u, v) = exp(-|(u, v) - y|^2 / (2 sigma^2))`` (peak 1, sigma in pixels of the heat map)
around the target pixel ``y``, split over the two orientation bins nearest to the query heading by linear
interpolation, and max-pooled down to each matching level (CCVPE's ``MaxPool2d(H / n_k)``).

Total (CCVPE defaults): ``L = w_ce * L_CE + w_nce * mean_{k <= K'} L_infoNCE,k + w_ori * L_ori`` with
``w_ce = 1, w_nce = 1e4, w_ori = 10``; adaptation uses ``w_ce = w_ori = 0`` and ``K' = 2`` (coarse-only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LocalizerLossConfig:
    """Weights and label shape of :class:`LocalizerLoss`. ``supervised_levels`` = K' (None: all levels)."""

    sigma_px: float = 4.0
    temperature: float = 0.1
    positive_threshold: float = 1e-2
    ce_weight: float = 1.0
    infonce_weight: float = 1e4
    orientation_weight: float = 10.0
    supervised_levels: int | None = None

    def __post_init__(self) -> None:
        if self.sigma_px <= 0 or self.temperature <= 0:
            raise ValueError("sigma_px and temperature must be positive")
        if self.supervised_levels is not None and self.supervised_levels < 1:
            raise ValueError("supervised_levels (K') must be >= 1 or null for all levels")


class LocalizerTargets(NamedTuple):
    """``heatmap (B, H, W)`` Gaussian with peak 1; ``levels`` coarse -> fine ``(B, O, n_k, n_k)`` weights;
    ``heading_rad (B,)`` or None when the orientation is not supervised."""

    heatmap: torch.Tensor
    levels: tuple[torch.Tensor, ...]
    heading_rad: torch.Tensor | None


def gaussian_heatmap(rowcol: torch.Tensor, size_hw: tuple[int, int], sigma_px: float) -> torch.Tensor:
    """(B, 2) continuous (row, col) -> (B, H, W) Gaussian with peak 1 evaluated at pixel centres."""
    rows = torch.arange(size_hw[0], dtype=torch.float32, device=rowcol.device) + 0.5
    cols = torch.arange(size_hw[1], dtype=torch.float32, device=rowcol.device) + 0.5
    d_row = (rows[None, :] - rowcol[:, :1]) ** 2  # (B, H)
    d_col = (cols[None, :] - rowcol[:, 1:]) ** 2  # (B, W)
    return torch.exp(-(d_row[:, :, None] + d_col[:, None, :]) / (2.0 * sigma_px**2))


def orientation_bin_weights(heading_rad: torch.Tensor | None, num_orientations: int, batch: int) -> torch.Tensor:
    """(B, O) weights: bin ``i`` is heading ``i * 2pi / O``; a heading between two bins is split linearly.

    With one bin, or no heading (the query was rotated north-up beforehand), all weight goes to bin 0.
    """
    if num_orientations == 1 or heading_rad is None:
        weights = torch.zeros(batch, num_orientations)
        weights[:, 0] = 1.0
        return weights
    pos = torch.remainder(heading_rad.float(), 2 * math.pi) / (2 * math.pi) * num_orientations
    low = torch.floor(pos).long() % num_orientations
    frac = pos - torch.floor(pos)
    weights = torch.zeros(batch, num_orientations, device=heading_rad.device)
    weights.scatter_(1, low[:, None], (1 - frac)[:, None])
    weights.scatter_add_(1, ((low + 1) % num_orientations)[:, None], frac[:, None])
    return weights


def level_labels(gt: torch.Tensor, bin_weights: torch.Tensor, level_sizes: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Lift (B, H, W) to (B, O, H, W) with the bin weights and max-pool to each (n_k, n_k) level."""
    lifted = gt[:, None] * bin_weights.to(gt.device)[:, :, None, None]
    return tuple(F.max_pool2d(lifted, kernel_size=gt.shape[-1] // n) for n in level_sizes)


def make_targets(rowcol: torch.Tensor, heading_rad: torch.Tensor | None, size_hw: tuple[int, int],
                 level_sizes: tuple[int, ...], num_orientations: int, sigma_px: float) -> LocalizerTargets:
    """All labels for a batch of target pixels ``rowcol (B, 2)`` (ground truth, or a teacher's modes)."""
    gt = gaussian_heatmap(rowcol, size_hw, sigma_px)
    weights = orientation_bin_weights(heading_rad, num_orientations, rowcol.shape[0])
    return LocalizerTargets(gt, level_labels(gt, weights, level_sizes), heading_rad)


class WeightedInfoNCE(nn.Module):
    """infoNCE over all (orientation, row, col) cells of one level, weighted by the label.

    ``L = - sum_{j in P} w_j log( exp(s_j / tau) / sum_k exp(s_k / tau) ) / sum_{j in P} w_j``, with ``s`` the
    cosine similarities, ``w`` the label and ``P = {j : w_j > threshold}``; averaged over the batch.
    """

    def __init__(self, temperature: float = 0.1, positive_threshold: float = 1e-2) -> None:
        super().__init__()
        self.temperature = temperature
        self.positive_threshold = positive_threshold

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b = scores.shape[0]
        logp = torch.log_softmax(scores.reshape(b, -1) / self.temperature, dim=1)
        w = labels.reshape(b, -1)
        w = torch.where(w > self.positive_threshold, w, torch.zeros_like(w))
        per_sample = -(w * logp).sum(dim=1) / w.sum(dim=1).clamp_min(1e-12)
        return per_sample.mean()


def heatmap_cross_entropy(heatmap: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``L_CE = -sum_pixels p log h`` with ``p = gt / sum(gt)``, averaged over the batch."""
    p = gt / gt.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return -(p * torch.log(heatmap.clamp_min(1e-12))).sum(dim=(1, 2)).mean()


def orientation_loss(orientation: torch.Tensor, gt: torch.Tensor, heading_rad: torch.Tensor) -> torch.Tensor:
    """``L_ori = sum_pixels g(u, v) |o_gt - o(u, v)|^2``, averaged over the batch; ``o_gt = (cos, sin)``."""
    target = torch.stack([torch.cos(heading_rad), torch.sin(heading_rad)], dim=1)[:, :, None, None]
    return (gt * ((orientation - target) ** 2).sum(dim=1)).sum(dim=(1, 2)).mean()


class LocalizerLoss(nn.Module):
    """CCVPE's weighted sum of CE, per-level infoNCE (first ``K'`` levels) and orientation losses."""

    def __init__(self, cfg: LocalizerLossConfig = LocalizerLossConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.infonce = WeightedInfoNCE(cfg.temperature, cfg.positive_threshold)

    def forward(self, output, targets: LocalizerTargets) -> tuple[torch.Tensor, dict[str, float]]:
        k = self.cfg.supervised_levels or len(output.levels)
        nce = torch.stack([self.infonce(s, t) for s, t in zip(output.levels[:k], targets.levels[:k],
                                                              strict=True)]).mean()
        total = self.cfg.infonce_weight * nce
        parts = {"infonce": float(nce.detach())}
        if self.cfg.ce_weight:
            ce = heatmap_cross_entropy(output.heatmap, targets.heatmap)
            total = total + self.cfg.ce_weight * ce
            parts["ce"] = float(ce.detach())
        if self.cfg.orientation_weight and targets.heading_rad is not None:
            ori = orientation_loss(output.orientation, targets.heatmap, targets.heading_rad)
            total = total + self.cfg.orientation_weight * ori
            parts["orientation"] = float(ori.detach())
        parts["total"] = float(total.detach())
        return total, parts

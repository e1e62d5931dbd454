"""Adapt a trained localizer to a new area by self-distillation, with no ground-truth position of that area.

The pipeline of Xia et al. (ECCV 2024), as in the authors' released code:
1. the teacher (trained elsewhere) predicts every unlabeled target sample; its finest heat map's mode ``y^T``;
2. mode-based pseudo ground truth: a Gaussian (``sigma_px``, 4 px by default) at ``y^T``, lifted to the known
   orientation bin and max-pooled to each matching level;
3. an auxiliary student, initialised from the teacher, is trained on all samples with coarse-only supervision:
   ``L = w * (1/K') sum_{k <= K'} L_infoNCE,k`` (no heat-map CE, no orientation loss);
4. the teacher-auxiliary distance ``d = |y^T - y^aux|`` of every sample; the ``T`` fraction with the smallest
   ``d`` is kept (rank-based, so ties at 0 px cannot empty the set as a strict ``d < quantile`` could);
5. the final student, again initialised from the teacher, is trained the same way on the kept samples with the
   teacher's pseudo labels.
The target set is opened with ``read_ground_truth=False`` and training only reads ``query``, ``aerial``,
``heading_rad`` and ``index``; ``tests/test_adaptation.py`` proves that garbage labels give the same student.
Validation with ground truth (:func:`validate`) is optional and separate.
Ablations: ``mode_based_labels=False`` distils the teacher's whole heat map (sum-pooled to each level) instead
of its mode; ``filter_outliers=False`` trains the final student on all samples (no auxiliary student).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.data.pairs import PairDataset, dataset_for_model
from edge_geoloc.evaluate.localization_metrics import evaluate_dataset, predict
from edge_geoloc.models.checkpoint import save_model
from edge_geoloc.train.localizer_trainer import batch_heading, make_loader, train_one_epoch
from edge_geoloc.train.losses_localizer import (
    LocalizerLoss,
    LocalizerLossConfig,
    LocalizerTargets,
    make_targets,
    orientation_bin_weights,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaptConfig:
    """Settings of the adaptation; defaults are the paper's CCVPE values (K'=2, T=80%, sigma 4 px, 3 epochs)."""

    sigma_px: float = 4.0
    supervised_levels: int = 2
    keep_fraction: float = 0.8
    aux_epochs: int = 3
    student_epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 8
    seed: int = 17
    temperature: float = 0.1
    positive_threshold: float = 0.0
    infonce_weight: float = 1e4
    mode_based_labels: bool = True
    filter_outliers: bool = True
    align_north_up: bool = True
    device: str = "cpu"
    histogram_bins: int = 20

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction (T) must be in (0, 1], got {self.keep_fraction}")
        if self.supervised_levels < 1 or self.sigma_px <= 0:
            raise ValueError("supervised_levels (K') must be >= 1 and sigma_px > 0")


@dataclass
class PseudoLabels:
    """Teacher outputs on the target set: ``modes (N, 2)`` (row, col) and, for the ablation, heat maps."""

    modes: np.ndarray
    heatmaps: np.ndarray | None = None


@dataclass
class AdaptResult:
    student: torch.nn.Module
    report: dict[str, Any]
    auxiliary: torch.nn.Module | None = None  # trained on all samples (the "no filtering" ablation row)


def open_target(target_dir: str | Path, model: torch.nn.Module, cfg: AdaptConfig) -> PairDataset:
    """The unlabeled target set: ground-truth fields are never read (``read_ground_truth=False``)."""
    return dataset_for_model(target_dir, model, read_ground_truth=False, align_north_up=cfg.align_north_up)


@torch.no_grad()
def teacher_pseudo_labels(teacher: torch.nn.Module, dataset: Any, cfg: AdaptConfig) -> PseudoLabels:
    """Modes of the teacher's finest heat maps (and the maps themselves when labels are not mode-based)."""
    loader = make_loader(dataset, cfg.batch_size, shuffle=False, seed=0)
    modes = predict(teacher, loader, cfg.device)["rowcol"]
    if cfg.mode_based_labels:
        return PseudoLabels(modes)
    maps = [teacher(b["query"].to(cfg.device), b["aerial"].to(cfg.device)).heatmap.cpu() for b in loader]
    return PseudoLabels(modes, torch.cat(maps).numpy())


def _soft_level_labels(heatmaps: torch.Tensor, bins: torch.Tensor, level_sizes: tuple[int, ...]
                       ) -> tuple[torch.Tensor, ...]:
    """The teacher's heat map as it is (no mode), sum-pooled to each level and lifted to orientation bins."""
    out = []
    for n in level_sizes:
        pooled = F.avg_pool2d(heatmaps[:, None], heatmaps.shape[-1] // n)[:, 0]
        out.append(pooled[:, None] * bins[:, :, None, None])
    return tuple(out)


def pseudo_targets(model: torch.nn.Module, labels: PseudoLabels, sigma_px: float):
    """A targets function that looks up each batch item's pseudo label by its dataset ``index``."""
    size = (model.aerial_size, model.aerial_size)

    def targets(batch: dict[str, Any]) -> LocalizerTargets:
        index = torch.as_tensor(batch["index"]).numpy()
        heading = batch_heading(batch)
        rowcol = torch.from_numpy(labels.modes[index]).float()
        if labels.heatmaps is None:
            return make_targets(rowcol, heading, size, model.level_sizes, model.num_orientations, sigma_px)
        maps = torch.from_numpy(labels.heatmaps[index]).float()
        bins = orientation_bin_weights(heading, model.num_orientations, len(index))
        return LocalizerTargets(maps, _soft_level_labels(maps, bins, model.level_sizes), heading)

    return targets


def coarse_only_loss(cfg: AdaptConfig) -> LocalizerLoss:
    """infoNCE on the first K' levels only: no CE on the final map, no orientation loss (released code)."""
    return LocalizerLoss(LocalizerLossConfig(sigma_px=cfg.sigma_px, temperature=cfg.temperature,
                                             positive_threshold=cfg.positive_threshold, ce_weight=0.0,
                                             infonce_weight=cfg.infonce_weight, orientation_weight=0.0,
                                             supervised_levels=cfg.supervised_levels))


def train_student(teacher: torch.nn.Module, dataset: Any, labels: PseudoLabels, indices: np.ndarray,
                  epochs: int, cfg: AdaptConfig) -> torch.nn.Module:
    """A copy of the teacher trained on ``dataset[indices]`` against the pseudo labels."""
    torch.manual_seed(cfg.seed)
    student = copy.deepcopy(teacher).to(cfg.device)
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    subset = Subset(dataset, [int(i) for i in indices])
    loss_fn, targets_fn = coarse_only_loss(cfg), pseudo_targets(student, labels, cfg.sigma_px)
    for epoch in range(epochs):
        loader = make_loader(subset, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch)
        parts = train_one_epoch(student, loader, targets_fn, loss_fn, optimizer, cfg.device, log_every=0,
                                epoch=epoch)
        log.info("student epoch %d/%d on %d samples: infoNCE %.4f", epoch + 1, epochs, len(subset),
                 parts.get("infonce", float("nan")))
    return student.eval()


def keep_closest(distances: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Sorted indices of the ``ceil(T * N)`` samples with the smallest distance (stable on ties)."""
    n_keep = max(1, int(np.ceil(keep_fraction * len(distances) - 1e-9)))
    return np.sort(np.argsort(distances, kind="stable")[:n_keep])


def distance_histogram(distances_px: np.ndarray, m_per_px: float, bins: int) -> dict[str, Any]:
    counts, edges = np.histogram(distances_px, bins=bins)
    return {"edges_px": edges.round(3).tolist(), "edges_m": (edges * m_per_px).round(3).tolist(),
            "counts": counts.tolist()}


def agreement(a: np.ndarray, b: np.ndarray, m_per_px: float) -> dict[str, float]:
    """How far two models' modes are apart on the same samples (metres)."""
    d = np.linalg.norm(a - b, axis=1) * m_per_px
    return {"mean_m": float(d.mean()), "median_m": float(np.median(d)), "within_1m": float((d < 1).mean()),
            "within_3m": float((d < 3).mean())}


def adapt(teacher: torch.nn.Module, target: PairDataset, cfg: AdaptConfig,
          out_dir: str | Path | None = None) -> AdaptResult:
    """Run the whole pipeline on an unlabeled target set; writes checkpoints and ``report.json`` to ``out_dir``."""
    t0 = time.monotonic()
    if target.read_ground_truth:
        raise ValueError("open the target set with read_ground_truth=False (see open_target)")
    torch.manual_seed(cfg.seed)
    teacher = teacher.to(cfg.device).eval()
    labels = teacher_pseudo_labels(teacher, target, cfg)
    m_per_px = _mean_m_per_px(target)
    all_idx = np.arange(len(target))
    report: dict[str, Any] = {"config": cfg.__dict__, "samples": len(target), "m_per_px": m_per_px}
    kept, aux = all_idx, None
    if cfg.filter_outliers:
        aux = train_student(teacher, target, labels, all_idx, cfg.aux_epochs, cfg)
        aux_modes = predict(aux, make_loader(target, cfg.batch_size, False, 0), cfg.device)["rowcol"]
        distances = np.linalg.norm(labels.modes - aux_modes, axis=1)
        kept = keep_closest(distances, cfg.keep_fraction)
        report.update(_filter_report(distances, kept, m_per_px, cfg))
        report["teacher_vs_auxiliary"] = agreement(labels.modes, aux_modes, m_per_px)
    student = train_student(teacher, target, labels, kept, cfg.student_epochs, cfg)
    student_modes = predict(student, make_loader(target, cfg.batch_size, False, 0), cfg.device)["rowcol"]
    report["kept"] = int(len(kept))
    report["teacher_vs_student"] = agreement(labels.modes, student_modes, m_per_px)
    report["seconds"] = round(time.monotonic() - t0, 1)
    if out_dir is not None:
        _write_outputs(Path(out_dir), student, aux, labels, student_modes, kept, report, cfg)
    log.info("adaptation: kept %d/%d samples, teacher-student median shift %.2f m", len(kept), len(target),
             report["teacher_vs_student"]["median_m"])
    return AdaptResult(student, report, aux)


def _mean_m_per_px(dataset: PairDataset) -> float:
    sizes = [r.aerial_georef.m_per_px * r.aerial_georef.height_px / dataset.aerial_size for r in dataset.records]
    return float(np.mean(sizes))


def _filter_report(distances: np.ndarray, kept: np.ndarray, m_per_px: float, cfg: AdaptConfig) -> dict[str, Any]:
    threshold = float(distances[kept].max()) if len(kept) else 0.0
    return {"distance_threshold_px": threshold, "distance_threshold_m": threshold * m_per_px,
            "distance_median_px": float(np.median(distances)),
            "distance_histogram": distance_histogram(distances, m_per_px, cfg.histogram_bins)}


def _write_outputs(out: Path, student: torch.nn.Module, aux: torch.nn.Module | None, labels: PseudoLabels,
                   student_modes: np.ndarray, kept: np.ndarray, report: dict[str, Any], cfg: AdaptConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    extra = {"adaptation": {k: v for k, v in report.items() if k != "config"}}
    save_model(student, out / "student.safetensors", cfg, extra)
    if aux is not None:
        save_model(aux, out / "auxiliary_student.safetensors", cfg)
    np.savez(out / "pseudo_labels.npz", teacher_modes=labels.modes, student_modes=student_modes, kept=kept)
    atomic_write_json(out / "report.json", json.loads(json.dumps(report, default=str)))


def validate(models: dict[str, torch.nn.Module], validation_dir: str | Path, cfg: AdaptConfig,
             batch_size: int = 16) -> dict[str, dict[str, float]]:
    """Optional, separate from :func:`adapt`: errors of each model on a labelled validation set of the area."""
    first = next(iter(models.values()))
    dataset = dataset_for_model(validation_dir, first, read_ground_truth=True, align_north_up=cfg.align_north_up)
    return {name: evaluate_dataset(m, dataset, batch_size, cfg.device) for name, m in models.items()}

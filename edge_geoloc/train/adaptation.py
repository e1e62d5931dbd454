"""Adapt a trained localizer to a new area by self-distillation, with no ground-truth position of that area.

The pipeline of Xia et al. (ECCV 2024), as in the authors' released code, with the settings in physical units:
1. the teacher (trained elsewhere) predicts every usable unlabeled target sample; its finest heat map's mode
   ``y^T``;
2. mode-based pseudo ground truth: a Gaussian of ``sigma_m`` metres (the paper's 4 px at VIGOR's 512 px, about
   0.57 m) converted to the model's heat-map pixels (``sigma_px = sigma_m / m_per_px``), at ``y^T``, lifted to
   the known orientation bin and max-pooled to each matching level;
3. an auxiliary student, initialised from the teacher, is trained on all samples with coarse-only supervision:
   ``L = w * (1/K') sum_{k <= K'} L_infoNCE,k`` with ``K'`` below the number of levels (no heat-map CE, no
   orientation loss); panoramas are rolled at random with their orientation label (released code);
4. the teacher-auxiliary distance ``d = |y^T - y^aux|`` of every sample; samples with
   ``d <= quantile_T(d)`` are kept (a distance quantile: tied samples are kept or dropped together, never
   split by dataset order; inclusive, so an all-tied set is kept whole where the released ``<`` keeps none);
5. the final student, again initialised from the teacher, is trained the same way on the kept samples with the
   teacher's pseudo labels. With a labelled validation set of the area (optional, as the paper's 10 % split),
   the epoch with the lowest validation mean error is also returned (``AdaptResult.selected``; checked
   ``validations_per_epoch`` times per epoch); the last epoch's student is always returned too, so both can be
   reported.
Option, not in the paper (``anchor_weight > 0``): the levels from K' on, which get no pseudo label, are tied to
the teacher's own distribution on that level (cross-entropy to the teacher's softmax at the infoNCE
temperature, weight ``anchor_weight`` relative to the pseudo-label term), so that coarse-level training does not
drag the unsupervised finest level away from what the teacher's decoder reads.
The target set is opened with ``read_ground_truth=False`` and training only reads ``query``, ``aerial``,
``heading_rad`` and ``index``; ``tests/test_adaptation.py`` proves that garbage labels give the same student.
Inputs are checked before any training (:mod:`edge_geoloc.train.adaptation_inputs`).
Ablations: ``mode_based_labels=False`` distils the teacher's whole heat map, max-pooled to each level as the
mode labels are, instead of its mode; ``filter_outliers=False`` trains the final student on all samples.
"""

from __future__ import annotations

import copy
import itertools
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
from edge_geoloc.evaluate.localization_metrics import evaluate_dataset, evaluate_predictions, predict
from edge_geoloc.evaluate.statistics import paired_bootstrap
from edge_geoloc.models.checkpoint import save_model
from edge_geoloc.train.adaptation_inputs import (
    RolledPanoramas,
    UsablePairs,
    check_enough,
    check_ground_size,
    check_supervised_levels,
    check_teacher,
    usable_pairs,
)
from edge_geoloc.train.localizer_trainer import batch_heading, make_loader, train_one_epoch
from edge_geoloc.train.losses_localizer import (
    LocalizerLoss,
    LocalizerLossConfig,
    LocalizerTargets,
    make_targets,
    orientation_bin_weights,
)

log = logging.getLogger(__name__)


PAPER_SIGMA_M = 4.0 * 640 * 0.1133 / 512  # 4 px at 512 px over VIGOR's 640 px x 0.1133 m tiles: ~0.57 m


@dataclass(frozen=True)
class AdaptConfig:
    """Settings of the adaptation; defaults are the paper's CCVPE values (K'=2, T=80 %, 3 epochs, Adam 1e-4,
    batch 8) with sigma in metres (the paper's 4 px at 512 px of VIGOR, ~0.57 m)."""

    sigma_m: float = round(PAPER_SIGMA_M, 3)
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
    roll_augment_deg: float = 180.0  # panorama models with orientation bins only
    min_pairs: int = 50
    device: str = "cpu"
    histogram_bins: int = 20
    validations_per_epoch: int = 1  # with a validation set: how often per epoch the stopping point is checked
    anchor_weight: float = 0.0  # > 0: levels >= K' follow the teacher's own level maps (not in the paper)

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction (T) must be in (0, 1], got {self.keep_fraction}")
        if self.supervised_levels < 1 or self.sigma_m <= 0:
            raise ValueError("supervised_levels (K') must be >= 1 and sigma_m > 0")
        if self.min_pairs < 1 or not 0.0 <= self.roll_augment_deg <= 180.0:
            raise ValueError("min_pairs must be >= 1 and roll_augment_deg in [0, 180]")
        if self.validations_per_epoch < 1 or self.anchor_weight < 0:
            raise ValueError("validations_per_epoch must be >= 1 and anchor_weight >= 0")


@dataclass
class PseudoLabels:
    """Teacher outputs on the target set: ``modes (N, 2)`` (row, col) and, for the ablation, heat maps."""

    modes: np.ndarray
    heatmaps: np.ndarray | None = None


@dataclass
class AdaptResult:
    student: torch.nn.Module  # the last epoch's final student
    report: dict[str, Any]
    auxiliary: torch.nn.Module | None = None  # trained on all samples (the "no filtering" ablation row)
    selected: torch.nn.Module | None = None  # the final student's epoch with the lowest validation error


@dataclass
class TrainedStudent:
    last: torch.nn.Module
    selected: torch.nn.Module | None  # lowest validation mean error (None without a validation set)
    curve: list[dict[str, float]]  # per epoch: loss and, with validation, mean/median error


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
    """The teacher's heat map as it is (no mode), max-pooled to each level (as the mode labels are) and lifted to
    orientation bins (the infoNCE normalises the weights, so the map's scale does not matter)."""
    out = []
    for n in level_sizes:
        pooled = F.max_pool2d(heatmaps[:, None], heatmaps.shape[-1] // n)[:, 0]
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


def coarse_only_loss(cfg: AdaptConfig, sigma_px: float) -> LocalizerLoss:
    """infoNCE on the first K' levels only: no CE on the final map, no orientation loss (released code)."""
    return LocalizerLoss(LocalizerLossConfig(sigma_px=sigma_px, temperature=cfg.temperature,
                                             positive_threshold=cfg.positive_threshold, ce_weight=0.0,
                                             infonce_weight=cfg.infonce_weight, orientation_weight=0.0,
                                             supervised_levels=cfg.supervised_levels))


def sigma_px_for(cfg: AdaptConfig, m_per_px: float) -> float:
    """The label Gaussian's sigma in the model's heat-map pixels."""
    return cfg.sigma_m / m_per_px


def training_view(model: torch.nn.Module, dataset: Any, cfg: AdaptConfig) -> Any:
    """The target set as the student sees it: panoramas rolled with their labels when the model has orientation
    bins (released code's augmentation); otherwise the set itself."""
    rolls = dataset.info.query_kind == "ground_pano" and model.num_orientations > 1 and cfg.roll_augment_deg > 0
    return RolledPanoramas(dataset, cfg.roll_augment_deg, cfg.seed) if rolls else dataset


def train_student(teacher: torch.nn.Module, dataset: Any, labels: PseudoLabels, indices: np.ndarray,
                  epochs: int, cfg: AdaptConfig, sigma_px: float, validation: Any = None) -> TrainedStudent:
    """A copy of the teacher trained on ``dataset[indices]`` against the pseudo labels; with a labelled
    ``validation`` set, also the point (``cfg.validations_per_epoch`` per epoch) with the lowest validation mean
    error."""
    torch.manual_seed(cfg.seed)
    student = copy.deepcopy(teacher).to(cfg.device)
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    view = training_view(student, dataset, cfg)
    subset = Subset(view, [int(i) for i in indices])
    loss_fn, targets_fn = student_objective(teacher, student, labels, cfg, sigma_px)
    parts_per_epoch = cfg.validations_per_epoch if validation is not None else 1
    curve: list[dict[str, float]] = []
    best, best_state = float("inf"), None
    for epoch in range(epochs):
        if isinstance(view, RolledPanoramas):
            view.set_epoch(epoch)
        loader = make_loader(subset, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch)
        batches = iter(loader)
        for part, count in enumerate(_split_counts(len(loader), parts_per_epoch)):
            parts = train_one_epoch(student, _BatchRun(batches, count), targets_fn, loss_fn, optimizer, cfg.device,
                                    log_every=0, epoch=epoch)
            when = epoch + 1 if parts_per_epoch == 1 else round(epoch + (part + 1) / parts_per_epoch, 3)
            point = {"epoch": when, **{k: v for k, v in parts.items() if k in ("infonce", "anchor")}}
            if validation is not None:
                metrics = evaluate_dataset(student, validation, cfg.batch_size, cfg.device)
                point.update(val_mean_m=metrics["mean_m"], val_median_m=metrics["median_m"])
                if metrics["mean_m"] < best:
                    best, best_state = metrics["mean_m"], copy.deepcopy(student.state_dict())
            curve.append(point)
            log.info("student epoch %s/%d on %d samples: %s", when, epochs, len(subset),
                     ", ".join(f"{k} {v:.4g}" for k, v in point.items() if k != "epoch"))
    return TrainedStudent(student.eval(), _with_state(student, best_state), curve)


def student_objective(teacher: torch.nn.Module, student: torch.nn.Module, labels: PseudoLabels, cfg: AdaptConfig,
                      sigma_px: float) -> tuple[Any, Any]:
    """The loss and targets functions: coarse-only infoNCE on the pseudo labels, plus, with ``anchor_weight``,
    the teacher-anchored levels from K' on."""
    loss_fn, targets_fn = coarse_only_loss(cfg, sigma_px), pseudo_targets(student, labels, sigma_px)
    if cfg.anchor_weight <= 0:
        return loss_fn, targets_fn
    return AnchoredLoss(loss_fn, cfg.anchor_weight), teacher_anchored_targets(targets_fn, teacher, cfg)


def teacher_anchored_targets(targets_fn: Any, teacher: torch.nn.Module, cfg: AdaptConfig) -> Any:
    """Targets whose levels from K' on are the teacher's own level distributions (softmax over the whole level
    at the infoNCE temperature) instead of the (unused) pseudo labels."""
    k = cfg.supervised_levels

    def targets(batch: dict[str, Any]) -> LocalizerTargets:
        pseudo = targets_fn(batch)
        with torch.no_grad():
            levels = teacher(batch["query"].to(cfg.device), batch["aerial"].to(cfg.device)).levels[k:]
        soft = tuple(torch.softmax(v.flatten(1) / cfg.temperature, dim=1).reshape(v.shape).cpu() for v in levels)
        return LocalizerTargets(pseudo.heatmap, (*pseudo.levels[:k], *soft), pseudo.heading_rad)

    return targets


class AnchoredLoss(torch.nn.Module):
    """The coarse-only loss plus ``weight`` times the same infoNCE on the levels from K' on, whose targets are the
    teacher's own level maps (:func:`teacher_anchored_targets`): a cross-entropy to the teacher's distribution."""

    def __init__(self, base: LocalizerLoss, weight: float) -> None:
        super().__init__()
        self.base, self.weight = base, float(weight)

    def forward(self, output: Any, targets: LocalizerTargets) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = self.base(output, targets)
        k = self.base.cfg.supervised_levels
        anchor = torch.stack([self.base.infonce(s, t) for s, t in zip(output.levels[k:], targets.levels[k:],
                                                                      strict=True)]).mean()
        total = total + self.weight * self.base.cfg.infonce_weight * anchor
        parts.update(anchor=float(anchor.detach()), total=float(total.detach()))
        return total, parts


class _BatchRun:
    """The next ``count`` batches of a shared iterator: one part of an epoch, with a length (for the mean)."""

    def __init__(self, batches: Any, count: int) -> None:
        self.batches, self.count = batches, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Any:
        return itertools.islice(self.batches, self.count)


def _split_counts(n_batches: int, parts: int) -> list[int]:
    """``n_batches`` split into ``parts`` nearly equal non-empty runs (fewer parts when there are few batches)."""
    parts = max(1, min(parts, n_batches))
    return [len(run) for run in np.array_split(np.arange(n_batches), parts)]


def _with_state(model: torch.nn.Module, state: dict[str, torch.Tensor] | None) -> torch.nn.Module | None:
    if state is None:
        return None
    copy_ = copy.deepcopy(model)
    copy_.load_state_dict(state)
    return copy_.eval()


def keep_within_quantile(distances: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Sorted indices of the samples with ``d <= quantile(d, T)``: tied samples share one fate, whatever
    their order in the dataset (so more than ``T * N`` may be kept when many tie at the threshold)."""
    if len(distances) == 0:
        return np.zeros(0, dtype=np.int64)
    threshold = np.quantile(distances, keep_fraction)
    return np.flatnonzero(distances <= threshold + 1e-9)


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
          out_dir: str | Path | None = None, validation: PairDataset | None = None) -> AdaptResult:
    """Run the whole pipeline on an unlabeled target set; writes checkpoints and ``report.json`` to ``out_dir``.

    ``validation``: an optional labelled set of the area (never trained on) used to choose the final student's
    epoch; the last epoch's student is returned as well.
    """
    t0 = time.monotonic()
    usable = check_inputs(teacher, target, cfg)
    torch.manual_seed(cfg.seed)
    teacher = teacher.to(cfg.device).eval()
    labels = teacher_pseudo_labels(teacher, target, cfg)
    m_per_px = _mean_m_per_px(target)
    sigma_px = sigma_px_for(cfg, m_per_px)
    report: dict[str, Any] = {"config": cfg.__dict__, "samples": len(target), "usable": int(len(usable.indices)),
                              "rejected": usable.rejected, "m_per_px": m_per_px, "sigma_px": sigma_px}
    kept, aux = usable.indices, None
    if cfg.filter_outliers:
        aux = train_student(teacher, target, labels, usable.indices, cfg.aux_epochs, cfg, sigma_px).last
        aux_modes = predict(aux, make_loader(target, cfg.batch_size, False, 0), cfg.device)["rowcol"]
        distances = np.linalg.norm(labels.modes - aux_modes, axis=1)[usable.indices]
        kept = usable.indices[keep_within_quantile(distances, cfg.keep_fraction)]
        report.update(_filter_report(distances, len(kept), m_per_px, cfg))
        report["teacher_vs_auxiliary"] = agreement(labels.modes[usable.indices], aux_modes[usable.indices], m_per_px)
    final = train_student(teacher, target, labels, kept, cfg.student_epochs, cfg, sigma_px, validation)
    student_modes = predict(final.last, make_loader(target, cfg.batch_size, False, 0), cfg.device)["rowcol"]
    report.update(kept=int(len(kept)), student_curve=final.curve,
                  teacher_vs_student=agreement(labels.modes[kept], student_modes[kept], m_per_px))
    if final.selected is not None:
        report["selected_epoch"] = final.curve[int(np.argmin([p["val_mean_m"] for p in final.curve]))]["epoch"]
    report["seconds"] = round(time.monotonic() - t0, 1)
    if out_dir is not None:
        _write_outputs(Path(out_dir), final, aux, labels, student_modes, kept, report, cfg)
    log.info("adaptation: kept %d/%d usable samples, teacher-student median shift %.2f m", len(kept),
             len(usable.indices), report["teacher_vs_student"]["median_m"])
    return AdaptResult(final.last, report, aux, final.selected)


def check_inputs(teacher: torch.nn.Module, target: PairDataset, cfg: AdaptConfig) -> UsablePairs:
    """Every check that must pass before training; returns the usable pairs (see ``adaptation_inputs``)."""
    if target.read_ground_truth:
        raise ValueError("open the target set with read_ground_truth=False (see open_target)")
    check_teacher(teacher, target)
    check_supervised_levels(teacher, cfg.supervised_levels)
    check_ground_size(teacher, target)
    usable = usable_pairs(target)
    check_enough(usable, len(target), cfg.min_pairs)
    return usable


def _mean_m_per_px(dataset: PairDataset) -> float:
    sizes = [r.aerial_georef.m_per_px * r.aerial_georef.height_px / dataset.aerial_size for r in dataset.records]
    return float(np.mean(sizes))


def _filter_report(distances: np.ndarray, kept: int, m_per_px: float, cfg: AdaptConfig) -> dict[str, Any]:
    threshold = float(np.quantile(distances, cfg.keep_fraction)) if len(distances) else 0.0
    return {"distance_threshold_px": threshold, "distance_threshold_m": threshold * m_per_px,
            "distance_median_px": float(np.median(distances)), "kept_fraction": kept / max(1, len(distances)),
            "distance_histogram": distance_histogram(distances, m_per_px, cfg.histogram_bins)}


def _write_outputs(out: Path, final: TrainedStudent, aux: torch.nn.Module | None, labels: PseudoLabels,
                   student_modes: np.ndarray, kept: np.ndarray, report: dict[str, Any], cfg: AdaptConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    extra = {"adaptation": {k: v for k, v in report.items() if k != "config"}}
    save_model(final.last, out / "student.safetensors", cfg, extra)
    if final.selected is not None:
        save_model(final.selected, out / "student_selected.safetensors", cfg, extra)
    if aux is not None:
        save_model(aux, out / "auxiliary_student.safetensors", cfg)
    np.savez(out / "pseudo_labels.npz", teacher_modes=labels.modes, student_modes=student_modes, kept=kept)
    atomic_write_json(out / "report.json", json.loads(json.dumps(report, default=str)))


def validate(models: dict[str, torch.nn.Module | None], validation_dir: str | Path, cfg: AdaptConfig,
             batch_size: int = 16) -> dict[str, dict[str, Any]]:
    """Optional, separate from :func:`adapt`: errors of each model on a labelled set of the area; every model
    after the first (the teacher) also gets ``vs_teacher``: the paired bootstrap 95 % interval of its mean error
    change and ratio on the same pairs. ``None`` models are skipped."""
    present = {name: m for name, m in models.items() if m is not None}
    first = next(iter(present.values()))
    dataset = dataset_for_model(validation_dir, first, read_ground_truth=True, align_north_up=cfg.align_north_up)
    truth, m_per_px, heading = dataset.ground_truth()
    out, reference = {}, None
    for name, model in present.items():
        pred = predict(model, make_loader(dataset, batch_size, shuffle=False, seed=0), cfg.device)
        summary, errors = evaluate_predictions(pred, truth, m_per_px)
        if reference is None:
            reference = errors["distance_m"]
        else:
            summary["vs_teacher"] = paired_bootstrap(reference, errors["distance_m"], seed=cfg.seed)
        out[name] = summary
    return out

"""Supervised training of the heat-map localizer, and the epoch loop the adaptation pipeline reuses.

Recipe: build model, data, loss, optimizer -> for each epoch: for each batch: targets -> forward -> loss ->
backward -> step -> log; then validate (if a labelled validation set is given) and checkpoint. Checkpoints
are ``last.safetensors`` (+ ``last.train_state.pt`` for resuming) and ``best.safetensors`` (lowest validation
mean error); ``metrics.csv`` has one row per epoch. Under ``torchrun`` (``WORLD_SIZE > 1``) the model is
wrapped in DDP and only rank 0 writes. Seed, device, DDP, resume points and the metrics log are the training
shell's (:mod:`edge_geoloc.train.shell`), shared with the retrieval trainer.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from edge_geoloc.config import save_config
from edge_geoloc.evaluate.localization_metrics import evaluate_dataset
from edge_geoloc.models import create_model
from edge_geoloc.models.checkpoint import load_model, save_model
from edge_geoloc.train.distributed import init_distributed
from edge_geoloc.train.losses_localizer import LocalizerLoss, LocalizerLossConfig, LocalizerTargets, make_targets
from edge_geoloc.train.shell import (
    MetricsLogger,
    load_resume_point,
    resolve_device,
    save_resume_point,
    seed_everything,
    unwrap,
    wrap_ddp,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalizerModelConfig:
    """Registered model name, constructor overrides and optional initial weights (a localizer checkpoint)."""

    name: str = "ccvpe_drone_tiny"
    kwargs: dict[str, Any] = field(default_factory=dict)
    init_checkpoint: str | None = None


@dataclass(frozen=True)
class LocalizerDataConfig:
    """Where the samples come from: ``format`` pairs (a pair dataset folder), vigor or kitti (a dataset root)."""

    format: str = "pairs"
    train: str = ""
    val: str | None = None
    split: str = "cross_area"  # vigor: same_area | cross_area; kitti: test1 | test2 (validation split)
    align_north_up: bool = True
    batch_size: int = 8
    num_workers: int = 0


@dataclass(frozen=True)
class LocalizerOptimConfig:
    """Adam as in CCVPE (lr 1e-4, batch 8, seed 17)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    epochs: int = 15
    seed: int = 17
    grad_clip_norm: float = 0.0


@dataclass(frozen=True)
class LocalizerTrainConfig:
    model: LocalizerModelConfig = LocalizerModelConfig()
    data: LocalizerDataConfig = LocalizerDataConfig()
    loss: LocalizerLossConfig = LocalizerLossConfig()
    optim: LocalizerOptimConfig = LocalizerOptimConfig()
    out_dir: str = "runs/localizer"
    device: str = "cpu"
    log_every: int = 50
    resume: bool = True


TargetsFn = Callable[[dict[str, Any]], LocalizerTargets]


def build_model(cfg: LocalizerModelConfig) -> torch.nn.Module:
    """Create the registered model; load ``init_checkpoint`` weights if given (must be the same model)."""
    if cfg.init_checkpoint:
        return load_model(cfg.init_checkpoint, expected_kind="localizer")[0]
    return create_model(cfg.name, **cfg.kwargs)


def batch_heading(batch: dict[str, Any]) -> torch.Tensor | None:
    """Headings of a batch as a tensor, or None when any is unknown (NaN)."""
    heading = torch.as_tensor(batch["heading_rad"], dtype=torch.float32)
    return heading if bool(torch.isfinite(heading).all()) else None


def ground_truth_targets(model: torch.nn.Module, sigma_px: float) -> TargetsFn:
    """Targets from the batch's ground-truth pixel (supervised training on labelled data only)."""
    m = getattr(model, "module", model)

    def targets(batch: dict[str, Any]) -> LocalizerTargets:
        return make_targets(batch["rowcol"], batch_heading(batch), (m.aerial_size, m.aerial_size), m.level_sizes,
                            m.num_orientations, sigma_px)

    return targets


def make_loader(dataset: Any, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0) -> DataLoader:
    """A seeded loader (the same seed gives the same order); distributed-aware when running under torchrun."""
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if shuffle and _world_size() > 1:
        sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=seed)
        shuffle = False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, generator=generator,
                      num_workers=num_workers, drop_last=shuffle and len(dataset) > batch_size)


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, targets_fn: TargetsFn, loss_fn: LocalizerLoss,
                    optimizer: torch.optim.Optimizer, device: str, grad_clip_norm: float = 0.0,
                    log_every: int = 50, epoch: int = 0) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of each loss part."""
    model.train()
    sums: dict[str, float] = {}
    for step, batch in enumerate(loader):
        targets = _to_device(targets_fn(batch), device)
        output = model(batch["query"].to(device), batch["aerial"].to(device))
        loss, parts = loss_fn(output, targets)
        if not math.isfinite(parts["total"]):
            raise FloatingPointError(f"loss is {parts['total']} at epoch {epoch} step {step}; lower optim.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
        optimizer.step()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
        if log_every and step % log_every == 0:
            log.info("epoch %d step %d/%d loss %.4g", epoch, step, len(loader), parts["total"])
    return {key: value / max(1, len(loader)) for key, value in sums.items()}


def _to_device(targets: LocalizerTargets, device: str) -> LocalizerTargets:
    heading = None if targets.heading_rad is None else targets.heading_rad.to(device)
    return LocalizerTargets(targets.heatmap.to(device), tuple(t.to(device) for t in targets.levels), heading)


def make_optimizer(model: torch.nn.Module, cfg: LocalizerOptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def _resume(model: torch.nn.Module, optimizer: torch.optim.Optimizer, out_dir: Path) -> tuple[int, float]:
    """Continue from the run's ``last`` resume point if there is one; returns (next epoch, best validation error)."""
    state = load_resume_point(out_dir, "last", model, "localizer")
    if state is None:
        return 0, math.inf
    optimizer.load_state_dict(state["optimizer"])
    log.info("continuing at epoch %d", state["epoch"] + 1)
    return int(state["epoch"]) + 1, float(state.get("best_mean_m", math.inf))


def _checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: LocalizerTrainConfig, epoch: int,
                metrics: dict[str, float], best_mean_m: float) -> float:
    """``last`` resume point every epoch; ``best`` when the validation mean error improves."""
    out, extra = Path(cfg.out_dir), {"epoch": epoch, "metrics": metrics}
    save_resume_point(out, "last", model, cfg, extra,
                      {"optimizer": optimizer.state_dict(), "epoch": epoch, "best_mean_m": best_mean_m})
    val_mean = metrics.get("val_mean_m", math.inf)
    if val_mean < best_mean_m or not math.isfinite(best_mean_m):
        save_model(model, out / "best.safetensors", cfg, extra)
        return min(val_mean, best_mean_m)
    return best_mean_m


def fit(cfg: LocalizerTrainConfig, train_set: Any, val_set: Any = None) -> torch.nn.Module:
    """Supervised training with ground-truth targets; returns the trained model.

    build (seed, device, model, optimizer, resume) -> per epoch: train -> validate -> log -> checkpoint."""
    info = init_distributed()
    seed_everything(cfg.optim.seed)
    device = resolve_device(cfg.device, info)
    model = build_model(cfg.model).to(device)
    if cfg.data.format == "pairs" and train_set.info.query_kind != model.query_kind:
        raise ValueError(f"data is {train_set.info.query_kind!r} but model {cfg.model.name} takes {model.query_kind!r}")
    optimizer = make_optimizer(model, cfg.optim)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    start, best = _resume(model, optimizer, out) if cfg.resume else (0, math.inf)
    model = wrap_ddp(model, device, info, find_unused_parameters=True)
    loss_fn, targets_fn = LocalizerLoss(cfg.loss), ground_truth_targets(model, cfg.loss.sigma_px)
    metrics_log = MetricsLogger(out, tensorboard=False, enabled=info.is_main)
    for epoch in range(start, cfg.optim.epochs):
        loader = make_loader(train_set, cfg.data.batch_size, True, cfg.optim.seed + epoch, cfg.data.num_workers)
        metrics = train_one_epoch(model, loader, targets_fn, loss_fn, optimizer, device,
                                  cfg.optim.grad_clip_norm, cfg.log_every, epoch)
        if val_set is not None:
            metrics.update({f"val_{k}": v for k, v in evaluate_dataset(model, val_set, device=device).items()})
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        metrics_log.log(epoch, metrics)
        if info.is_main:
            best = _checkpoint(model, optimizer, cfg, epoch, metrics, best)
    return unwrap(model)

"""Training recipe of the learned map matcher (:mod:`edge_geoloc.models.map_matcher`).

Contrastive over places: each batch holds ``batch_size`` (north-up frame, map tile) pairs drawn endlessly from
many synthetic areas under random map and flight conditions (:mod:`edge_geoloc.sim.onboard_pairs`); the logit of
a (frame, tile) pair is the matcher's dense score (best cosine of the frame's feature map inside the tile's
search window, :func:`~edge_geoloc.models.map_matcher.dense_scores`) times a learned scale, and the loss is the
symmetric InfoNCE over the batch. Frame and tile turn together by a multiple of 90 deg (north-up stays consistent).

Outputs in ``run.out_dir``: ``config.yaml``, ``metrics.csv`` (loss, lr, optional validation), ``final.safetensors``
(kind ``matcher``, with the preprocessing block the runtime follows). An optional ``validate(model) -> dict`` is
called before training and every ``run.validate_every`` steps, so a benchmark saves the learning curve on its
held-out queries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from edge_geoloc.config import save_config
from edge_geoloc.models.checkpoint import save_model
from edge_geoloc.models.map_matcher import MapMatcher, dense_scores, radius_cells
from edge_geoloc.models.registry import create_model
from edge_geoloc.runtime.learned_matcher import LearnedMatcher, LearnedMatcherConfig
from edge_geoloc.sim.onboard_pairs import OnboardPairConfig, OnboardPairSampler, training_areas
from edge_geoloc.train.optim import decay_groups
from edge_geoloc.train.schedules import cosine_with_warmup
from edge_geoloc.train.shell import MetricsLogger, seed_everything

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatcherOptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    steps: int = 600
    warmup_steps: int = 50
    max_logit_scale: float = 100.0


@dataclass(frozen=True)
class MatcherRunConfig:
    out_dir: str = "runs/map_matcher"
    seed: int = 1
    threads: int = 0  # 0: torch's default
    log_every: int = 10
    validate_every: int = 0  # steps; 0 = only at the end (when a validate callback is given)


@dataclass(frozen=True)
class MatcherTrainConfig:
    model: str = "map_matcher_micro"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pairs: OnboardPairConfig = field(default_factory=OnboardPairConfig)
    optim: MatcherOptimConfig = field(default_factory=MatcherOptimConfig)
    run: MatcherRunConfig = field(default_factory=MatcherRunConfig)


class PairSource(Protocol):
    """Where training pairs come from: the endless on-board sampler (the default, built from ``cfg.pairs``) or
    any other source, e.g. stored ground views (:class:`edge_geoloc.data.ground_bev_pairs.GroundBevPairSource`)."""

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(size, q, q, 3) north-up frames and (size, t, t, 3) tiles, uint8; row i of each is a pair."""
        ...


def to_tensor(images: np.ndarray, model: MapMatcher) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> normalised (B, 3, H, W) float."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(model.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.std).view(1, 3, 1, 1)
    return (x - mean) / std


def check_geometry(model: MapMatcher, pairs: OnboardPairConfig) -> None:
    """The pairs must be cut the way the model declares (resolution, frame and tile ground sizes)."""
    declared = (model.m_per_px, model.query_ground_size_m, model.tile_size_m)
    given = (pairs.gsd_m, pairs.query_ground_size_m, pairs.tile_size_m)
    if not np.allclose(declared, given):
        raise ValueError(f"pairs (gsd, frame, tile) = {given} m differ from the model's {declared} m; set "
                         "model_kwargs to match")


def check_batch(model: MapMatcher, frames: np.ndarray, tiles: np.ndarray) -> None:
    """A pair source's first batch must be cut the way the model declares (frame and tile pixels)."""
    given, declared = (frames.shape[1:3], tiles.shape[1:3]), ((model.query_px,) * 2, (model.tile_px,) * 2)
    if given != declared:
        raise ValueError(f"pair source gives frames/tiles of {given} px, the model declares {declared} px; set "
                         "model_kwargs (m_per_px, query_ground_size_m, tile_size_m) to match the source")


def feature_fn(model: MapMatcher) -> Callable[[np.ndarray], np.ndarray]:
    """The PyTorch matcher as the runtime's torch-free features callable (uint8 north-up RGB -> (C, h, w))."""
    def features(image: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(to_tensor(image[None], model))[0].numpy()
    return features


def runtime_matcher(model: MapMatcher, map_rgb: np.ndarray, west_m: float, north_m: float, m_per_px: float
                    ) -> LearnedMatcher:
    """The runtime's :class:`LearnedMatcher` over a map image, on the PyTorch model (benchmarks, the demo)."""
    cfg = LearnedMatcherConfig(model.query_ground_size_m, model.m_per_px, model.stride)
    return LearnedMatcher(map_rgb, west_m, north_m, m_per_px, feature_fn(model), cfg)


def contrastive_loss(model: MapMatcher, frames: torch.Tensor, tiles: torch.Tensor, max_scale: float
                     ) -> torch.Tensor:
    scores = dense_scores(model(tiles), model(frames), radius_cells(model))
    logits = scores * model.logit_scale.exp().clamp(max=max_scale)
    target = torch.arange(len(logits))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def onboard_sampler(model: MapMatcher, cfg: MatcherTrainConfig) -> OnboardPairSampler:
    check_geometry(model, cfg.pairs)
    started = time.perf_counter()
    sampler = OnboardPairSampler(training_areas(cfg.pairs), cfg.pairs, seed=cfg.run.seed)
    log.info("map matcher: %d training areas ready in %.1f s", cfg.pairs.n_areas, time.perf_counter() - started)
    return sampler


def validation(model: MapMatcher, validate: Callable[[MapMatcher], dict[str, float]]) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        values = validate(model)
    model.train()
    log.info("map matcher validation: %s", {k: round(v, 3) for k, v in values.items()})
    return values


def train_map_matcher(cfg: MatcherTrainConfig, validate: Callable[[MapMatcher], dict[str, float]] | None = None,
                      pairs: PairSource | None = None) -> MapMatcher:
    """Train and save ``final.safetensors``; returns the model in eval mode. ``pairs`` replaces the on-board
    sampler of ``cfg.pairs`` (its batches are checked against the model's declared geometry)."""
    seed_everything(cfg.run.seed)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    out = Path(cfg.run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    model = create_model(cfg.model, **cfg.model_kwargs)
    started = time.perf_counter()
    sampler = pairs or onboard_sampler(model, cfg)
    o = cfg.optim
    optimizer = torch.optim.AdamW(decay_groups(model, o.weight_decay), lr=o.lr)
    logger = MetricsLogger(out, tensorboard=False, enabled=True)
    rng = np.random.default_rng(cfg.run.seed)
    if validate is not None:  # step 0: the untrained model (and metrics.csv's columns include validation)
        logger.log(0, {"loss": float("nan"), "lr": 0.0, "seconds": 0.0, **validation(model, validate)})
    model.train()
    for step in range(o.steps):
        lr = o.lr * cosine_with_warmup(step, o.steps, min(o.warmup_steps, o.steps // 2))
        for group in optimizer.param_groups:
            group["lr"] = lr
        frames, tiles = sampler.batch(o.batch_size)
        if step == 0:
            check_batch(model, frames, tiles)
        turns = int(rng.integers(4))
        frames_t = torch.rot90(to_tensor(frames, model), turns, (2, 3))
        tiles_t = torch.rot90(to_tensor(tiles, model), turns, (2, 3))
        loss = contrastive_loss(model, frames_t, tiles_t, o.max_logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        row = {"loss": loss.item(), "lr": lr, "seconds": time.perf_counter() - started}
        validating = validate is not None and (done == o.steps or (cfg.run.validate_every > 0
                                                                   and done % cfg.run.validate_every == 0))
        if validating:
            row.update(validation(model, validate))
        if validating or done % cfg.run.log_every == 0:
            logger.log(done, row)
    model.eval()
    seconds = time.perf_counter() - started
    save_model(model, out / "final.safetensors", cfg, {"steps": o.steps, "train_seconds": seconds})
    return model

"""Training recipe of the learned map matcher (:mod:`edge_geoloc.models.map_matcher`).

Contrastive over places: each batch holds ``batch_size`` (north-up frame, map tile) pairs drawn endlessly from
many synthetic areas under random map and flight conditions (:mod:`edge_geoloc.sim.onboard_pairs`); the logit of
a (frame, tile) pair is the matcher's dense score (best cosine of the frame's feature map inside the tile's
search window, :func:`~edge_geoloc.models.map_matcher.dense_scores`) times a learned scale, and the loss is the
symmetric InfoNCE over the batch. Frame and tile turn together by a multiple of 90 deg (north-up stays consistent).
The place loss never says *where* in the window the frame lies; a source that knows it (ground BEV pairs) can add
the position loss (``optim.position_weight``): each frame's scores over its own tile's windows against a Gaussian
label around the true offset, what a heat-map localizer needs.

Outputs in ``run.out_dir``: ``config.yaml``, ``metrics.csv`` (loss, lr, optional validation), ``final.safetensors``
(kind ``matcher``, with the preprocessing block the runtime follows). An optional ``validate(model) -> dict`` is
called before training and every ``run.validate_every`` steps, so a benchmark saves the learning curve on its
held-out queries.
"""

from __future__ import annotations

import copy
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
from edge_geoloc.models.map_matcher import MapMatcher, radius_cells, window_cosines
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
    # > 0: add the position loss (cross-entropy of each pair's window scores against a Gaussian around the true
    # offset, sigma in metres); the pair source must give positions (``batch_with_positions``)
    position_weight: float = 0.0
    position_sigma_m: float = 1.0
    place_weight: float = 1.0  # 0: position loss only (adapting inside known patches: no across-place negatives)


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


class PositionedPairSource(PairSource, Protocol):
    """A pair source that also knows where each frame's centre lies in its tile (for the position loss)."""

    def batch_with_positions(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As ``batch``, plus ``(size, 2)`` float (row, col) of each frame's centre in its tile's pixels
        (continuous: the tile's centre is ``(t / 2, t / 2)``)."""
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


def matcher_losses(model: MapMatcher, frames: torch.Tensor, tiles: torch.Tensor, max_scale: float,
                   position_labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(place loss, position loss or None). Place: symmetric InfoNCE over the batch on each pair's best window
    score. Position: cross-entropy of pair i's window scores ``(2r + 1)^2`` against ``position_labels[i]``."""
    windows = window_cosines(model(tiles), model(frames), radius_cells(model))  # (T, Q, m, m)
    scale = model.logit_scale.exp().clamp(max=max_scale)
    logits = windows.amax((2, 3)).T * scale
    target = torch.arange(len(logits))
    place = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    if position_labels is None:
        return place, None
    own = windows[target, target].flatten(1) * scale  # (B, m * m): each frame over its own tile's windows
    return place, -(position_labels.flatten(1) * F.log_softmax(own, dim=1)).sum(1).mean()


def position_labels(model: MapMatcher, positions: np.ndarray, sigma_m: float) -> torch.Tensor:
    """(B, m, m) Gaussian labels over the window grid of :func:`window_cosines` around each frame's true centre,
    given as (row, col) tile pixels; sums to 1 per frame."""
    r, cells = radius_cells(model), model.stride
    offset = (torch.as_tensor(positions, dtype=torch.float32) - model.tile_px / 2) / cells  # cells from the centre
    grid = torch.arange(-r, r + 1, dtype=torch.float32)
    sigma = sigma_m / (model.m_per_px * cells)
    rows = torch.exp(-0.5 * ((grid[None] - offset[:, :1]) / sigma) ** 2)
    cols = torch.exp(-0.5 * ((grid[None] - offset[:, 1:]) / sigma) ** 2)
    labels = rows[:, :, None] * cols[:, None, :]
    return labels / labels.sum((1, 2), keepdim=True).clamp_min(1e-12)


def next_batch(sampler: PairSource | PositionedPairSource, model: MapMatcher, o: MatcherOptimConfig
               ) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    """(frames, tiles, position labels or None) for one step."""
    if o.position_weight <= 0:
        return *sampler.batch(o.batch_size), None
    if not hasattr(sampler, "batch_with_positions"):
        raise ValueError(f"position_weight > 0 needs a pair source with batch_with_positions; "
                         f"{type(sampler).__name__} has none")
    frames, tiles, positions = sampler.batch_with_positions(o.batch_size)
    return frames, tiles, position_labels(model, positions, o.position_sigma_m)


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
                      pairs: PairSource | None = None, init: MapMatcher | None = None) -> MapMatcher:
    """Train and save ``final.safetensors``; returns the model in eval mode. ``pairs`` replaces the on-board
    sampler of ``cfg.pairs`` (its batches are checked against the model's declared geometry); ``init`` starts
    from a trained matcher's weights (fine-tuning, adaptation) instead of a fresh initialisation."""
    seed_everything(cfg.run.seed)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    out = Path(cfg.run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    model = copy.deepcopy(init) if init is not None else create_model(cfg.model, **cfg.model_kwargs)
    started = time.perf_counter()
    sampler = pairs or onboard_sampler(model, cfg)
    o = cfg.optim
    optimizer = torch.optim.AdamW(decay_groups(model, o.weight_decay), lr=o.lr)
    logger = MetricsLogger(out, tensorboard=False, enabled=True)
    rng = np.random.default_rng(cfg.run.seed)
    if validate is not None:  # step 0: the untrained model (and metrics.csv's columns include validation)
        extra = {"position_loss": float("nan")} if o.position_weight > 0 else {}
        logger.log(0, {"loss": float("nan"), "lr": 0.0, "seconds": 0.0, **extra, **validation(model, validate)})
    model.train()
    for step in range(o.steps):
        lr = o.lr * cosine_with_warmup(step, o.steps, min(o.warmup_steps, o.steps // 2))
        for group in optimizer.param_groups:
            group["lr"] = lr
        frames, tiles, labels = next_batch(sampler, model, o)
        if step == 0:
            check_batch(model, frames, tiles)
        turns = int(rng.integers(4))
        frames_t = torch.rot90(to_tensor(frames, model), turns, (2, 3))
        tiles_t = torch.rot90(to_tensor(tiles, model), turns, (2, 3))
        labels = None if labels is None else torch.rot90(labels, turns, (1, 2))  # the window grid turns with them
        place, position = matcher_losses(model, frames_t, tiles_t, o.max_logit_scale, labels)
        loss = place if position is None else o.place_weight * place + o.position_weight * position
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        row = {"loss": loss.item(), "lr": lr, "seconds": time.perf_counter() - started}
        if position is not None:
            row["position_loss"] = position.item()
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

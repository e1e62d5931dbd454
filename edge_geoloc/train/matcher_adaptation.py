"""Adapt a car's learned BEV matcher to a new area by self-distillation from coarse-GPS pairs, no ground truth.

The pipeline of Xia et al. (ECCV 2024) that :mod:`edge_geoloc.train.adaptation` runs for heat-map localizers,
on the matcher's one level of window scores (each window of the tile around the coarse fix is a candidate camera
position, :func:`~edge_geoloc.models.map_matcher.window_cosines`):

1. the teacher's best window per logged pair is its pseudo label ``y^T``;
2. an auxiliary student, initialised from the teacher, is trained on every pair with a coarse label (a Gaussian
   of ``aux_sigma_m``): the matcher has a single level, so the paper's coarse-only supervision becomes a wide
   label on that level;
3. the teacher-auxiliary distance ``d = |y^T - y^aux|``; pairs with ``d <= quantile_T(d)`` are kept;
4. the student, initialised from the teacher, is trained on the kept pairs with a label of ``sigma_m`` metres
   (physical units, converted to cells by the model's resolution). With a labelled validation callback the step
   with the lowest validation error is also returned (:attr:`MatcherAdaptResult.selected`).

Training uses the position loss only (``place_weight`` 0): each pair's scores over its own tile's windows, as
the paper's localizer loss; BEVs get photometric augmentation and the pair turns by multiples of 90 deg with
its label. Only ``bevs`` and ``tiles`` of :class:`~edge_geoloc.data.ground_bev_pairs.CoarsePairs` are read, never
``truth``. Inputs are checked before any training: too few pairs, pairs cut for another geometry, or a teacher
that is not a panorama BEV matcher stop with a clear error.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from edge_geoloc.data.ground_bev_pairs import CoarsePairs, FixedPairSource
from edge_geoloc.models.map_matcher import MapMatcher, radius_cells, window_cosines
from edge_geoloc.train.map_matcher import (
    MatcherOptimConfig,
    MatcherRunConfig,
    MatcherTrainConfig,
    to_tensor,
    train_map_matcher,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatcherAdaptConfig:
    steps: int = 200
    batch_size: int = 16
    lr: float = 2e-4
    sigma_m: float = 1.0  # the student's label (the paper's 4 px at 512 px is about 0.57 m; our cells are 2 m)
    aux_sigma_m: float = 4.0  # the auxiliary student's coarse label
    keep_quantile: float = 0.8  # T: pairs with teacher-auxiliary distance up to this quantile are kept
    filter_outliers: bool = True  # False: the student learns every pseudo label (ablation)
    validate_every: int = 50
    min_pairs: int = 50
    seed: int = 0
    temperature: float = 0.03  # softmax of the window scores for the confidence (as the runtime's heat map)
    confidence_radius_m: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.keep_quantile <= 1 or self.sigma_m <= 0 or self.aux_sigma_m <= 0 or self.steps < 1:
            raise ValueError("keep_quantile must be in (0, 1], sigmas > 0 and steps >= 1")


@dataclass
class MatcherAdaptResult:
    student: MapMatcher  # after the last step
    selected: MapMatcher | None  # at the step with the lowest validation error (None without validation)
    pseudo: np.ndarray  # (N, 2) teacher modes (row, col) in tile pixels
    kept: np.ndarray  # (N,) bool
    distances_m: np.ndarray  # (N,) teacher-auxiliary distance (NaN without filtering)


def check_inputs(teacher: MapMatcher, pairs: CoarsePairs, cfg: MatcherAdaptConfig) -> None:
    """Stop before training on inputs that cannot be adapted on."""
    if not isinstance(teacher, MapMatcher) or teacher.query_camera != "panorama":
        kind = getattr(teacher, "query_camera", type(teacher).__name__)
        raise ValueError(f"the teacher must be a map matcher trained on panorama BEVs, got {kind!r}")
    if len(pairs.bevs) < cfg.min_pairs:
        raise ValueError(f"only {len(pairs.bevs)} usable pairs; adaptation needs at least {cfg.min_pairs}")
    given = (pairs.bevs.shape[1:3], pairs.tiles.shape[1:3])
    declared = ((teacher.query_px,) * 2, (teacher.tile_px,) * 2)
    if given != declared:
        raise ValueError(f"pairs of BEV/tile {given} px do not fit the teacher's {declared} px (another map "
                         "resolution or tile size): log them with the teacher's geometry")


def window_modes(model: MapMatcher, bevs: np.ndarray, tiles: np.ndarray, temperature: float = 0.03,
                 radius_m: float = 5.0, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """((N, 2) best window's centre (row, col) in tile pixels, (N,) confidence: softmax mass within ``radius_m``
    of it) for each (BEV, tile) pair."""
    r, cell = radius_cells(model), model.stride
    grid = np.arange(-r, r + 1) * cell * model.m_per_px
    modes, confidence = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(bevs), batch):
            b, t = bevs[start:start + batch], tiles[start:start + batch]
            tile_f, bev_f = model(to_tensor(t, model)), model(to_tensor(b, model))
            own = torch.stack([window_cosines(tile_f[i:i + 1], bev_f[i:i + 1], r)[0, 0].flatten()
                               for i in range(len(b))]).double()  # (B, m * m): each BEV in its own tile only
            best = own.argmax(1).numpy()
            rows, cols = np.divmod(best, 2 * r + 1)
            probs = torch.softmax(own / temperature, dim=1).numpy().reshape(len(b), 2 * r + 1, 2 * r + 1)
            for k, (i, j) in enumerate(zip(rows, cols, strict=True)):
                near = np.hypot(grid[:, None] - grid[i], grid[None, :] - grid[j]) <= radius_m
                confidence.append(float(probs[k][near].sum()))
            modes.append(np.stack([rows, cols], 1))
    offset = (np.concatenate(modes) - r) * cell  # pixels from the tile centre
    return offset + model.tile_px / 2, np.asarray(confidence)


def mode_errors_m(model: MapMatcher, pairs: CoarsePairs, temperature: float = 0.03, radius_m: float = 5.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """((N,) metres from each labelled pair's true position to the best window, (N,) confidence): scoring only."""
    if not np.isfinite(pairs.truth).all():
        raise ValueError("these pairs have no true positions (a log's pairs): they can be adapted on, not scored")
    modes, confidence = window_modes(model, pairs.bevs, pairs.tiles, temperature, radius_m)
    return np.hypot(*(modes - pairs.truth).T) * model.m_per_px, confidence


def fine_tune(model: MapMatcher, pairs: CoarsePairs, positions: np.ndarray, sigma_m: float,
              cfg: MatcherAdaptConfig, out_dir: Path,
              validate: Callable[[MapMatcher], float] | None = None) -> tuple[MapMatcher, MapMatcher | None]:
    """(model after ``cfg.steps``, model at the best validation step or None) of position-only training from
    ``model`` on ``positions``."""
    optim = MatcherOptimConfig(lr=cfg.lr, batch_size=cfg.batch_size, steps=cfg.steps,
                               warmup_steps=min(10, cfg.steps // 2), position_weight=1.0, position_sigma_m=sigma_m,
                               place_weight=0.0)
    run = MatcherRunConfig(out_dir=str(out_dir), seed=cfg.seed, validate_every=cfg.validate_every if validate else 0)
    train_cfg = MatcherTrainConfig(model=model.model_name, model_kwargs=dict(model.model_kwargs), optim=optim, run=run)
    best: dict = {"error": float("inf"), "model": None}

    def validation(current: MapMatcher) -> dict[str, float]:
        error = float(validate(current))
        if error < best["error"]:
            best.update(error=error, model=copy.deepcopy(current).eval())
        return {"val_mean_m": error}

    source = FixedPairSource(pairs, positions, cfg.seed)
    student = train_map_matcher(train_cfg, validation if validate else None, source, init=model)
    return student, best["model"]


def adapt_matcher(teacher: MapMatcher, pairs: CoarsePairs, cfg: MatcherAdaptConfig, out_dir: str | Path,
                  validate: Callable[[MapMatcher], float] | None = None) -> MatcherAdaptResult:
    """Steps 1-4 of the module docstring; ``validate(model) -> mean error (m)`` on labelled target pairs is
    optional and only chooses :attr:`MatcherAdaptResult.selected`."""
    check_inputs(teacher, pairs, cfg)
    out = Path(out_dir)
    pseudo, _ = window_modes(teacher, pairs.bevs, pairs.tiles, cfg.temperature, cfg.confidence_radius_m)
    kept, distances = np.ones(len(pseudo), bool), np.full(len(pseudo), np.nan)
    if cfg.filter_outliers:
        auxiliary, _ = fine_tune(teacher, pairs, pseudo, cfg.aux_sigma_m, cfg, out / "auxiliary")
        aux_modes, _ = window_modes(auxiliary, pairs.bevs, pairs.tiles)
        distances = np.hypot(*(pseudo - aux_modes).T) * teacher.m_per_px
        kept = distances <= np.quantile(distances, cfg.keep_quantile)
        log.info("matcher adaptation: kept %d of %d pairs (teacher-auxiliary distance <= %.2f m)", kept.sum(),
                 len(kept), np.quantile(distances, cfg.keep_quantile))
    student, selected = fine_tune(teacher, pairs.subset(np.flatnonzero(kept)), pseudo[kept], cfg.sigma_m, cfg,
                                  out / "student", validate)
    return MatcherAdaptResult(student, selected, pseudo, kept, distances)


def ceiling(teacher: MapMatcher, pairs: CoarsePairs, cfg: MatcherAdaptConfig, out_dir: str | Path) -> MapMatcher:
    """The same fine-tuning on the pairs' TRUE positions: what adaptation could reach at best (benchmarks only)."""
    check_inputs(teacher, pairs, cfg)
    return fine_tune(teacher, pairs, pairs.truth, cfg.sigma_m, replace(cfg, validate_every=0), Path(out_dir))[0]

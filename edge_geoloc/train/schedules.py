"""Schedules indexed by step: learning-rate factor and PALW's HCD weight. Their values are passed in."""

from __future__ import annotations

import math
from typing import Any

from edge_geoloc.train.losses_retrieval import PALWConfig


def cosine_with_warmup(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """LR factor: linear warm-up ``(step+1)/warmup`` then cosine from 1 to ``min_factor`` at ``total_steps``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ProgressiveAdaptiveWeight:
    """PALW: the weight of HCD over training.

    ``lambda_t = clip( P(t) * R_t, min_weight, max_weight )`` with
    - progress term ``P(t) = end + (start - end) (1 - t/T)^power``: strong in the unstable early phase,
      relaxed to ``end`` as training stabilises;
    - fluctuation term ``R_t = (EMA_short(L_metric) / EMA_long(L_metric))^kappa``: above 1 when the metric loss
      jumps above its long-run level (short-term instability), so consistency is enforced harder, below 1
      while it falls steadily.
    EMAs use ``alpha = 2 / (window + 1)`` and are updated with :meth:`update` after each step; the state is
    a plain dict for checkpoints. With ``enabled=False`` the weight is constantly 1.
    """

    def __init__(self, cfg: PALWConfig, total_steps: int) -> None:
        self.cfg = cfg
        self.total_steps = max(1, total_steps)
        self.ema_short: float | None = None
        self.ema_long: float | None = None

    def progress_term(self, step: int) -> float:
        c = self.cfg
        t = min(1.0, max(0.0, step / self.total_steps))
        return c.end + (c.start - c.end) * (1.0 - t) ** c.power

    def fluctuation_term(self) -> float:
        if self.ema_short is None or self.ema_long is None or self.ema_long <= 0:
            return 1.0
        return (self.ema_short / self.ema_long) ** self.cfg.sensitivity

    def value(self, step: int) -> float:
        if not self.cfg.enabled:
            return 1.0
        raw = self.progress_term(step) * self.fluctuation_term()
        return float(min(self.cfg.max_weight, max(self.cfg.min_weight, raw)))

    def update(self, metric_loss: float) -> None:
        if not math.isfinite(metric_loss):
            return
        self.ema_short = self._ema(self.ema_short, metric_loss, self.cfg.short_window)
        self.ema_long = self._ema(self.ema_long, metric_loss, self.cfg.long_window)

    @staticmethod
    def _ema(previous: float | None, x: float, window: int) -> float:
        alpha = 2.0 / (window + 1.0)
        return x if previous is None else (1.0 - alpha) * previous + alpha * x

    def state_dict(self) -> dict[str, Any]:
        return {"ema_short": self.ema_short, "ema_long": self.ema_long}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema_short = state.get("ema_short")
        self.ema_long = state.get("ema_long")

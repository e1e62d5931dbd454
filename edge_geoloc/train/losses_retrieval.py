"""CSP-HD retrieval losses: symmetric InfoNCE, HCD, CSDA, and their combination.

Notation: ``e_d, e_s`` are (B, D) L2-normalised drone / satellite embeddings of B different locations (row i
of both is location i), ``s = exp(logit_scale)`` the learnable inverse temperature, ``S = s * e_d e_s^T``
(B, B). ``CE_ls`` is cross-entropy with label smoothing, ``sg`` stop-gradient. PALW is a schedule
(:class:`edge_geoloc.train.schedules.ProgressiveAdaptiveWeight`) whose value is passed in as ``hcd_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edge_geoloc.models.retrieval import StageOutputs


@dataclass(frozen=True)
class HCDConfig:
    enabled: bool = True
    weight: float = 1.0  # base weight, multiplied by PALW's value when PALW is on
    deep_supervision: float = 0.5  # InfoNCE on every earlier stage (trains the teachers)
    kl: float = 1.0  # distribution term
    attention: float = 1.0  # spatial term
    temperature: float = 4.0


@dataclass(frozen=True)
class CSDAConfig:
    enabled: bool = True
    temperature: float = 0.25  # tau_c: lower = stronger re-weighting
    mode: str = "view"  # "view" (one weight per direction) or "sample" (focal weight per sample)
    gamma: float = 1.0  # focal exponent for mode "sample"


@dataclass(frozen=True)
class PALWConfig:
    enabled: bool = True
    start: float = 1.0  # lambda_max at t = 0
    end: float = 0.1  # lambda_min at t = T
    power: float = 2.0
    short_window: int = 10  # EMA horizons in steps
    long_window: int = 100
    sensitivity: float = 1.0  # kappa
    min_weight: float = 0.05
    max_weight: float = 1.5


@dataclass(frozen=True)
class LossConfig:
    label_smoothing: float = 0.1
    hcd: HCDConfig = field(default_factory=HCDConfig)
    palw: PALWConfig = field(default_factory=PALWConfig)
    csda: CSDAConfig = field(default_factory=CSDAConfig)


def _num(x: torch.Tensor) -> float:
    return float(x.detach())


class InfoNCEOutput(NamedTuple):
    loss: torch.Tensor
    drone_to_sat: torch.Tensor  # per-sample losses (B,)
    sat_to_drone: torch.Tensor  # per-sample losses (B,)
    logits: torch.Tensor  # (B, B) drone rows, satellite columns


class SymmetricInfoNCE(nn.Module):
    """Sample4Geo's symmetric InfoNCE with label smoothing.

    ``L_{d->s,i} = CE_ls(S_i., i)``, ``L_{s->d,i} = CE_ls(S^T_i., i)``;
    ``L = 1/2 [ mean_i w_{d,i} L_{d->s,i} + mean_i w_{s,i} L_{s->d,i} ]`` with all ``w = 1`` for the baseline.
    """

    def __init__(self, label_smoothing: float = 0.1) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, e_d: torch.Tensor, e_s: torch.Tensor, logit_scale: torch.Tensor,
                weights: tuple[torch.Tensor | float, torch.Tensor | float] = (1.0, 1.0)) -> InfoNCEOutput:
        logits = logit_scale.exp() * e_d @ e_s.t()
        target = torch.arange(logits.shape[0], device=logits.device)
        ls = self.label_smoothing
        d2s = F.cross_entropy(logits, target, label_smoothing=ls, reduction="none")
        s2d = F.cross_entropy(logits.t(), target, label_smoothing=ls, reduction="none")
        loss = 0.5 * ((weights[0] * d2s).mean() + (weights[1] * s2d).mean())
        return InfoNCEOutput(loss, d2s, s2d, logits)


def attention_map(feature_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Attention transfer map ``a = normalize(flatten(mean_c F_c^2))`` at ``size``: (B, C, H, W) -> (B, h*w)."""
    a = feature_map.float().pow(2).mean(dim=1, keepdim=True)
    a = F.adaptive_avg_pool2d(a, size) if a.shape[-2:] != size else a
    return F.normalize(a.flatten(1), dim=1)


def kl_to_student(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * mean_rows KL(sg(softmax(z_t/T)) || softmax(z_s/T))``."""
    t = temperature
    p_teacher = F.softmax(teacher_logits.detach() / t, dim=1)
    log_student = F.log_softmax(student_logits / t, dim=1)
    return t * t * F.kl_div(log_student, p_teacher, reduction="batchmean")


class HierarchicalConsistencyDistillation(nn.Module):
    """HCD: earlier stages teach the deepest one ("inverse" self-distillation), both views.

    Stages ``i = 1..N-1`` are teachers, ``N`` the student; ``S_i = s * e_d^i e_s^{iT}`` from the stage heads.
    - ``L_DS = 1/(N-1) sum_i InfoNCE(e_d^i, e_s^i)`` trains the teachers (deep supervision).
    - ``L_KL = 1/(N-1) sum_i 1/2 [KLT(S_i, S_N) + KLT(S_i^T, S_N^T)]``, ``KLT`` as in :func:`kl_to_student`:
      the deep similarity distribution follows the stop-gradient distribution of each earlier stage.
    - ``L_AT = 1/(N-1) sum_i mean_{b, view} || a_N - sg(a_i) ||_2`` with :func:`attention_map` at the deepest
      grid: the deepest stage keeps the spatial layout the earlier stages attend to.
    ``L_HCD = w_ds L_DS + w_kl L_KL + w_at L_AT``.
    """

    def __init__(self, cfg: HCDConfig, label_smoothing: float = 0.1) -> None:
        super().__init__()
        self.cfg = cfg
        self.info_nce = SymmetricInfoNCE(label_smoothing)

    def forward(self, drone: StageOutputs, sat: StageOutputs, logit_scale: torch.Tensor,
                student_logits: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        n = len(drone.stage_embeddings)
        if n == 0:
            raise ValueError("HCD needs per-stage heads: build the model with stage_heads=True and num_stages >= 2")
        ds = kl = drone.embedding.new_zeros(())
        for e_d, e_s in zip(drone.stage_embeddings, sat.stage_embeddings, strict=True):
            out = self.info_nce(e_d, e_s, logit_scale)
            ds = ds + out.loss / n
            pair = kl_to_student(out.logits, student_logits, self.cfg.temperature)
            pair_t = kl_to_student(out.logits.t(), student_logits.t(), self.cfg.temperature)
            kl = kl + 0.5 * (pair + pair_t) / n
        at = 0.5 * (self.attention_term(drone.feature_maps) + self.attention_term(sat.feature_maps))
        c = self.cfg
        total = c.deep_supervision * ds + c.kl * kl + c.attention * at
        return total, {"hcd_ds": _num(ds), "hcd_kl": _num(kl), "hcd_at": _num(at)}

    @staticmethod
    def attention_term(feature_maps: list[torch.Tensor]) -> torch.Tensor:
        size = tuple(feature_maps[-1].shape[-2:])
        student = attention_map(feature_maps[-1], size)
        terms = [(student - attention_map(f.detach(), size)).norm(dim=1).mean() for f in feature_maps[:-1]]
        return torch.stack(terms).mean()


class ConfidenceSensitiveAlignment(nn.Module):
    """CSDA: the less confident direction learns more.

    Confidence of row i in a direction: ``c_i = sg(softmax(S)_{ii})`` (drone->satellite rows of S,
    satellite->drone rows of S^T).
    - mode ``"view"``: ``c_v = mean_i c_{v,i}``, ``w_v = 2 softmax_v(-c_v / tau_c)`` for ``v in {d->s, s->d}``
      (weights sum to 2, each in (0, 2)).
    - mode ``"sample"``: ``w_{v,i} = (1 - c_{v,i})^gamma / mean_i (1 - c_{v,i})^gamma`` (focal, mean 1).
    """

    def __init__(self, cfg: CSDAConfig) -> None:
        super().__init__()
        if cfg.mode not in ("view", "sample"):
            raise ValueError(f"csda.mode must be 'view' or 'sample', got {cfg.mode!r}")
        self.cfg = cfg

    def forward(self, logits: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, float]]:
        with torch.no_grad():
            c_d = F.softmax(logits.float(), dim=1).diagonal()
            c_s = F.softmax(logits.float().t(), dim=1).diagonal()
            if self.cfg.mode == "view":
                w = 2.0 * F.softmax(-torch.stack([c_d.mean(), c_s.mean()]) / self.cfg.temperature, dim=0)
                weights = (w[0], w[1])
            else:
                weights = (self._focal(c_d), self._focal(c_s))
        logs = {"conf_d2s": float(c_d.mean()), "conf_s2d": float(c_s.mean()),
                "w_d2s": float(weights[0].mean()), "w_s2d": float(weights[1].mean())}
        return weights, logs

    def _focal(self, conf: torch.Tensor) -> torch.Tensor:
        w = (1.0 - conf).clamp(min=1e-6).pow(self.cfg.gamma)
        return w / w.mean()


class CSPHDLoss(nn.Module):
    """``L = InfoNCE_w(e_d^N, e_s^N) + hcd_weight * L_HCD``, ``w`` from CSDA (or 1), each part switchable."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.info_nce = SymmetricInfoNCE(cfg.label_smoothing)
        self.hcd = HierarchicalConsistencyDistillation(cfg.hcd, cfg.label_smoothing) if cfg.hcd.enabled else None
        self.csda = ConfidenceSensitiveAlignment(cfg.csda) if cfg.csda.enabled else None

    def forward(self, drone: StageOutputs, sat: StageOutputs, logit_scale: torch.Tensor,
                hcd_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        logs: dict[str, float] = {}
        weights: tuple = (1.0, 1.0)
        if self.csda is not None:
            with torch.no_grad():
                logits = logit_scale.exp() * drone.embedding @ sat.embedding.t()
            weights, logs = self.csda(logits)
        metric = self.info_nce(drone.embedding, sat.embedding, logit_scale, weights)
        logs.update(metric=_num(metric.loss), temperature=_num(1.0 / logit_scale.exp()))
        total = metric.loss
        if self.hcd is not None:
            hcd, hcd_logs = self.hcd(drone, sat, logit_scale, metric.logits)
            total = total + hcd_weight * self.cfg.hcd.weight * hcd
            logs.update(hcd_logs, hcd=_num(hcd), hcd_weight=float(hcd_weight))
        logs["loss"] = _num(total)
        return total, logs

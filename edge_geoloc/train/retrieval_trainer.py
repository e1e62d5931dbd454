"""CSP-HD retrieval trainer: the Sample4Geo recipe plus HCD / PALW / CSDA, single process or torchrun DDP.

Recipe per optimizer step: lr schedule -> forward both views -> loss (on features gathered over ranks)
-> backward (split into ``grad_accum`` micro-batches) -> clip -> step -> PALW update -> log -> checkpoint.
Outputs in ``run.out_dir``: ``config.yaml``, ``metrics.csv``, ``last.safetensors`` (+ ``last.train_state.pt``
for resuming), ``final.safetensors`` and ``eval.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.config import ConfigError, save_config
from edge_geoloc.data.folders import open_cross_view_folders
from edge_geoloc.data.poses import PROTOCOLS, OnboardAlignment
from edge_geoloc.data.sampler import Batch, PairDataset, UniqueLocationBatchSampler, collate_pairs
from edge_geoloc.data.transforms import AugmentConfig, PairTransform
from edge_geoloc.data.university import CrossViewFolders
from edge_geoloc.evaluate.retrieval_metrics import evaluate_folders
from edge_geoloc.models.registry import create_model
from edge_geoloc.models.retrieval import RetrievalModel, StageOutputs
from edge_geoloc.train.distributed import DistInfo, barrier, gather_with_grad, init_distributed
from edge_geoloc.train.losses_retrieval import CSPHDLoss, LossConfig
from edge_geoloc.train.optim import decay_groups, warmup_steps
from edge_geoloc.train.pretrain_config import cached_path, default_pretrain_config
from edge_geoloc.train.schedules import ProgressiveAdaptiveWeight, cosine_with_warmup
from edge_geoloc.train.shell import (
    AmpContext,
    MetricsLogger,
    load_resume_point,
    resolve_device,
    save_resume_point,
    seed_everything,
    wrap_ddp,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievalDataConfig:
    dataset: str = "university1652"  # "university1652" | "sues200" | "synthetic" (University-1652 layout)
    root: str = "data/University-1652"
    altitude_m: int = 150  # SUES-200 only
    protocol: str = "paper"  # "paper": views as they are | "onboard": north-up + ground cut from poses.csv
    query_ground_size_m: float = 80.0  # onboard: metres of ground the aligned drone view covers
    num_workers: int = 4
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class RetrievalModelConfig:
    name: str = "cspdh_convnext_base"
    pretrained: bool | str = False  # True (timm hub), a weights file, or "synthetic" (edge-geoloc pretrain, cached)
    img_size: int | None = None  # None: the registered model's default
    pool: str | None = None  # None: the registered model's default ("avg" for ConvNeXt, "gem" otherwise)
    embed_dim: int | None = None
    shared_weights: bool = True
    num_stages: int = 4
    grad_checkpointing: bool = False
    backbone_kwargs: dict[str, Any] | None = None  # passed to timm (e.g. ls_init_value for ConvNeXt)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 128  # global, over all ranks and micro-batches
    grad_accum: int = 1
    epochs: int = 1
    max_steps: int | None = None  # cap on optimizer steps (a fixed budget)
    warmup_epochs: float = 0.1
    warmup_steps: int | None = None  # overrides warmup_epochs (short runs: epochs may be a handful of steps)
    warmup_min_steps: int = 30  # floor on the warm-up (capped at half the run)
    min_lr_factor: float = 0.0
    clip_grad_value: float | None = 100.0
    clip_grad_norm: float | None = None
    amp: bool = True  # CUDA only: bf16 where supported, else fp16 with loss scaling


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "runs/retrieval"
    seed: int = 1
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    log_every: int = 10
    checkpoint_every: int = 0  # optimizer steps; 0 = end of every epoch only
    resume: bool = False  # continue from out_dir/last.safetensors
    stop_after_steps: int | None = None  # end this run early at this step (time-limited jobs); resume later
    eval_at_end: bool = True
    eval_batch_size: int = 64
    multi_view: bool = False
    progress: bool = True
    tensorboard: bool = False


@dataclass(frozen=True)
class RetrievalTrainConfig:
    data: RetrievalDataConfig = field(default_factory=RetrievalDataConfig)
    model: RetrievalModelConfig = field(default_factory=RetrievalModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    skipped_images: int = 0


class TwoViewForward(nn.Module):
    """What DDP wraps: both views through the model in one ``forward``."""

    def __init__(self, model: RetrievalModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, drone: torch.Tensor, sat: torch.Tensor) -> tuple[StageOutputs, StageOutputs]:
        return self.model.forward_stages(drone, "drone"), self.model.forward_stages(sat, "satellite")


def open_folders(cfg: RetrievalDataConfig) -> CrossViewFolders:
    return open_cross_view_folders(cfg.dataset, cfg.root, cfg.altitude_m)


def model_kwargs(cfg: RetrievalTrainConfig) -> dict[str, Any]:
    """Constructor overrides; per-stage heads exist only when HCD uses them (derived, not configured)."""
    m = cfg.model
    onboard = cfg.data.protocol == "onboard"
    kwargs = dict(pretrained=resolve_pretrained(m), img_size=m.img_size, pool=m.pool, embed_dim=m.embed_dim,
                  shared_weights=m.shared_weights, num_stages=m.num_stages, stage_heads=cfg.loss.hcd.enabled,
                  grad_checkpointing=m.grad_checkpointing, backbone_kwargs=m.backbone_kwargs,
                  query_alignment="north_up" if onboard else None,
                  query_ground_size_m=cfg.data.query_ground_size_m if onboard else None)
    return {k: v for k, v in kwargs.items() if v is not None or k == "embed_dim"}


def resolve_pretrained(m: RetrievalModelConfig) -> bool | str:
    """``model.pretrained``: True (timm hub), False, a weights file, or ``"synthetic"``: the backbone pretrained on
    the synthetic world by ``edge-geoloc pretrain`` (its cached output; see train/pretrain.py)."""
    if m.pretrained != "synthetic":
        return m.pretrained
    path = cached_path(default_pretrain_config(m.name))
    if not path.is_file():
        raise ConfigError(f"model.pretrained=synthetic: no cached backbone at {path}; build it first with "
                          f"`edge-geoloc pretrain model={m.name}`")
    return str(path)


def drone_preparation(cfg: RetrievalDataConfig, model: RetrievalModel) -> OnboardAlignment | None:
    """The protocol's drone-view preparation: None for the paper protocol, the runtime's alignment on board."""
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"data.protocol must be one of {PROTOCOLS}, got {cfg.protocol!r}")
    if cfg.protocol == "paper":
        return None
    if cfg.augment.enabled and cfg.augment.rotate_satellite:
        raise ValueError("data.protocol=onboard pairs north-up views with north-up tiles: set "
                         "data.augment.rotate_satellite=false")
    return OnboardAlignment(cfg.root, cfg.query_ground_size_m, model.input_size[0])


def build_loader(cfg: RetrievalTrainConfig, model: RetrievalModel, info: DistInfo
                 ) -> tuple[PairDataset, UniqueLocationBatchSampler, torch.utils.data.DataLoader]:
    pairs = open_folders(cfg.data).train_pairs()
    transform = PairTransform(cfg.data.augment, model.input_size, model.mean, model.std)
    prepare = drone_preparation(cfg.data, model)
    if prepare is not None:
        prepare.check_all([p.drone for p in pairs])
    dataset = PairDataset(pairs, transform, seed=cfg.run.seed, prepare_drone=prepare)
    sampler = UniqueLocationBatchSampler(dataset.labels, cfg.optim.batch_size, cfg.run.seed, info.rank,
                                         info.world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                                         collate_fn=collate_pairs, pin_memory=torch.cuda.is_available())
    return dataset, sampler, loader


def check_batch_split(cfg: OptimConfig, info: DistInfo) -> None:
    parts = info.world_size * cfg.grad_accum
    if cfg.batch_size % parts:
        raise ValueError(f"optim.batch_size {cfg.batch_size} must be divisible by world_size x grad_accum = {parts}")


def total_steps(cfg: OptimConfig, batches_per_epoch: int) -> int:
    steps = cfg.epochs * batches_per_epoch
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def gather_outputs(out: StageOutputs) -> StageOutputs:
    """Embeddings over all ranks (float32); feature maps stay local (their loss term is per sample)."""
    return StageOutputs(gather_with_grad(out.embedding.float()),
                        [gather_with_grad(e.float()) for e in out.stage_embeddings], out.feature_maps)


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Logged values averaged over ranks (terms such as HCD's attention part are computed per rank)."""
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    t /= torch.distributed.get_world_size()
    return dict(zip(values, t.tolist(), strict=True))


class RetrievalTrainer:
    """Builds everything from a :class:`RetrievalTrainConfig`; :meth:`fit` runs the recipe."""

    def __init__(self, cfg: RetrievalTrainConfig) -> None:
        self.cfg, self.info = cfg, init_distributed()
        check_batch_split(cfg.optim, self.info)
        seed_everything(cfg.run.seed)
        self.device = resolve_device(cfg.run.device, self.info)
        self.out_dir = Path(cfg.run.out_dir)
        self.model = create_model(cfg.model.name, **model_kwargs(cfg)).to(self.device)
        self.dataset, self.sampler, self.loader = build_loader(cfg, self.model, self.info)
        self.total_steps = total_steps(cfg.optim, len(self.sampler))
        o = cfg.optim
        self.warmup_steps = warmup_steps(self.total_steps, len(self.sampler), o.warmup_epochs, o.warmup_steps,
                                         o.warmup_min_steps)
        self.optimizer = torch.optim.AdamW(decay_groups(self.model, o.weight_decay), lr=o.lr)
        self.criterion = CSPHDLoss(cfg.loss)
        self.palw = ProgressiveAdaptiveWeight(cfg.loss.palw, self.total_steps)
        self.amp = AmpContext(cfg.optim.amp, self.device)
        self.forward_module: nn.Module = wrap_ddp(TwoViewForward(self.model), self.device, self.info)
        self.state = TrainState()
        self.logger = MetricsLogger(self.out_dir, cfg.run.tensorboard, self.info.is_main)
        if cfg.run.resume:
            self.load_resume_state()

    @property
    def stop_step(self) -> int:
        stop = self.cfg.run.stop_after_steps
        return min(self.total_steps, stop) if stop else self.total_steps

    def fit(self) -> dict[str, Any]:
        """Train to ``total_steps``, save ``final.safetensors``, evaluate if a test split exists."""
        from tqdm import tqdm

        if self.info.is_main:
            save_config(self.cfg, self.out_dir / "config.yaml")
        bar = tqdm(total=self.total_steps, initial=self.state.step, desc="train retrieval",
                   disable=not (self.info.is_main and self.cfg.run.progress))
        logs: dict[str, float] = {}
        while self.state.step < self.stop_step and self.state.epoch < self.cfg.optim.epochs:
            logs = self.run_epoch(bar) or logs
        bar.close()
        if self.state.step < self.total_steps:
            log.info("stopped at step %d of %d; continue with run.resume=true", self.state.step, self.total_steps)
            return {"step": self.state.step, "last_logs": logs, "skipped_images": self.state.skipped_images}
        self.save("final")
        results = {"step": self.state.step, "last_logs": logs, "skipped_images": self.state.skipped_images}
        results["eval"] = self.evaluate() if self.cfg.run.eval_at_end else {}
        if self.info.is_main:
            atomic_write_json(self.out_dir / "eval.json", results)
        return results

    def run_epoch(self, bar) -> dict[str, float]:
        s = self.state
        self.sampler.set_epoch(s.epoch, s.batch_in_epoch)
        self.dataset.set_epoch(s.epoch)
        logs: dict[str, float] = {}
        for batch in self.loader:
            if s.step >= self.stop_step:
                break
            logs = self.train_step(batch)
            s.step, s.batch_in_epoch = s.step + 1, s.batch_in_epoch + 1
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}", hcd_w=f"{logs.get('hcd_weight', 0):.2f}")
            if s.step % self.cfg.run.log_every == 0 or s.step == self.total_steps:
                self.logger.log(s.step, logs)
            if self.cfg.run.checkpoint_every and s.step % self.cfg.run.checkpoint_every == 0:
                self.save("last")
        if s.batch_in_epoch >= len(self.sampler.global_batches()):
            s.epoch, s.batch_in_epoch = s.epoch + 1, 0
        self.save("last")
        return logs

    def train_step(self, batch: Batch) -> dict[str, float]:
        """schedule -> forward -> loss -> backward (micro-batches) -> clip -> step -> PALW update."""
        o = self.cfg.optim
        lr = o.lr * cosine_with_warmup(self.state.step, self.total_steps, self.warmup_steps, o.min_lr_factor)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        hcd_weight = self.palw.value(self.state.step)
        self.optimizer.zero_grad(set_to_none=True)
        logs = self.accumulate(batch, hcd_weight)
        grad_norm = self.clip_and_step()
        self.palw.update(logs["metric"])
        self.state.skipped_images += batch.skipped
        return {**logs, "lr": lr, "grad_norm": grad_norm, "skipped_images": float(self.state.skipped_images)}

    def accumulate(self, batch: Batch, hcd_weight: float) -> dict[str, float]:
        accum = self.cfg.optim.grad_accum
        drone = batch.drone.to(self.device, non_blocking=True).chunk(accum)
        sat = batch.satellite.to(self.device, non_blocking=True).chunk(accum)
        totals: dict[str, float] = {}
        for i, (d, s) in enumerate(zip(drone, sat, strict=True)):
            last = i == len(drone) - 1
            no_sync = self.info.enabled and not last
            with self.forward_module.no_sync() if no_sync else contextlib.nullcontext():
                with self.amp.autocast():
                    out_d, out_s = self.forward_module(d, s)
                loss, logs = self.criterion(gather_outputs(out_d), gather_outputs(out_s), self.model.logit_scale,
                                            hcd_weight)
                self.amp.scaler.scale(loss / len(drone)).backward()
            for key, value in logs.items():
                totals[key] = totals.get(key, 0.0) + value / len(drone)
        return mean_over_ranks(totals, self.device) if self.info.enabled else totals

    def clip_and_step(self) -> float:
        o = self.cfg.optim
        self.amp.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        if o.clip_grad_value:
            torch.nn.utils.clip_grad_value_(params, o.clip_grad_value)
        max_norm = o.clip_grad_norm or float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        self.amp.scaler.step(self.optimizer)
        self.amp.scaler.update()
        return grad_norm

    def save(self, name: str) -> Path:
        path = self.out_dir / f"{name}.safetensors"
        if self.info.is_main:
            extra = {"step": self.state.step, "epoch": self.state.epoch, "embed_dim": self.model.embed_dim}
            state = {"optimizer": self.optimizer.state_dict(), "scaler": self.amp.scaler.state_dict(),
                     "palw": self.palw.state_dict(), "state": vars(self.state)}
            save_resume_point(self.out_dir, name, self.model, self.cfg, extra, state)
        barrier()
        return path

    def load_resume_state(self) -> None:
        state = load_resume_point(self.out_dir, "last", self.model, "retrieval", self.device)
        if state is None:
            raise FileNotFoundError(f"run.resume=true but {self.out_dir} has no last.safetensors + "
                                    "last.train_state.pt; start without resume or point run.out_dir at the earlier run")
        self.optimizer.load_state_dict(state["optimizer"])
        self.amp.scaler.load_state_dict(state["scaler"])
        self.palw.load_state_dict(state["palw"])
        self.state = TrainState(**state["state"])
        log.info("resumed at step %d (epoch %d)", self.state.step, self.state.epoch)

    def evaluate(self) -> dict[str, dict]:
        """Both directions and protocols on the test split (main rank; empty if there is none)."""
        folders = open_folders(self.cfg.data)
        if not self.info.is_main or not folders.test_dir.is_dir():
            barrier()
            return {}
        r = self.cfg.run
        results = evaluate_folders(self.model, folders, r.eval_batch_size, self.device, r.multi_view,
                                   prepare_drone=drone_preparation(self.cfg.data, self.model))
        log.info("evaluation: %s", json.dumps({k: round(v["recall_at_1"], 2) for k, v in results.items()}))
        barrier()
        return results


def train_retrieval(cfg: RetrievalTrainConfig) -> dict[str, Any]:
    """Train (and evaluate) a retrieval model; returns the summary also written to ``eval.json``."""
    return RetrievalTrainer(cfg).fit()

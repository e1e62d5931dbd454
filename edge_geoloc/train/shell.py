"""The training shell every trainer shares: seed, device, DDP, AMP, resume points and the metrics log.

A trainer is then a recipe on top (build -> loop -> checkpoint): the retrieval trainer
(``retrieval_trainer``), the localizer trainer (``localizer_trainer``) and adaptation (``adaptation``, which
reuses the localizer's epoch loop). A *resume point* ``<name>`` in a run folder is ``<name>.safetensors`` (the
model, :func:`edge_geoloc.models.checkpoint.save_model`) plus ``<name>.train_state.pt`` (optimizer and loop
state, ``torch.save`` of plain tensors and numbers, loaded with ``weights_only=True``).
"""

from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from edge_geoloc.artifacts import load_checkpoint
from edge_geoloc.models.checkpoint import save_model
from edge_geoloc.train.distributed import DistInfo

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` -> CUDA when available; on CUDA each rank takes its ``LOCAL_RANK`` device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


def wrap_ddp(module: nn.Module, device: torch.device, info: DistInfo, find_unused_parameters: bool = False
             ) -> nn.Module:
    """``module`` under DistributedDataParallel when running under torchrun, else unchanged."""
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused_parameters)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


class AmpContext:
    """Autocast + loss scaling on CUDA; a no-op on CPU."""

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled = enabled and device.type == "cuda"
        bf16 = self.enabled and torch.cuda.is_bf16_supported()
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and not bf16)
        self.device_type = device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


class MetricsLogger:
    """``metrics.csv`` (one row per logged step or epoch) and, if asked and installed, TensorBoard."""

    def __init__(self, out_dir: Path, tensorboard: bool, enabled: bool) -> None:
        self.path, self.enabled, self.columns = out_dir / "metrics.csv", enabled, None
        self.tb = self._tensorboard(out_dir) if tensorboard and enabled else None

    @staticmethod
    def _tensorboard(out_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed (pip install edge-geoloc[tensorboard]); logging to CSV only")
            return None
        return SummaryWriter(str(out_dir / "tb"))

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **values}
        if self.columns is None:
            self.columns = list(row)
            if not self.path.exists() or self.path.stat().st_size == 0:
                self.path.write_text(",".join(self.columns) + "\n", encoding="utf-8")
        with self.path.open("a", encoding="utf-8") as f:
            f.write(",".join(f"{row.get(c, float('nan')):.6g}" for c in self.columns) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(key, value, step)


def save_resume_point(out_dir: Path, name: str, model: nn.Module, config: Any, extra: dict[str, Any],
                      train_state: dict[str, Any]) -> Path:
    """Write ``<name>.safetensors`` (model, config, ``extra``) and ``<name>.train_state.pt``; returns the former."""
    path = save_model(model, out_dir / f"{name}.safetensors", config, extra)
    torch.save(train_state, out_dir / f"{name}.train_state.pt")
    return path


def load_resume_point(out_dir: Path, name: str, model: nn.Module, kind: str,
                      map_location: torch.device | str = "cpu") -> dict[str, Any] | None:
    """Load ``<name>``'s weights into ``model`` and return its train state; None when the run has none."""
    weights, state_path = out_dir / f"{name}.safetensors", out_dir / f"{name}.train_state.pt"
    if not (weights.is_file() and state_path.is_file()):
        return None
    tensors, _ = load_checkpoint(weights, expected_kind=kind)
    unwrap(model).load_state_dict(tensors)
    log.info("resumed from %s", weights)
    return torch.load(state_path, map_location=map_location, weights_only=True)

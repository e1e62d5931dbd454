"""PyTorch reference backend: a checkpoint rebuilt from the registry, run through the export wrappers.

It answers with the same input/output names and preprocessing as the exported files, so the parity gate and
the benchmarks compare like with like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_geoloc.artifacts import package_versions, sha256_file
from edge_geoloc.export.sidecar import build_sidecar
from edge_geoloc.export.wrappers import wrap_for_export
from edge_geoloc.models.checkpoint import load_model
from edge_geoloc.runtime.backends.base import Backend


class TorchBackend(Backend):
    """A ``nn.Module`` (wrapped as for export) on ``device``; ``torch.no_grad`` inference."""

    name = "torch"

    def __init__(self, wrapper: nn.Module, sidecar: dict[str, Any], device: str = "cpu") -> None:
        super().__init__(sidecar)
        self.device = torch.device(device)
        self.module = wrapper.eval().to(self.device)

    @classmethod
    def from_model(cls, model: nn.Module, device: str = "cpu", view: str = "drone", finest_only: bool = False,
                   preprocessing: dict[str, Any] | None = None) -> TorchBackend:
        """Wrap an in-memory model (as the exporter would) and describe it with an in-memory sidecar."""
        wrapper, desc = wrap_for_export(model.eval(), view=view, finest_only=finest_only, dynamic_batch=True,
                                        preprocessing=preprocessing)
        extra = {"export": {"view": view, "finest_only": finest_only}}
        return cls(wrapper, build_sidecar(desc, versions=package_versions(), extra=extra), device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", view: str = "drone",
                        finest_only: bool = False) -> TorchBackend:
        model, meta = load_model(path)
        wrapper, desc = wrap_for_export(model, view=view, finest_only=finest_only, dynamic_batch=True,
                                        preprocessing=meta.preprocessing, model_config=meta.config)
        sidecar = build_sidecar(desc, hashes={"checkpoint": sha256_file(path)}, versions=package_versions(),
                                extra={"export": {"view": view, "finest_only": finest_only}})
        return cls(wrapper, sidecar, device)

    def _release(self) -> None:
        del self.module
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [torch.from_numpy(feeds[name]).to(self.device) for name in self.input_names]
        with torch.no_grad():
            outs = self.module(*tensors)
        outs = (outs,) if isinstance(outs, torch.Tensor) else tuple(outs)
        return {name: o.detach().cpu().numpy() for name, o in zip(self.output_names, outs, strict=True)}

"""timm backbones behind one feature contract: a list of feature maps with known channels and strides."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from edge_geoloc.artifacts import IMAGENET_MEAN, IMAGENET_STD


class Backbone(nn.Module):
    """Multi-scale features of a timm model (``features_only=True``).

    ``channels[i]`` and ``reductions[i]`` describe ``forward(x)[i]``; heads size themselves from these,
    never from constants. ``pretrained`` may be ``True`` (timm hub, needs internet or a cache) or a path to a
    local weights file (safetensors or a ``weights_only`` torch file).
    """

    def __init__(self, name: str, pretrained: bool | str = False, out_indices: tuple[int, ...] | None = None,
                 **timm_kwargs) -> None:
        super().__init__()
        kwargs = dict(features_only=True, pretrained=pretrained is True, **timm_kwargs)
        if out_indices is not None:
            kwargs["out_indices"] = out_indices
        self.body = timm.create_model(name, **kwargs)
        self.name = name
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())
        cfg = getattr(self.body, "pretrained_cfg", {}) or {}
        self.mean: tuple[float, float, float] = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std: tuple[float, float, float] = tuple(cfg.get("std", IMAGENET_STD))
        if isinstance(pretrained, (str, Path)) and pretrained:
            self.load_local_weights(Path(pretrained))

    def load_local_weights(self, path: Path) -> None:
        """Load backbone weights from a local file (no network), ignoring a classifier head."""
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        missing, _ = self.body.load_state_dict(state, strict=False)
        if len(missing) == len(self.body.state_dict()):
            raise ValueError(f"{path} holds no weights for backbone {self.name!r}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body(x)

"""timm backbones behind one feature contract: a list of feature maps with known channels and strides."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from edge_geoloc.artifacts import IMAGENET_MEAN, IMAGENET_STD

PRETRAINED_FORMAT = "edge_geoloc.pretrained_backbone"  # metadata "format" of `edge-geoloc pretrain` files


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
        """Load backbone weights from a local file (no network), ignoring a classifier head. A file written by
        ``edge-geoloc pretrain`` names its backbone; another backbone's file is an error naming the file."""
        load_pretrained_into(self.body, self.name, path)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body(x)


def read_pretrained_state(path: Path, backbone: str) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file (safetensors or a ``weights_only`` torch file). A file written by
    ``edge-geoloc pretrain`` names its backbone in the metadata; another backbone's file is an error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if path.suffix != ".safetensors":
        return torch.load(path, map_location="cpu", weights_only=True)
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") == PRETRAINED_FORMAT and meta.get("backbone") != backbone:
        raise ValueError(f"{path} holds pretrained weights for backbone {meta.get('backbone')!r}, not "
                         f"{backbone!r}: pretrain this backbone (edge-geoloc pretrain model=...) or pick "
                         "the matching model")
    return load_file(str(path))


def load_pretrained_into(body: nn.Module, backbone: str, path: Path) -> None:
    """Load ``path`` into ``body`` (extra keys such as a classifier are ignored; a file that fits nothing or has
    the wrong shapes is an error naming the file)."""
    state = read_pretrained_state(Path(path), backbone)
    try:
        missing, _ = body.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{path} does not fit backbone {backbone!r}: {str(err).splitlines()[1:2]}") from err
    if len(missing) == len(body.state_dict()):
        raise ValueError(f"{path} holds no weights for backbone {backbone!r}")

"""Export views of the models: the exact graph that goes to ONNX, with named inputs and outputs.

A retrieval model exports one branch (``image -> embedding``); a localizer exports ``(query, aerial) ->
(heatmap, orientation, level_0 .. level_{n-1})`` (levels coarse -> fine), or only ``heatmap`` and
``orientation`` when ``finest_only``; a map matcher exports ``image (B, 3, height, width) -> features (B, C,
height / stride, width / stride)`` with a dynamic height and width (a frame and a map block go through the same
graph). The PyTorch reference backend runs the same wrappers, so every backend
answers with the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from edge_geoloc.export.sidecar import InputPreprocessing, ModelDescription, TensorSpec
from torch import nn

from edge_geoloc.artifacts import IMAGENET_MEAN, IMAGENET_STD

KINDS = ("retrieval", "localizer", "matcher")
VIEWS = ("drone", "satellite")


class RetrievalBranch(nn.Module):
    """One branch of a retrieval model: ``(B, 3, H, W) -> (B, D)`` L2-normalised embedding."""

    def __init__(self, model: nn.Module, view: str = "drone") -> None:
        super().__init__()
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        self.model = model
        self.view = view

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode(image, view=self.view)


class LocalizerHeads(nn.Module):
    """A localizer returning a flat tuple: heat map, orientation, then the matching volumes coarse -> fine."""

    def __init__(self, model: nn.Module, finest_only: bool = False) -> None:
        super().__init__()
        self.model = model
        self.finest_only = finest_only

    def forward(self, query: torch.Tensor, aerial: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(query, aerial)
        if self.finest_only:
            return out.heatmap, out.orientation
        return (out.heatmap, out.orientation, *out.levels)


class MatcherFeatures(nn.Module):
    """A map matcher's dense features: ``image (B, 3, H, W) -> features (B, C, H / stride, W / stride)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


MATCHER_ATTRIBUTES = ("m_per_px", "stride", "query_ground_size_m", "tile_size_m", "search_radius_m")


def model_kind(model: nn.Module) -> str:
    """``"retrieval"``, ``"localizer"`` or ``"matcher"``, from the attributes the model contracts require
    (docs/interfaces.md)."""
    if hasattr(model, "encode") and hasattr(model, "input_size"):
        return "retrieval"
    if hasattr(model, "query_size") and hasattr(model, "aerial_size"):
        return "localizer"
    if all(hasattr(model, a) for a in MATCHER_ATTRIBUTES):
        return "matcher"
    raise ValueError(f"cannot tell whether {type(model).__name__} is a retrieval model (needs encode() and "
                     "input_size), a localizer (needs query_size and aerial_size) or a map matcher (needs "
                     f"{', '.join(MATCHER_ATTRIBUTES)}); see docs/interfaces.md")


def _hw(size: Any) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def _prep(model: nn.Module, size_hw: tuple[int, int], overrides: dict[str, Any]) -> InputPreprocessing:
    mean = tuple(float(v) for v in getattr(model, "mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in getattr(model, "std", IMAGENET_STD))
    known = {k: v for k, v in overrides.items() if k in ("color_order", "interpolation", "scale", "alignment",
                                                           "ground_size_m", "camera")}
    return InputPreprocessing(size_hw=size_hw, mean=mean, std=std, **known)


def _matcher_prep(model: nn.Module, overrides: dict[str, Any]) -> InputPreprocessing:
    """The matcher's one input: north-up imagery at ``m_per_px``, traced at the frame's size (a multiple of the
    stride); ``ground_size_m`` is the frame's ground (the model's ``query_ground_size_m``)."""
    stride = int(model.stride)
    frame_px = int(round(model.query_ground_size_m / model.m_per_px))
    if frame_px % stride:
        raise ValueError(f"the matcher's frame of {frame_px} px ({model.query_ground_size_m} m at {model.m_per_px} "
                         f"m/px) is not a multiple of its stride {stride}")
    known = {k: v for k, v in overrides.items() if k in ("color_order", "interpolation", "alignment", "camera")}
    known = {"interpolation": "area", "alignment": "north_up", "camera": getattr(model, "query_camera", "nadir"),
             **known}
    return InputPreprocessing(size_hw=(frame_px, frame_px), mean=tuple(float(v) for v in model.mean),
                              std=tuple(float(v) for v in model.std), ground_size_m=float(model.query_ground_size_m),
                              m_per_px=float(model.m_per_px), stride=stride, tile_size_m=float(model.tile_size_m),
                              search_radius_m=float(model.search_radius_m),
                              receptive_field_px=receptive_field_px(model, stride), **known)


def receptive_field_px(model: nn.Module, stride: int, size_px: int = 256) -> int:
    """Measured reach of a fully convolutional model: input pixels on either side of a feature cell that can
    change it (perturb the centre pixel, see which cells move). The runtime extracts features of a large map
    block by block with this much overlap, so the stitched features equal those of one pass."""
    x = torch.randn(1, 3, size_px, size_px, generator=torch.Generator().manual_seed(0))
    bumped = x.clone()
    bumped[..., size_px // 2, size_px // 2] += 10.0
    with torch.no_grad():
        moved = (model(bumped) - model(x)).abs().amax(dim=1)[0] > 0  # (h, w) cells that changed
    rows, cols = np.nonzero(moved.numpy())
    centre = size_px // 2 // stride  # the cell over the bumped pixel
    reach = (int(max(np.abs(rows - centre).max(), np.abs(cols - centre).max())) + 1) * stride  # rounded up a cell
    if reach >= size_px // 2:
        raise ValueError(f"the matcher's receptive field reaches the {size_px} px probe's border; it is not local")
    return reach


def _input_overrides(preprocessing: dict[str, Any], input_name: str) -> dict[str, Any]:
    """A checkpoint's preprocessing block is flat (retrieval) or per input (localizer: query / aerial)."""
    nested = preprocessing.get(input_name)
    return dict(nested) if isinstance(nested, dict) else preprocessing


def wrap_for_export(model: nn.Module, *, view: str = "drone", finest_only: bool = False,
                    dynamic_batch: bool = False, preprocessing: dict[str, Any] | None = None,
                    model_config: dict[str, Any] | None = None) -> tuple[nn.Module, ModelDescription]:
    """The module to export and the description of its inputs, outputs and preprocessing."""
    kind = model_kind(model)
    batch: int | str = "batch" if dynamic_batch else 1
    overrides = dict(preprocessing or {})
    if kind == "retrieval":
        size = _hw(model.input_size)
        inputs = (TensorSpec("image", (batch, 3, *size)),)
        wrapper: nn.Module = RetrievalBranch(model, view)
        prep = {"image": _prep(model, size, _input_overrides(overrides, "image"))}
    elif kind == "matcher":
        inputs = (TensorSpec("image", (batch, 3, "height", "width")),)
        wrapper = MatcherFeatures(model)
        prep = {"image": _matcher_prep(model, _input_overrides(overrides, "image"))}
    else:
        q, a = _hw(model.query_size), _hw(model.aerial_size)
        inputs = (TensorSpec("query", (batch, 3, *q)), TensorSpec("aerial", (batch, 3, *a)))
        wrapper = LocalizerHeads(model, finest_only)
        prep = {"query": _prep(model, q, _input_overrides(overrides, "query")),
                "aerial": _prep(model, a, _input_overrides(overrides, "aerial"))}
    wrapper.eval()
    outputs = _output_specs(wrapper, inputs, kind, batch, trace_hw(inputs, prep))
    desc = ModelDescription(kind, str(getattr(model, "model_name", type(model).__name__)),
                            dict(getattr(model, "model_kwargs", {})), inputs, outputs, prep,
                            dict(model_config or {}))
    return wrapper, desc


def trace_hw(inputs: Sequence[TensorSpec], prep: dict[str, InputPreprocessing]) -> tuple[int, int] | None:
    """The size an input of dynamic height and width is traced at: its preprocessing's ``size_hw``."""
    dynamic = [t.name for t in inputs if t.dynamic_hw]
    return prep[dynamic[0]].size_hw if dynamic else None


def output_names(kind: str, num_outputs: int) -> list[str]:
    """Output names in the order the wrapper returns them."""
    if kind == "retrieval":
        return ["embedding"]
    if kind == "matcher":
        return ["features"]
    return ["heatmap", "orientation", *(f"level_{k}" for k in range(num_outputs - 2))]


def _output_specs(wrapper: nn.Module, inputs: Sequence[TensorSpec], kind: str, batch: int | str,
                  hw: tuple[int, int] | None) -> tuple[TensorSpec, ...]:
    """Run the wrapper once to learn the output shapes; a matcher's follow its input's dynamic size."""
    with torch.no_grad():
        outs = wrapper(*example_inputs(inputs, hw=hw))
    outs = (outs,) if isinstance(outs, torch.Tensor) else tuple(outs)
    names = output_names(kind, len(outs))
    specs = tuple(TensorSpec(n, (batch, *o.shape[1:]), "float32") for n, o in zip(names, outs, strict=True))
    if kind != "matcher":
        return specs
    stride = hw[0] // specs[0].shape[2]
    return (TensorSpec("features", (batch, specs[0].shape[1], f"height/{stride}", f"width/{stride}")),)


def example_inputs(inputs: Sequence[TensorSpec], batch: int = 1, seed: int = 0,
                   hw: tuple[int, int] | None = None) -> tuple[torch.Tensor, ...]:
    """Random normal tensors of the inputs' shapes (the exporter traces on these); ``hw`` sizes an input of
    dynamic height and width."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(t.concrete_shape(batch, hw if t.dynamic_hw else None), generator=gen) for t in inputs)

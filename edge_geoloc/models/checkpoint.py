"""The one owner of model checkpoints: save a registered model with its self-description, rebuild it from one.

A checkpoint (``edge_geoloc.artifacts``) holds weights plus the registry name, constructor overrides, resolved
config and the model's ``preprocessing()``; ``load_model`` rebuilds the model from that alone. Pretrained
backbone weights are never fetched when rebuilding: the checkpoint's tensors replace them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edge_geoloc.artifacts import CheckpointMeta, load_checkpoint, save_checkpoint
from edge_geoloc.config import to_dict
from edge_geoloc.models.registry import create_model, get_entry


def load_model(path: str | Path, expected_kind: str | None = None) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild a registered model from a safetensors checkpoint (strict weights, eval mode) and its metadata."""
    state, meta = load_checkpoint(path, expected_kind=expected_kind)
    model = create_model(meta.model_name, **rebuild_kwargs(meta.model_kwargs))
    model.model_kwargs = dict(meta.model_kwargs)  # as recorded, so a re-save describes the same model
    model.load_state_dict(state, strict=True)
    return model.eval(), meta


def rebuild_kwargs(model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Constructor overrides for rebuilding: a recorded ``pretrained`` source is not fetched again."""
    return {**model_kwargs, "pretrained": False} if "pretrained" in model_kwargs else dict(model_kwargs)


def save_model(model: nn.Module, path: str | Path, config: Any = None, extra: dict[str, Any] | None = None) -> Path:
    """Save a registered model (unwrapped from DDP) with name, overrides, config and preprocessing."""
    module = getattr(model, "module", model)
    meta = CheckpointMeta(kind=get_entry(module.model_name).kind, model_name=module.model_name,
                          model_kwargs=dict(module.model_kwargs), config=to_dict(config) if config is not None else {},
                          preprocessing=module.preprocessing(), extra=extra or {})
    return save_checkpoint(path, module.state_dict(), meta)

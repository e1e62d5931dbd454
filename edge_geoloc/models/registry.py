"""Model registry: ``create_model(name, **overrides)`` for every retrieval model and localizer.

Register an entry point with :func:`register_model`; it receives keyword overrides on top of its defaults
and returns an ``nn.Module`` that records ``model_name`` and ``model_kwargs`` so checkpoints can rebuild it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "retrieval" | "localizer" | "matcher"
    build: Callable[..., nn.Module]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}
# The one list of modules whose ``@register_model`` entry points are the built-in models.
BUILTIN_MODEL_MODULES = ("edge_geoloc.models.retrieval", "edge_geoloc.models.localizer",
                         "edge_geoloc.models.localizer_xcorr", "edge_geoloc.models.map_matcher")


def register_model(name: str, kind: str, description: str = "") -> Callable[[Callable[..., nn.Module]],
                                                                           Callable[..., nn.Module]]:
    """Decorator: register ``fn(**kwargs) -> nn.Module`` under ``name``."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, kind, fn, description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return decorator


def _load_builtin_models() -> None:
    """Import the modules that register the built-in models (on first use, not at import time)."""
    import importlib

    for module in BUILTIN_MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def get_entry(name: str) -> ModelEntry:
    _load_builtin_models()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} Registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; ``overrides`` replace the entry point's default keyword arguments."""
    model = get_entry(name).build(**overrides)
    model.model_name = name
    model.model_kwargs = dict(overrides)
    return model


def list_models(kind: str | None = None) -> list[str]:
    _load_builtin_models()
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)

"""Every registered model exports to ONNX at a tiny size and passes the parity gate (style rule 16)."""

from __future__ import annotations

from typing import Any

import pytest
from edge_geoloc.export.config import ExportConfig, ParityConfig
from edge_geoloc.export.onnx_export import export_model

from edge_geoloc.models import create_model, get_entry, list_models

# Lean gate for CI: no simplification, one random and three synthetic samples per model.
GATE = ExportConfig(simplify=False, check_tensorrt=False, parity=ParityConfig(random_samples=1, real_samples=3))


def tiny_overrides(name: str) -> dict[str, Any]:
    """Constructor overrides that shrink a registered model's inputs (never its architecture)."""
    if get_entry(name).kind == "retrieval":
        return {"img_size": 32}
    default = create_model(name)
    levels, wide = len(default.level_sizes), default.query_size
    query = (64, 128) if wide[1] > wide[0] else (64, 64)
    return {"query_size": query, "aerial_size": 64, "coarse_grid": max(1, 64 // 2**levels)}


def test_registry_has_both_kinds():
    assert list_models("retrieval") and list_models("localizer")


@pytest.mark.parametrize("name", list_models())
def test_registered_model_exports_and_passes_parity(name, tmp_path):
    model = create_model(name, **tiny_overrides(name))
    result = export_model(model, tmp_path / f"{name}.onnx", GATE)
    parity = result.sidecar["parity"]
    assert parity["passed"] and parity["task"]["agreement"] == 1.0
    assert result.sidecar["model"]["name"] == name
    first_output = result.sidecar["outputs"][0]["name"]
    assert first_output == ("embedding" if get_entry(name).kind == "retrieval" else "heatmap")

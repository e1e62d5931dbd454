"""Every registered model exports to ONNX at a tiny size and passes the parity gate (style rule 16)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from edge_geoloc.export.config import ExportConfig, ParityConfig
from edge_geoloc.export.onnx_export import export_model

from edge_geoloc.models import create_model, get_entry, list_models

# Lean gate for CI: no simplification, one random and three synthetic samples per model.
GATE = ExportConfig(simplify=False, check_tensorrt=False, parity=ParityConfig(random_samples=1, real_samples=3))


def tiny_overrides(name: str) -> dict[str, Any]:
    """Constructor overrides that shrink a registered model's inputs (never its architecture): 32 px, or the
    smallest aerial patch its number of levels allows (coarse grid * 2^levels = aerial size)."""
    if get_entry(name).kind == "retrieval":
        return {"img_size": 32}
    if get_entry(name).kind == "matcher":
        return {"query_ground_size_m": 32.0, "tile_size_m": 64.0}
    default = create_model(name)
    levels, (qh, qw) = len(default.level_sizes), default.query_size
    aerial = max(32, 2**levels)
    return {"query_size": (32, 64) if qw > qh else (32, 32), "aerial_size": aerial,
            "coarse_grid": aerial // 2**levels}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """On a shared, oversubscribed CPU two OpenMP threads run these forwards 3-10x slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_registry_has_every_kind():
    assert list_models("retrieval") and list_models("localizer") and list_models("matcher")


@pytest.mark.parametrize("name", list_models())
def test_registered_model_exports_and_passes_parity(name, tmp_path):
    model = create_model(name, **tiny_overrides(name))
    result = export_model(model, tmp_path / f"{name}.onnx", GATE)
    parity = result.sidecar["parity"]
    assert parity["passed"] and parity["task"]["agreement"] == 1.0
    assert result.sidecar["model"]["name"] == name
    first_output = result.sidecar["outputs"][0]["name"]
    assert first_output == {"retrieval": "embedding", "matcher": "features"}.get(get_entry(name).kind, "heatmap")

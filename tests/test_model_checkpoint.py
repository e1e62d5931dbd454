"""One checkpoint owner: every registered model saves with ``save_model`` and comes back from ``load_model``
with the same weights, name, overrides and ``preprocessing()``; the registry lists every built-in model
without its modules being imported first."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from edge_geoloc.artifacts import ArtifactError
from edge_geoloc.models import create_model, get_entry, list_models
from edge_geoloc.models.checkpoint import load_model, save_model

# Small overrides per model family so every registered model is built and run cheaply on the CPU.
# (Localizers keep their registered sizes: those are tied to the number of levels.)
RETRIEVAL_OVERRIDES = {"img_size": 32, "embed_dim": 16}


def _overrides(name: str) -> dict:
    return dict(RETRIEVAL_OVERRIDES) if get_entry(name).kind == "retrieval" else {}


def _forward(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(0)
    if get_entry(model.model_name).kind == "retrieval":
        return model(torch.rand(1, 3, *model.input_size))
    if get_entry(model.model_name).kind == "matcher":
        return model(torch.rand(1, 3, model.query_px, model.query_px))
    query = torch.rand(1, 3, *model.query_size)
    return model(query, torch.rand(1, 3, model.aerial_size, model.aerial_size)).heatmap


CHEAP_MODELS = [n for n in list_models() if n not in ("cspdh_convnext_base", "ccvpe_vigor_b0", "ccvpe_kitti_b0",
                                                        "ccvpe_drone_small")]


@pytest.mark.parametrize("name", CHEAP_MODELS)
def test_save_then_load_rebuilds_the_same_model(name: str, tmp_path) -> None:
    model = create_model(name, **_overrides(name)).eval()
    path = save_model(model, tmp_path / "m.safetensors", extra={"epoch": 3})
    loaded, meta = load_model(path, expected_kind=get_entry(name).kind)
    assert (meta.model_name, meta.model_kwargs, meta.extra) == (name, model.model_kwargs, {"epoch": 3})
    assert meta.preprocessing == model.preprocessing() == loaded.preprocessing()
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(_forward(model), _forward(loaded))


@pytest.mark.parametrize("name", list_models())
def test_every_model_describes_its_preprocessing(name: str) -> None:
    prep = create_model(name, **_overrides(name)).preprocessing()
    kind = get_entry(name).kind
    blocks = {"retrieval": [prep], "matcher": [prep.get("image")]}.get(kind) or [prep["query"], prep["aerial"]]
    for block in blocks:
        assert len(block["mean"]) == len(block["std"]) == 3 and block["color_order"] == "RGB"
        if kind == "matcher":  # any size: the block declares the resolution and stride instead
            assert block["m_per_px"] > 0 and block["stride"] >= 1 and block["query_ground_size_m"] > 0
        else:
            assert len(block["size_hw"]) == 2


def test_load_model_rejects_the_wrong_kind(tmp_path) -> None:
    path = save_model(create_model("xcorr_drone_micro"), tmp_path / "loc.safetensors")
    with pytest.raises(ArtifactError, match="'localizer' checkpoint, expected 'retrieval'"):
        load_model(path, expected_kind="retrieval")


def test_rebuilding_never_fetches_pretrained_weights(tmp_path, monkeypatch) -> None:
    model = create_model("cspdh_mobilenetv3_small", **RETRIEVAL_OVERRIDES)
    model.model_kwargs = {**model.model_kwargs, "pretrained": True}  # as if trained from hub weights
    path = save_model(model, tmp_path / "r.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded, meta = load_model(path)
    assert meta.model_kwargs["pretrained"] is True and loaded.model_kwargs == meta.model_kwargs


def test_registry_lists_every_builtin_model_from_one_place() -> None:
    code = ("import json; from edge_geoloc.models import list_models; "
            "print(json.dumps(list_models('localizer')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    names = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"ccvpe_drone_micro", "xcorr_drone_micro", "xcorr_drone_tiny"} <= set(names)

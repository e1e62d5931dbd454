"""The CSP-HD descriptor on the map matcher's feature network (``cspdh_matcher``): pretrained file, errors, cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from edge_geoloc.models.registry import create_model
from edge_geoloc.train.pretrain import (
    PretrainConfig,
    matcher_recipe,
    pretrain_backbone,
    save_matcher_pretrained,
    save_pretrained,
)


def trained_looking_matcher(seed: int = 0) -> torch.nn.Module:
    """A map matcher whose weights differ from any fresh initialisation (stands in for a trained one)."""
    torch.manual_seed(seed)
    matcher = create_model("map_matcher_micro")
    with torch.no_grad():
        for p in matcher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return matcher


def test_descriptor_starts_from_the_matcher_features(tmp_path: Path):
    matcher = trained_looking_matcher()
    path = save_matcher_pretrained(tmp_path / "m.safetensors", matcher, PretrainConfig(model="cspdh_matcher"), {})
    model = create_model("cspdh_matcher", img_size=32, stage_heads=True, pretrained=str(path)).eval()
    fresh = create_model("cspdh_matcher", img_size=32, stage_heads=True).eval()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = image
        for stage in matcher.features:  # the matcher's stride-4 map before its 1x1 projection
            expected = stage(expected)
        maps = model.forward_stages(image, "satellite").feature_maps
        fresh_maps = fresh.forward_stages(image, "satellite").feature_maps
    assert [m.shape[1] for m in maps] == model.stage_channels == [16, 32, 64]
    assert torch.allclose(maps[-1], expected, atol=1e-6)
    assert not torch.allclose(fresh_maps[-1], expected, atol=1e-3)


def test_a_pretrained_file_for_another_backbone_stops_naming_the_file(tmp_path: Path):
    regnet = create_model("cspdh_regnetx_002", img_size=32, stage_heads=False)
    regnet_file = save_pretrained(tmp_path / "regnet.safetensors", regnet, PretrainConfig(), {"steps": 0})
    with pytest.raises(ValueError, match=r"regnet\.safetensors.*'regnetx_002', not 'map_matcher_micro'"):
        create_model("cspdh_matcher", img_size=32, pretrained=str(regnet_file))
    matcher_file = save_matcher_pretrained(tmp_path / "matcher.safetensors", trained_looking_matcher(),
                                           PretrainConfig(model="cspdh_matcher"), {})
    with pytest.raises(ValueError, match=r"matcher\.safetensors.*'map_matcher_micro', not 'regnetx_002'"):
        create_model("cspdh_regnetx_002", img_size=32, pretrained=str(matcher_file))
    with pytest.raises(ValueError, match="no hub weights"):
        create_model("cspdh_matcher", pretrained=True)
    with pytest.raises(ValueError, match="num_stages <= 3"):
        create_model("cspdh_matcher", num_stages=4)


def test_pretrain_trains_the_matcher_once_and_reuses_the_cache(tmp_path: Path):
    cfg = PretrainConfig(model="cspdh_matcher", n_areas=1, area_size_m=360.0, steps=2, batch_size=8,
                         cache_dir=str(tmp_path))
    path = pretrain_backbone(cfg)
    stamp = path.stat().st_mtime_ns
    assert pretrain_backbone(cfg) == path and path.stat().st_mtime_ns == stamp  # cached: not trained again
    run = Path(matcher_recipe(cfg).run.out_dir)
    assert (run / "final.safetensors").is_file() and (run / "config.yaml").is_file()  # the matcher's recipe ran
    model = create_model("cspdh_matcher", img_size=32, pretrained=str(path))
    assert model.branch("drone").backbone.name == "map_matcher_micro"
    # a finished run of the same recipe fills a fresh cache without training; another recipe's run is refused
    adopted = pretrain_backbone(replace(cfg, cache_dir=str(tmp_path / "other")), from_matcher=run / "final.safetensors")
    assert adopted.is_file() and adopted.name == path.name
    with pytest.raises(ValueError, match=r"final\.safetensors was not trained with this pretraining recipe: optim"):
        pretrain_backbone(replace(cfg, steps=3), from_matcher=run / "final.safetensors")

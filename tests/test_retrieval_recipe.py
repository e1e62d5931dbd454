"""The retrieval recipe that does not collapse: decay groups, warm-up floor, pretrained-file checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edge_geoloc.models.registry import create_model
from edge_geoloc.train.optim import decay_groups, warmup_steps
from edge_geoloc.train.pretrain import PretrainConfig, save_pretrained


def test_no_weight_decay_on_temperature_norms_and_biases():
    model = create_model("cspdh_regnetx_002", img_size=32, stage_heads=False)
    decayed, kept = decay_groups(model, 0.05)
    assert decayed["weight_decay"] == 0.05 and kept["weight_decay"] == 0.0
    ids = {id(p) for p in kept["params"]}
    assert id(model.logit_scale) in ids
    for name, p in model.named_parameters():
        if name.endswith("bias") or ".bn" in name or "norm" in name:
            assert id(p) in ids, name
        if p.ndim == 4:  # convolution kernels decay
            assert id(p) not in ids, name
    assert len(decayed["params"]) + len(kept["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize(("total", "per_epoch", "epochs", "explicit", "floor", "expected"), [
    (400, 9, 0.1, None, 30, 30),  # the demo's 0.1 epoch of a 9-batch epoch was 1 step: raised to the floor
    (4000, 1000, 0.1, None, 30, 100),  # long epochs keep their fraction
    (40, 9, 0.1, None, 30, 20),  # never more than half the run
    (400, 9, 0.1, 60, 30, 60),  # explicit steps win over the fraction
])
def test_warmup_has_a_floor_in_steps(total, per_epoch, epochs, explicit, floor, expected):
    assert warmup_steps(total, per_epoch, epochs, explicit, floor) == expected


def test_pretrained_file_for_another_backbone_names_the_file(tmp_path: Path):
    model = create_model("cspdh_regnetx_002", img_size=32, stage_heads=False)
    path = save_pretrained(tmp_path / "regnet.safetensors", model, PretrainConfig(), {"steps": 0})
    loaded = create_model("cspdh_regnetx_002", img_size=32, stage_heads=False, pretrained=str(path))
    ref = model.branch("drone").backbone.body.state_dict()
    got = loaded.branch("drone").backbone.body.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    with pytest.raises(ValueError, match=r"regnet\.safetensors.*regnetx_002"):
        create_model("cspdh_resnet18", img_size=32, stage_heads=False, pretrained=str(path))

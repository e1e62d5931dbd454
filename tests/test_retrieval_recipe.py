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


def test_a_short_run_on_a_small_tree_escapes_the_collapsed_plateau(tmp_path: Path):
    """The recipe (configs/cspdh_onboard.yaml) learns from its first steps. Measured on the 16 training places in
    eval mode (one frame and its tile each, no augmentation): the symmetric InfoNCE ends well below ln(16) (the
    collapsed value: every embedding alike; the untrained model sits there), drone->tile R@1 is far above chance
    (1/16), and embeddings of different places are far from parallel (mean cosine ~0.9 untrained)."""
    import math

    import numpy as np
    import torch.nn.functional as F

    from edge_geoloc.config import load_config
    from edge_geoloc.data.poses import OnboardAlignment
    from edge_geoloc.data.sampler import ImageListDataset
    from edge_geoloc.data.university import LabeledImages, University1652
    from edge_geoloc.evaluate.retrieval_metrics import extract_features
    from edge_geoloc.sim import generate_area
    from edge_geoloc.sim.onboard_tree import OnboardTreeConfig, write_onboard_tree
    from edge_geoloc.train.retrieval_trainer import RetrievalTrainConfig, RetrievalTrainer

    torch.set_num_threads(1)  # 80 small steps: one thread is faster on a shared CPU (restored by conftest)
    area = generate_area("source", seed=8, size_m=300.0, gsd_m=2.0)
    tree = write_onboard_tree(tmp_path / "tree", [area], [], OnboardTreeConfig(
        views_per_tile=3, drone_px=64, tile_px=48, photometric=False))
    cfg = load_config(RetrievalTrainConfig, Path(__file__).resolve().parents[1] / "configs" / "cspdh_onboard.yaml", [
        f"data.root={tree}", f"run.out_dir={tmp_path / 'run'}", "model.img_size=48", "optim.batch_size=8",
        "optim.max_steps=80", "optim.warmup_min_steps=10", "run.eval_at_end=false", "run.progress=false",
        "run.device=cpu", "run.log_every=5"])
    trainer = RetrievalTrainer(cfg)
    trainer.fit()
    model = trainer.model.eval()
    pairs = University1652(tree).train_pairs()[::3]  # one frame per tile: 16 places

    def listed(paths):
        return LabeledImages(tuple(paths), np.arange(len(paths)), tuple(str(i) for i in range(len(paths))))

    prep = (model.input_size, model.mean, model.std)
    drone, _ = extract_features(model, ImageListDataset(listed([p.drone for p in pairs]), *prep,
                                                        OnboardAlignment(tree, 80.0, 48)), "drone")
    tiles, _ = extract_features(model, ImageListDataset(listed([p.satellite for p in pairs]), *prep), "satellite")
    cos = torch.from_numpy(drone @ tiles.T)
    logits, target = cos * model.logit_scale.exp().item(), torch.arange(len(pairs))
    infonce = float(F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert len(pairs) == 16 and infonce < 0.75 * math.log(16)
    assert float((cos.argmax(1) == target).float().mean()) >= 4 / 16  # chance is 1/16
    between = (drone @ drone.T)[~np.eye(len(drone), dtype=bool)]
    assert between.mean() < 0.5

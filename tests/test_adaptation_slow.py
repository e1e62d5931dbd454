"""Slow end-to-end test: a tiny teacher trained in a source-style area, adapted without labels to a
target-style area, has a lower mean error on that area's held-out labelled samples afterwards."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from edge_geoloc.config import from_dict
from edge_geoloc.data.pairs import DronePairConfig, PairDataset, write_synthetic_drone_pairs
from edge_geoloc.sim import generate_area
from edge_geoloc.train.adaptation import AdaptConfig, adapt, open_target
from edge_geoloc.train.localizer_trainer import LocalizerTrainConfig, evaluate_dataset, fit

PAIRS = DronePairConfig(aerial_px=64, query_px=64, photometric=False, margin_m=50.0)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _labelled(path):
    return PairDataset(path, (64, 64), 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), read_ground_truth=True)


@pytest.mark.slow
def test_adaptation_reduces_target_mean_error(tmp_path):
    source = generate_area("source", 1, size_m=500.0)
    target = generate_area("target", 2, size_m=500.0)
    write_synthetic_drone_pairs(source, tmp_path / "src", replace(PAIRS, count=400), seed=10)
    write_synthetic_drone_pairs(target, tmp_path / "tgt_train", replace(PAIRS, count=200), seed=20,
                                with_ground_truth=False)
    write_synthetic_drone_pairs(target, tmp_path / "tgt_test", replace(PAIRS, count=80), seed=21)
    cfg = from_dict(LocalizerTrainConfig, {
        "model": {"name": "ccvpe_drone_micro"}, "loss": {"sigma_px": 2.0, "infonce_weight": 10.0},
        "optim": {"lr": 1e-3, "epochs": 5, "seed": 17}, "out_dir": str(tmp_path / "teacher"), "log_every": 0})
    teacher = fit(cfg, _labelled(tmp_path / "src")).eval()
    adapt_cfg = AdaptConfig(sigma_px=2.0, aux_epochs=2, student_epochs=3, lr=3e-4)
    result = adapt(teacher, open_target(tmp_path / "tgt_train", teacher, adapt_cfg), adapt_cfg)
    test_set = _labelled(tmp_path / "tgt_test")
    before = evaluate_dataset(teacher, test_set)["mean_m"]
    after = evaluate_dataset(result.student, test_set)["mean_m"]
    print(f"target test mean error: teacher {before:.2f} m -> student {after:.2f} m")
    assert after < before, f"student {after:.2f} m is not better than teacher {before:.2f} m"
    assert result.report["kept"] == 160

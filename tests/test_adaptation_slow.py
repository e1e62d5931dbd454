"""Slow end-to-end test: a small cross-correlation teacher trained in a source-style area beats the coarse fix
there and in a target-style area, and adapting it without labels to the target area lowers that area's error
on held-out labelled samples by a clear margin."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from edge_geoloc.config import from_dict
from edge_geoloc.data.pairs import DronePairConfig, dataset_for_model, write_synthetic_drone_pairs
from edge_geoloc.models import create_model
from edge_geoloc.sim import generate_area
from edge_geoloc.train.adaptation import AdaptConfig, adapt
from edge_geoloc.train.localizer_trainer import LocalizerTrainConfig, evaluate_dataset, fit

PAIRS = DronePairConfig(aerial_px=64, query_px=64, photometric=False, margin_m=50.0)
MODEL = "xcorr_drone_micro"


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _labelled(path):
    return dataset_for_model(path, create_model(MODEL), read_ground_truth=True)


def _centre_mean_m(dataset) -> float:
    rowcol, m_per_px, _ = dataset.ground_truth()
    return float((np.linalg.norm(rowcol - 0.5 * dataset.aerial_size, axis=1) * m_per_px).mean())


@pytest.mark.slow
def test_adaptation_reduces_target_mean_error(tmp_path):
    source = generate_area("source", 1, size_m=500.0)
    target = generate_area("target", 2, size_m=500.0)
    write_synthetic_drone_pairs(source, tmp_path / "src", replace(PAIRS, count=400), seed=10)
    write_synthetic_drone_pairs(target, tmp_path / "tgt_train", replace(PAIRS, count=200), seed=20,
                                with_ground_truth=False)
    write_synthetic_drone_pairs(target, tmp_path / "tgt_test", replace(PAIRS, count=80), seed=21)
    cfg = from_dict(LocalizerTrainConfig, {
        "model": {"name": MODEL}, "loss": {"sigma_px": 1.0, "infonce_weight": 1.0},
        "optim": {"lr": 1e-3, "epochs": EPOCHS, "seed": 17}, "out_dir": str(tmp_path / "teacher"), "log_every": 0,
        "data": {"batch_size": 16}})
    teacher = fit(cfg, _labelled(tmp_path / "src")).eval()
    adapt_cfg = AdaptConfig(sigma_px=2.0, aux_epochs=2, student_epochs=3, lr=3e-4, supervised_levels=3)
    target_train = dataset_for_model(tmp_path / "tgt_train", teacher, read_ground_truth=False)
    result = adapt(teacher, target_train, adapt_cfg)
    test_set = _labelled(tmp_path / "tgt_test")
    centre = _centre_mean_m(test_set)
    before = evaluate_dataset(teacher, test_set)["mean_m"]
    after = evaluate_dataset(result.student, test_set)["mean_m"]
    print(f"target test mean error: centre {centre:.2f} m, teacher {before:.2f} m -> student {after:.2f} m")
    assert before < 0.8 * centre, f"teacher {before:.2f} m does not clearly beat the coarse fix ({centre:.2f} m)"
    assert after < before - MARGIN_M, f"student {after:.2f} m is not {MARGIN_M} m better than teacher {before:.2f} m"
    assert result.report["kept"] == 160


EPOCHS, MARGIN_M = 2, 0.5
